"""Residual blocks (He et al., CVPR 2016) with an optional attention module.

The attention module sits after the block's last BatchNorm and before the residual addition
(Hu et al., SENet, Fig. 3; timm's placement). Bottlenecks stride on the 3x3 conv (ResNet v1.5,
torchvision/timm). Every convolution pads symmetrically like PyTorch's `padding=p`.
`conv`, `norm` and `residual_boundary` are the implementation choices of
`se_flax.implementation` (plain `nn.Conv`, `BatchNorm` and nothing by default).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from se_flax.layers.functional import at_least_fp32
from se_flax.layers.labels import module_label
from se_flax.layers.norm import BatchNorm
from se_flax.variants import ATTENTION_VARIANTS
from se_spec.models import NO_ATTENTION, block_width

ModuleDef = Any
Boundary = Callable[[jax.Array], jax.Array] | None

# torchvision/timm: kaiming_normal_(mode="fan_out", nonlinearity="relu").
conv_init = nn.initializers.variance_scaling(2.0, "fan_out", "normal")


def padded_conv(conv_def: ModuleDef, features: int, kernel: Sequence[int],
                stride: Sequence[int], dtype: Any, name: str, groups: int = 1) -> nn.Module:
    """Bias-free convolution with PyTorch's symmetric padding `k // 2` per axis.

    `groups` is Flax's `feature_group_count` (PyTorch's `groups`); the kernel is
    `(*k, C_in / groups, C_out)`, PyTorch's `(C_out, C_in / groups, *k)` transposed.
    """
    padding = [(k // 2, k // 2) for k in kernel]
    return conv_def(features, tuple(kernel), tuple(stride), padding=padding, use_bias=False,
                    feature_group_count=groups, dtype=dtype, kernel_init=conv_init, name=name)


def norm_layer(norm_def: ModuleDef, name: str, train: bool, axis_name: str | None, dtype: Any,
               zero_scale: bool = False) -> nn.Module:
    """PyTorch-compatible BatchNorm; `zero_scale` for a block's last BN (`zero_init_last_bn`)."""
    return norm_def(use_running_average=not train, axis_name=axis_name, dtype=dtype, name=name,
                    scale_init=nn.initializers.zeros if zero_scale else nn.initializers.ones)


def attention_factory(attn: str, attn_kwargs: Any, axis_name: str | None, spatial_dims: int,
                      norm_def: ModuleDef = BatchNorm) -> Callable[..., nn.Module] | None:
    """The attention variant `attn` with its options bound, or None for `"none"`."""
    if attn == NO_ATTENTION:
        return None
    options = dict(attn_kwargs or {})
    if attn == "cbam":  # its spatial branch has a BatchNorm: the model's, synchronised alike
        options.setdefault("bn_axis_name", axis_name)
        options.setdefault("norm", norm_def)
    return functools.partial(ATTENTION_VARIANTS[attn], spatial_dims=spatial_dims, **options)


class ResidualBlock(nn.Module):
    """BasicBlock (`bottleneck=False`) or Bottleneck (expansion 4) with attention `attn`.

    A Bottleneck with `cardinality > 1` is ResNeXt's (Xie et al., CVPR 2017): its 3x3 conv has
    `block_width(planes, base_width, cardinality)` channels in `cardinality` groups.
    """

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

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        """Apply the block."""
        def bn(name: str, last: bool = False) -> nn.Module:
            return norm_layer(self.norm, name, train, self.axis_name, self.dtype,
                              last and self.zero_init_last_bn)

        def cv(features: int, kernel: int, stride: int, name: str, groups: int = 1
               ) -> nn.Module:
            return padded_conv(self.conv, features, (kernel, kernel), (stride, stride), self.dtype,
                               name, groups)

        out_ch = self.planes * (4 if self.bottleneck else 1)
        width = block_width(module_label(self), self.planes, self.base_width, self.cardinality,
                            self.bottleneck)
        if self.bottleneck:
            y = nn.relu(bn("bn1")(cv(width, 1, 1, "conv1")(x)))
            y = nn.relu(bn("bn2")(cv(width, 3, self.stride, "conv2", self.cardinality)(y)))
            y = bn("bn3", last=True)(cv(out_ch, 1, 1, "conv3")(y))
        else:
            y = nn.relu(bn("bn1")(cv(self.planes, 3, self.stride, "conv1")(x)))
            y = bn("bn2", last=True)(cv(out_ch, 3, 1, "conv2")(y))
        if self.attn is not None:
            y = self.attn(channels=out_ch, dtype=self.dtype, name="se")(y, train=train)
        shortcut = x
        if self.downsample:
            shortcut = bn("downsample_1")(cv(out_ch, 1, self.stride, "downsample_0")(x))
        out = nn.relu(y + shortcut.astype(y.dtype))
        return out if self.residual_boundary is None else self.residual_boundary(out)


def global_pool(x: jax.Array) -> jax.Array:
    """Global average pool over the spatial axes, in float32."""
    return jnp.mean(at_least_fp32(x), axis=tuple(range(1, x.ndim - 1)))
