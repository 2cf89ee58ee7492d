"""Residual blocks with a Selective Kernel unit in NNX: `se_flax.models.sk_blocks`' twin.

timm's `skresnet` layout. BasicBlock: `conv1` is the Selective Kernel unit (it strides), `conv2`
a 3x3 conv + BatchNorm. Bottleneck: 1x1 `conv1` and `conv3` around the Selective Kernel unit
`conv2` (it strides, with `cardinality` groups). Each conv and its BatchNorm are `convN.conv`,
`convN.bn`; attention `se` and `downsample[0]`, `downsample[1]` as in `se_flax.nnx.blocks`.
"""

from __future__ import annotations

import jax
from flax import nnx

from se_flax.nnx.blocks import Layers, attend_and_add
from se_flax.nnx.intermediates import labelled
from se_flax.nnx.selective_kernel import ConvNormAct, SelectiveKernel
from se_spec.models import block_width
from se_spec.selective_kernel import SelectiveKernelSpec


class SelectiveKernelBlock(nnx.Module):
    """BasicBlock or Bottleneck whose strided 3x3 conv is a Selective Kernel unit."""

    def __init__(self, in_ch: int, planes: int, stride: int, bottleneck: bool,
                 zero_init_last_bn: bool, layers: Layers, path: str, *,
                 cardinality: int = 1, base_width: int = 64,
                 sk: SelectiveKernelSpec | None = None, rngs: nnx.Rngs) -> None:
        sk = sk or SelectiveKernelSpec()
        out_ch = planes * (4 if bottleneck else 1)
        width = block_width(labelled("SelectiveKernelBlock", path), planes, base_width,
                            cardinality, bottleneck)
        last = zero_init_last_bn

        def selective(in_features: int, features: int, name: str) -> SelectiveKernel:
            return SelectiveKernel(in_features, features, stride, cardinality, sk.dilations,
                                   sk.rd_ratio, sk.rd_divisor, split_input=sk.split_input,
                                   axis_name=layers.axis_name, dtype=layers.dtype,
                                   impl=layers.impl, path=f"{path}/{name}", rngs=rngs)

        self.bottleneck = bottleneck
        if bottleneck:
            self.conv1 = ConvNormAct(in_ch, width, 1, 1, layers, rngs=rngs)
            self.conv2 = selective(width, width, "conv2")
            self.conv3 = ConvNormAct(width, out_ch, 1, 1, layers, act=False, zero_scale=last,
                                     rngs=rngs)
        else:
            self.conv1 = selective(in_ch, planes, "conv1")
            self.conv2 = ConvNormAct(planes, out_ch, 3, 1, layers, act=False, zero_scale=last,
                                     rngs=rngs)
        self.se = layers.attention(out_ch, f"{path}/se", rngs)
        self.downsample = None if stride == 1 and in_ch == out_ch else nnx.List([
            layers.conv(in_ch, out_ch, (1, 1), (stride, stride), rngs),
            layers.norm(out_ch, rngs=rngs)])
        self.residual_boundary = layers.boundary()

    def __call__(self, x: jax.Array, train: bool | None = None) -> jax.Array:
        """Apply the block."""
        y = self.conv2(self.conv1(x, train), train)
        if self.bottleneck:
            y = self.conv3(y, train)
        return attend_and_add(self, y, x, train)
