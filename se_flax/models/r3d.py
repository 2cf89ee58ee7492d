"""3D ResNets for video, with optional SE after the last BatchNorm of each block.

R3D: Tran et al., "A Closer Look at Spatiotemporal Convolutions", CVPR 2018. SE3D is the
rank-generic `SqueezeExcite` on `(N, T, H, W, C)`.

Names follow torchvision's `VideoResNet` (`r3d_18`) through `se_flax.convert.naming`: `stem_0`
(3x7x7 conv, stride 1x2x2), `stem_1` (BN), `layer1_0/conv1_0` (3x3x3 conv), `conv1_1` (BN),
`conv2_0`, `conv2_1`, `se`, `downsample_0/1`, `fc`. Inputs are `(N, T, H, W, C)`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax

from se_flax.layers.norm import BatchNorm
from se_flax.models.blocks import (
    Boundary,
    ModuleDef,
    attention_factory,
    global_pool,
    norm_layer,
    padded_conv,
)
from se_spec.models import NO_ATTENTION, check_image


class VideoBlock(nn.Module):
    """3D BasicBlock: two 3x3x3 convs (`conv1_0`, `conv2_0`), each with BN, then attention."""

    planes: int
    stride: int = 1
    downsample: bool = False
    attn: Callable[..., nn.Module] | None = None
    zero_init_last_bn: bool = False
    axis_name: str | None = None
    dtype: Any = None
    conv: ModuleDef = nn.Conv
    norm: ModuleDef = BatchNorm
    residual_boundary: Boundary = None

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        """Apply the block to `(N, T, H, W, C)`."""
        def bn(name: str, last: bool = False) -> nn.Module:
            return norm_layer(self.norm, name, train, self.axis_name, self.dtype,
                              last and self.zero_init_last_bn)

        s = (self.stride,) * 3
        y = padded_conv(self.conv, self.planes, (3, 3, 3), s, self.dtype, "conv1_0")(x)
        y = nn.relu(bn("conv1_1")(y))
        y = padded_conv(self.conv, self.planes, (3, 3, 3), (1, 1, 1), self.dtype, "conv2_0")(y)
        y = bn("conv2_1", last=True)(y)
        if self.attn is not None:
            y = self.attn(channels=self.planes, dtype=self.dtype, name="se")(y, train=train)
        shortcut = x
        if self.downsample:
            shortcut = padded_conv(self.conv, self.planes, (1, 1, 1), s, self.dtype,
                                   "downsample_0")(x)
            shortcut = bn("downsample_1")(shortcut)
        out = nn.relu(y + shortcut.astype(y.dtype))
        return out if self.residual_boundary is None else self.residual_boundary(out)


class VideoResNet(nn.Module):
    """R3D / SE-R3D; `attn` is an attention variant name or `"none"`."""

    block: str = "basic"
    layers: tuple[int, ...] = (2, 2, 2, 2)
    num_classes: int = 400
    stem: str = "r3d"
    attn: str = NO_ATTENTION
    attn_kwargs: Any = None
    zero_init_last_bn: bool = False
    in_chans: int = 3
    dtype: Any = None
    axis_name: str | None = None
    model_name: str = "VideoResNet"
    conv: ModuleDef = nn.Conv
    norm: ModuleDef = BatchNorm
    residual_boundary: Boundary = None

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        """Logits `(N, num_classes)` for channels-last clips `x` of shape `(N, T, H, W, C)`."""
        check_image(self.model_name, x.shape, self.in_chans, -1, self.stem)
        attn = attention_factory(self.attn, self.attn_kwargs, self.axis_name, 3, self.norm)
        x = x.astype(self.dtype or x.dtype)
        x = padded_conv(self.conv, 64, (3, 7, 7), (1, 2, 2), self.dtype, "stem_0")(x)
        x = nn.relu(norm_layer(self.norm, "stem_1", train, self.axis_name, self.dtype)(x))
        in_ch = 64
        for stage, blocks in enumerate(self.layers):
            planes = 64 * 2 ** stage
            for i in range(blocks):
                stride = 2 if stage > 0 and i == 0 else 1
                x = VideoBlock(planes, stride, stride != 1 or in_ch != planes, attn,
                               self.zero_init_last_bn, self.axis_name, self.dtype,
                               conv=self.conv, norm=self.norm,
                               residual_boundary=self.residual_boundary,
                               name=f"layer{stage + 1}_{i}")(x, train)
                in_ch = planes
        return nn.Dense(self.num_classes, name="fc")(global_pool(x))
