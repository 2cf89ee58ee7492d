"""Selective Kernel options and widths (Li et al., "Selective Kernel Networks", CVPR 2019).

A Selective Kernel unit runs parallel 3x3 convolution paths with growing dilation (a dilated 3x3
stands in for the paper's 5x5), fuses them by summing, squeezes the sum to a descriptor, reduces
it (`fc_reduce` + BatchNorm + ReLU), selects per-path logits (`fc_select`) and mixes the paths
with a softmax over paths. The selection weights `(N, paths, C)` are recorded like the SE gates
(`se_spec.variables.SELECTION`).

timm's variant also offers `split_input`: the input channels are divided evenly between the
paths (each path sees `C_in / paths` channels), which keeps the parameter count of a plain
ResNet. Both frameworks take the widths and checks below, so they cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass

from se_spec.attention import make_divisible
from se_spec.validation import check_positive_int


@dataclass(frozen=True)
class SelectiveKernelSpec:
    """Options of the Selective Kernel units of one network (timm's `sk_kwargs`)."""

    rd_ratio: float = 1 / 16
    rd_divisor: int = 8
    split_input: bool = True
    dilations: tuple[int, ...] = (1, 2)  # one 3x3 path per entry: 3x3 and "5x5" (3x3, dilation 2)


def attention_channels(channels: int, rd_ratio: float = 1 / 16, rd_divisor: int = 8,
                       rd_channels: int | None = None) -> int:
    """Width of the selection bottleneck: timm's `make_divisible(C * rd_ratio, rd_divisor)`.

    At least `rd_divisor`, never below 90% of `C * rd_ratio` (e.g. 64 channels at 1/8 with
    divisor 16 → 16; 256 at 1/16 with divisor 32 → 32).
    """
    if rd_channels is not None:
        return check_positive_int("SelectiveKernel", "rd_channels", rd_channels)
    check_positive_int("SelectiveKernel", "rd_divisor", rd_divisor)
    if isinstance(rd_ratio, bool) or not isinstance(rd_ratio, int | float) \
            or not 0 < rd_ratio <= 1:
        raise ValueError(f"SelectiveKernel: rd_ratio={rd_ratio!r} is invalid; expected a number "
                         "in (0, 1], e.g. 1/16")
    return make_divisible(channels * rd_ratio, rd_divisor, round_limit=0.9)


def check_selective_kernel(module: str, in_channels: int, out_channels: int, groups: int,
                           dilations: tuple[int, ...], split_input: bool) -> int:
    """Validate a Selective Kernel unit; return the input width of each path.

    `groups` must divide each path's input and `out_channels`; with `split_input` the number of
    paths must divide `in_channels`.
    """
    check_positive_int(module, "out_channels", out_channels)
    check_positive_int(module, "groups", groups)
    if not isinstance(dilations, tuple | list) or len(dilations) < 2:
        raise ValueError(f"{module}: dilations={dilations!r} is invalid; expected two or more "
                         "path dilations, e.g. (1, 2)")
    for d in dilations:
        check_positive_int(module, "dilations", d)
    paths = len(dilations)
    if split_input and in_channels % paths:
        raise ValueError(f"{module}: split_input=True with in_channels={in_channels} and "
                         f"{paths} paths; expected in_channels divisible by the number of paths")
    path_in = in_channels // paths if split_input else in_channels
    if path_in % groups or out_channels % groups:
        raise ValueError(f"{module}: groups={groups} must divide each path's input "
                         f"({path_in} channels) and out_channels={out_channels}; expected a "
                         "common divisor of both")
    return path_in
