"""Residual blocks in NNX (He et al., CVPR 2016) with an optional attention module `se`.

The twins of `se_flax.models.blocks`: attention after the block's last BatchNorm and before the
residual addition, bottlenecks striding on the 3x3 conv, symmetric PyTorch padding. Attribute
names are PyTorch's module names (`conv1`, `bn1`, `se`, `downsample[0]`, `downsample[1]`).
`Layers` carries the model-wide choices: compute dtype, `axis_name`, and the implementation
(`conv_general_dilated`, the BatchNorm VJP, the fusion boundary of `se_flax.implementation`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import jax
from flax import nnx
from jax import lax

from se_flax.implementation import Implementation
from se_flax.layers.boundary import fusion_boundary
from se_flax.layers.conv import conv_general_dilated
from se_flax.models.blocks import conv_init
from se_flax.nnx.intermediates import labelled
from se_flax.nnx.norm import BatchNorm
from se_flax.nnx.variants import ATTENTION_VARIANTS
from se_spec.models import NO_ATTENTION, block_width

Boundary = Callable[[jax.Array], jax.Array] | None


def _rewritten_conv(*args: Any, pointwise: bool, small_map: bool, out_sharding: Any = None,
                    **kwargs: Any) -> jax.Array:
    """`se_flax.layers.conv.conv_general_dilated` for `nnx.Conv`, which adds `out_sharding`."""
    if out_sharding is not None:  # an explicit output sharding: leave the op to XLA
        return lax.conv_general_dilated(*args, out_sharding=out_sharding, **kwargs)
    return conv_general_dilated(*args, pointwise=pointwise, small_map=small_map, **kwargs)


@dataclass(frozen=True)
class Layers:
    """Builds the convolutions, BatchNorms and attention of one model, all alike."""

    impl: Implementation
    dtype: Any = None
    axis_name: str | None = None
    attn: str = NO_ATTENTION
    attn_kwargs: Any = None
    spatial_rank: int = 2

    def lowering(self) -> Callable[..., jax.Array]:
        """The `conv_general_dilated` of every convolution: XLA's, or with the CPU rewrites."""
        impl = self.impl
        if impl.pointwise_products or impl.small_map_products:
            return functools.partial(_rewritten_conv, pointwise=impl.pointwise_products,
                                     small_map=impl.small_map_products)
        return lax.conv_general_dilated

    def conv(self, in_features: int, features: int, kernel: Sequence[int],
             stride: Sequence[int], rngs: nnx.Rngs, *, groups: int = 1,
             dilation: int = 1) -> nnx.Conv:
        """Bias-free convolution with PyTorch's symmetric padding `dilation * (k // 2)` per axis.

        `groups` is PyTorch's `groups` (Flax's `feature_group_count`); `dilation` dilates the
        kernel along every spatial axis.
        """
        return nnx.Conv(in_features, features, tuple(kernel), tuple(stride),
                        padding=[(dilation * (k // 2),) * 2 for k in kernel],
                        kernel_dilation=(dilation,) * len(kernel), feature_group_count=groups,
                        use_bias=False, dtype=self.dtype, kernel_init=conv_init,
                        conv_general_dilated=self.lowering(), rngs=rngs)

    def norm(self, features: int, *, zero_scale: bool = False, momentum: float = 0.9,
             epsilon: float = 1e-5, rngs: nnx.Rngs) -> BatchNorm:
        """PyTorch-compatible BatchNorm; `zero_scale` for a block's last BN.

        `momentum` is Flax's (PyTorch's `1 - momentum`).
        """
        return BatchNorm(features, momentum=momentum, epsilon=epsilon,
                         axis_name=self.axis_name, dtype=self.dtype,
                         scale_init=nnx.initializers.zeros if zero_scale
                         else nnx.initializers.ones,
                         custom_vjp=self.impl.batchnorm_vjp, rngs=rngs)

    def boundary(self) -> Boundary:
        """The fusion boundary applied to block outputs, if the implementation asks for one."""
        return fusion_boundary if self.impl.fusion_boundary else None

    def attention(self, channels: int, path: str, rngs: nnx.Rngs) -> nnx.Module | None:
        """The attention variant `attn` for `channels` channels, or None for `"none"`."""
        if self.attn == NO_ATTENTION:
            return None
        options = dict(self.attn_kwargs or {})
        if self.attn == "cbam":  # its spatial branch has a BatchNorm: the model's, synchronised
            options.setdefault("bn_axis_name", self.axis_name)
            options.setdefault("norm", functools.partial(
                BatchNorm, custom_vjp=self.impl.batchnorm_vjp))
        options = {"spatial_dims": self.spatial_rank, **options, "dtype": self.dtype}
        return ATTENTION_VARIANTS[self.attn](channels=channels, path=path, rngs=rngs, **options)


def attend_and_add(block: nnx.Module, y: jax.Array, x: jax.Array, train: bool | None
                   ) -> jax.Array:
    """The end of a residual block: attention, shortcut, ReLU of the sum, fusion boundary.

    Attention `block.se` acts on the branch `y`; the shortcut of `x` goes through
    `block.downsample` (conv, then BatchNorm) when there is one; `block.residual_boundary`
    closes the block when the implementation asks for it.
    """
    if block.se is not None:
        y = block.se(y, train=train)
    shortcut = x
    if block.downsample is not None:
        shortcut = block.downsample[1](block.downsample[0](x), flag(train))
    out = nnx.relu(y + shortcut.astype(y.dtype))
    return out if block.residual_boundary is None else block.residual_boundary(out)


def flag(train: bool | None) -> bool | None:
    """`use_running_average` for a BatchNorm from a model's `train` argument (None: its mode)."""
    return None if train is None else not train


class ResidualBlock(nnx.Module):
    """BasicBlock (`bottleneck=False`) or Bottleneck (expansion 4) with attention `se`.

    A Bottleneck with `cardinality > 1` is ResNeXt's (Xie et al., CVPR 2017): its 3x3 conv has
    `block_width(planes, base_width, cardinality)` channels in `cardinality` groups.
    """

    def __init__(self, in_ch: int, planes: int, stride: int, bottleneck: bool,
                 zero_init_last_bn: bool, layers: Layers, path: str, *,
                 cardinality: int = 1, base_width: int = 64, rngs: nnx.Rngs) -> None:
        out_ch = planes * (4 if bottleneck else 1)
        width = block_width(labelled("ResidualBlock", path), planes, base_width, cardinality,
                            bottleneck)
        s = (stride, stride)
        self.bottleneck = bottleneck
        if bottleneck:
            self.conv1 = layers.conv(in_ch, width, (1, 1), (1, 1), rngs)
            self.bn1 = layers.norm(width, rngs=rngs)
            self.conv2 = layers.conv(width, width, (3, 3), s, rngs, groups=cardinality)
            self.bn2 = layers.norm(width, rngs=rngs)
            self.conv3 = layers.conv(width, out_ch, (1, 1), (1, 1), rngs)
            self.bn3 = layers.norm(out_ch, zero_scale=zero_init_last_bn, rngs=rngs)
        else:
            self.conv1 = layers.conv(in_ch, planes, (3, 3), s, rngs)
            self.bn1 = layers.norm(planes, rngs=rngs)
            self.conv2 = layers.conv(planes, out_ch, (3, 3), (1, 1), rngs)
            self.bn2 = layers.norm(out_ch, zero_scale=zero_init_last_bn, rngs=rngs)
        self.se = layers.attention(out_ch, f"{path}/se", rngs)
        self.downsample = None if stride == 1 and in_ch == out_ch else nnx.List([
            layers.conv(in_ch, out_ch, (1, 1), s, rngs), layers.norm(out_ch, rngs=rngs)])
        self.residual_boundary = layers.boundary()

    def __call__(self, x: jax.Array, train: bool | None = None) -> jax.Array:
        """Apply the block."""
        ra = flag(train)
        y = nnx.relu(self.bn1(self.conv1(x), ra))
        if self.bottleneck:
            y = nnx.relu(self.bn2(self.conv2(y), ra))
            y = self.bn3(self.conv3(y), ra)
        else:
            y = self.bn2(self.conv2(y), ra)
        return attend_and_add(self, y, x, train)
