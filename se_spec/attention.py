"""Options of the attention layers: choices, bottleneck widths, kernel sizes, input checks.

`se_flax` and `se_torch_ref` both resolve their layers' options here, so the two implementations
cannot drift apart.
"""

from __future__ import annotations

import math

from se_spec.validation import check_choice, check_positive_int

ACTIVATIONS = ("relu", "relu6", "hard_swish", "silu", "gelu", "tanh")
GATES = ("sigmoid", "hard_sigmoid")
RD_POLICIES = ("divisible", "floor", "dynamic")
EXCITE_LAYERS = ("conv", "linear")
SPATIAL_DIMS = (1, 2, 3)


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None,
                   round_limit: float = 0.0) -> int:
    """Round `value` to the nearest multiple of `divisor` (timm's rule, MobileNet lineage).

    With timm's SE default (`round_limit=0`), 64 channels at ratio 1/16 give 8, not 4.
    """
    min_value = min_value or divisor
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if rounded < round_limit * value:
        rounded += divisor
    return rounded


def reduced_channels(module: str, channels: int, rd_ratio: float = 1 / 16,
                     rd_channels: int | None = None, rd_policy: str = "divisible",
                     rd_divisor: int = 8, min_ratio: int = 8, rd_round_limit: float = 0.0) -> int:
    """Width of the squeeze bottleneck.

    Policies:
      * ``divisible`` — timm: ``make_divisible(channels * rd_ratio, rd_divisor)``; with
        ``rd_round_limit=0.9`` rounding never drops below 90% (torchvision's MobileNetV3).
      * ``floor`` — the article's ``channels // r`` with ``r = 1 / rd_ratio``.
      * ``dynamic`` — the article's DynamicSE: ``r = max(min_ratio, channels // 64)``,
        width ``channels // r``.
    An explicit ``rd_channels`` overrides the policy.
    """
    check_positive_int(module, "channels", channels)
    if rd_channels is not None:
        return check_positive_int(module, "rd_channels", rd_channels)
    check_choice(module, "rd_policy", rd_policy, RD_POLICIES)
    if rd_policy == "dynamic":
        check_positive_int(module, "min_ratio", min_ratio)
        width = channels // max(min_ratio, channels // 64)
    else:
        if isinstance(rd_ratio, bool) or not isinstance(rd_ratio, int | float) \
                or not math.isfinite(rd_ratio) or not 0 < rd_ratio <= 1:
            raise ValueError(f"{module}: rd_ratio={rd_ratio!r} is invalid; expected a number in "
                             "(0, 1], e.g. 1/16")
        if rd_policy == "divisible":
            check_positive_int(module, "rd_divisor", rd_divisor)
            if isinstance(rd_round_limit, bool) or not isinstance(rd_round_limit, int | float) \
                    or not 0 <= rd_round_limit < 1:
                raise ValueError(f"{module}: rd_round_limit={rd_round_limit!r} is invalid; "
                                 "expected a number in [0, 1), e.g. 0.9")
            width = make_divisible(channels * rd_ratio, rd_divisor, round_limit=rd_round_limit)
        else:
            width = math.floor(round(channels * rd_ratio, 9))
    if width < 1:
        raise ValueError(f"{module}: channels={channels} with rd_policy={rd_policy!r} gives a "
                         f"bottleneck of {width} channels; expected >= 1 (raise rd_ratio or set "
                         "rd_channels)")
    return width


def check_groups(module: str, channels: int, rd_channels: int, groups: int) -> int:
    """Validate grouped 1x1 excitation (the article's EfficientSE).

    Both excitation layers are grouped, so ``groups`` must divide the input width and the
    bottleneck width.
    """
    check_positive_int(module, "groups", groups)
    if channels % groups or rd_channels % groups:
        raise ValueError(f"{module}: groups={groups} must divide channels={channels} and "
                         f"rd_channels={rd_channels}; expected a common divisor of both")
    return groups


def eca_kernel_size(channels: int, gamma: float = 2, beta: float = 1) -> int:
    """ECA-Net kernel size ``k = |log2(C) + b| / γ`` rounded to the nearest odd number ≥ 3."""
    t = int(abs(math.log2(channels) + beta) / gamma)
    return max(t if t % 2 else t + 1, 3)


def check_input(module: str, shape: tuple[int, ...], channels: int, channel_axis: int,
                spatial_dims: int | None) -> None:
    """Validate the rank and channel count of an input before any computation."""
    rank = len(shape)
    expected_ranks = (spatial_dims + 2,) if spatial_dims else (3, 4, 5)
    if rank not in expected_ranks:
        ranks = " or ".join(map(str, expected_ranks))
        raise ValueError(f"{module}: input of rank {rank} (shape {tuple(shape)}); expected "
                         f"rank {ranks} (batch, channels, 1-3 spatial axes)")
    if shape[channel_axis] != channels:
        raise ValueError(f"{module}: input has {shape[channel_axis]} channels (shape "
                         f"{tuple(shape)}); the module was built for channels={channels}")
