"""Residual blocks with a Selective Kernel unit (Li et al., CVPR 2019), timm's `skresnet` layout.

BasicBlock: `conv1` is the Selective Kernel unit (it strides), `conv2` a 3x3 conv + BatchNorm.
Bottleneck: 1x1 `conv1` and `conv3` around the Selective Kernel unit `conv2` (it strides, with
`cardinality` groups). Each conv and its BatchNorm are `convN/conv`, `convN/bn` (timm's
`ConvNormAct`); attention `se` and `downsample_0/1` as in `se_flax.models.blocks`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax

from se_flax.layers.labels import module_label
from se_flax.layers.norm import BatchNorm
from se_flax.layers.selective_kernel import ConvNormAct, SelectiveKernel
from se_flax.models.blocks import Boundary, ModuleDef, norm_layer, padded_conv
from se_spec.models import block_width
from se_spec.selective_kernel import SelectiveKernelSpec


class SelectiveKernelBlock(nn.Module):
    """BasicBlock or Bottleneck whose strided 3x3 conv is a Selective Kernel unit."""

    planes: int
    stride: int = 1
    bottleneck: bool = False
    downsample: bool = False
    attn: Callable[..., nn.Module] | None = None
    zero_init_last_bn: bool = False
    axis_name: str | None = None
    dtype: Any = None
    conv: ModuleDef = nn.Conv
    norm: ModuleDef = BatchNorm
    residual_boundary: Boundary = None
    cardinality: int = 1
    base_width: int = 64
    sk: SelectiveKernelSpec = SelectiveKernelSpec()

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        """Apply the block."""
        common = {"axis_name": self.axis_name, "dtype": self.dtype, "conv": self.conv,
                  "norm": self.norm}
        out_ch = self.planes * (4 if self.bottleneck else 1)
        width = block_width(module_label(self), self.planes, self.base_width, self.cardinality,
                            self.bottleneck)

        def selective(features: int, name: str) -> nn.Module:
            return SelectiveKernel(features, self.stride, self.cardinality, self.sk.dilations,
                                   self.sk.rd_ratio, self.sk.rd_divisor,
                                   split_input=self.sk.split_input, **common, name=name)

        last = self.zero_init_last_bn
        if self.bottleneck:
            y = ConvNormAct(width, 1, **common, name="conv1")(x, train)
            y = selective(width, "conv2")(y, train)
            y = ConvNormAct(out_ch, 1, act=False, zero_scale=last, **common,
                            name="conv3")(y, train)
        else:
            y = selective(self.planes, "conv1")(x, train)
            y = ConvNormAct(out_ch, 3, act=False, zero_scale=last, **common,
                            name="conv2")(y, train)
        if self.attn is not None:
            y = self.attn(channels=out_ch, dtype=self.dtype, name="se")(y, train=train)
        shortcut = x
        if self.downsample:
            shortcut = padded_conv(self.conv, out_ch, (1, 1), (self.stride, self.stride),
                                   self.dtype, "downsample_0")(x)
            shortcut = norm_layer(self.norm, "downsample_1", train, self.axis_name,
                                  self.dtype)(shortcut)
        out = nn.relu(y + shortcut.astype(y.dtype))
        return out if self.residual_boundary is None else self.residual_boundary(out)
