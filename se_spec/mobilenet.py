"""MobileNetV3 (Howard et al., "Searching for MobileNetV3", ICCV 2019): block tables and widths.

Tables 1 and 2 of the paper, in torchvision's `features.N` order: a 3x3/2 stem conv (16
channels, hard-swish), the inverted residual blocks below, a 1x1 conv to `6 x` the last block's
width (hard-swish), global pooling, `Linear(last, head)` + hard-swish + `Linear(head, classes)`.
Each block: optional 1x1 expansion (when the expanded width differs from the input), a
depthwise `k x k` conv carrying the stride, the SE module (where the table says so), a 1x1
projection without activation, and the identity shortcut when the stride is 1 and the width
does not change. SE widths are `make_divisible(expanded / 4, 8)` with torchvision's rule that
rounding may not go below 90% (72 → 24, not 16), ReLU inside, hard-sigmoid gate; 1x1 convs with
bias named `fc1`/`fc2`, as torchvision's `SqueezeExcitation`.

BatchNorm: `eps=1e-3`, PyTorch `momentum=0.01` (Flax `momentum=0.99`). Stems: `imagenet`
(3x3/2 first conv, total stride 32, as published) and `cifar` (3x3/1 first conv, total stride
16) for small images.
"""

from __future__ import annotations

from typing import NamedTuple

from se_spec.attention import make_divisible

FAMILY = "mobilenet_v3"
STEMS = ("imagenet", "cifar")
NETWORK_STRIDE = {"imagenet": 32, "cifar": 16}
STEM_CHANNELS = 16
BN_EPS = 1e-3
BN_MOMENTUM_TORCH = 0.01
BN_MOMENTUM_FLAX = 1.0 - BN_MOMENTUM_TORCH
# The SE module of MobileNetV3 as an attention variant (`se_spec.variants`).
SE_VARIANT = "mobilenet_v3_se"


class Bneck(NamedTuple):
    """One inverted residual block: kernel, expanded width, output width, SE, activation, stride."""

    kernel: int
    expanded: int
    out: int
    se: bool
    act: str  # "relu" or "hard_swish"
    stride: int


_RE, _HS = "relu", "hard_swish"
# (Table 1) MobileNetV3-Large; head width 1280.
LARGE = (
    Bneck(3, 16, 16, False, _RE, 1), Bneck(3, 64, 24, False, _RE, 2),
    Bneck(3, 72, 24, False, _RE, 1), Bneck(5, 72, 40, True, _RE, 2),
    Bneck(5, 120, 40, True, _RE, 1), Bneck(5, 120, 40, True, _RE, 1),
    Bneck(3, 240, 80, False, _HS, 2), Bneck(3, 200, 80, False, _HS, 1),
    Bneck(3, 184, 80, False, _HS, 1), Bneck(3, 184, 80, False, _HS, 1),
    Bneck(3, 480, 112, True, _HS, 1), Bneck(3, 672, 112, True, _HS, 1),
    Bneck(5, 672, 160, True, _HS, 2), Bneck(5, 960, 160, True, _HS, 1),
    Bneck(5, 960, 160, True, _HS, 1),
)
# (Table 2) MobileNetV3-Small; head width 1024.
SMALL = (
    Bneck(3, 16, 16, True, _RE, 2), Bneck(3, 72, 24, False, _RE, 2),
    Bneck(3, 88, 24, False, _RE, 1), Bneck(5, 96, 40, True, _HS, 2),
    Bneck(5, 240, 40, True, _HS, 1), Bneck(5, 240, 40, True, _HS, 1),
    Bneck(5, 120, 48, True, _HS, 1), Bneck(5, 144, 48, True, _HS, 1),
    Bneck(5, 288, 96, True, _HS, 2), Bneck(5, 576, 96, True, _HS, 1),
    Bneck(5, 576, 96, True, _HS, 1),
)
CONFIGS: dict[str, tuple[tuple[Bneck, ...], int]] = {"large": (LARGE, 1280), "small": (SMALL, 1024)}

# name → (config, number of blocks, default attention) for `se_spec.models.MODEL_SPECS`.
MODELS: dict[str, tuple[str, tuple[int, ...], str]] = {
    "mobilenet_v3_large": ("large", (len(LARGE),), SE_VARIANT),
    "mobilenet_v3_small": ("small", (len(SMALL),), SE_VARIANT),
}


def se_width(expanded: int) -> int:
    """Bottleneck width of a block's SE: `make_divisible(expanded / 4, 8)`, at least 90%."""
    return make_divisible(expanded / 4, 8, round_limit=0.9)


def blocks(config: str) -> tuple[Bneck, ...]:
    """The inverted residual blocks of `large` or `small`."""
    return CONFIGS[config][0]


def head_width(config: str) -> int:
    """Width of the hidden classifier layer (`classifier.0`)."""
    return CONFIGS[config][1]


def last_conv_width(config: str) -> int:
    """Width of the last 1x1 conv (`features.{n+1}`): six times the last block's output."""
    return 6 * blocks(config)[-1].out


def block_channels(config: str) -> list[tuple[int, Bneck]]:
    """`(input width, block)` for every block in order."""
    out, in_ch = [], STEM_CHANNELS
    for b in blocks(config):
        out.append((in_ch, b))
        in_ch = b.out
    return out
