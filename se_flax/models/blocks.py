"""Residual blocks (He et al., CVPR 2016) with an optional attention module.

The attention module sits after the block's last BatchNorm and before the residual addition
(Hu et al., SENet, Fig. 3; timm's placement). Bottlenecks stride on the 3x3 conv (ResNet v1.5,
torchvision/timm). Every convolution pads symmetrically like PyTorch's `padding=p`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from se_flax.layers.boundary import fusion_boundary
from se_flax.layers.conv import conv_general_dilated
from se_flax.layers.functional import at_least_fp32
from se_flax.layers.norm import BatchNorm
from se_flax.model_specs import NO_ATTENTION
from se_flax.variants import ATTENTION_VARIANTS

# torchvision/timm: kaiming_normal_(mode="fan_out", nonlinearity="relu").
conv_init = nn.initializers.variance_scaling(2.0, "fan_out", "normal")


def conv(features: int, kernel: int, stride: int = 1, dtype: Any = None,
         name: str = "") -> nn.Conv:
    """Bias-free 2D convolution with PyTorch's symmetric padding `kernel // 2`.

    A 1x1 kernel runs as a matrix product with its own VJP (`se_flax.layers.conv`).
    """
    pad = kernel // 2
    return nn.Conv(features, (kernel, kernel), (stride, stride), padding=[(pad, pad)] * 2,
                   use_bias=False, dtype=dtype, kernel_init=conv_init, name=name,
                   conv_general_dilated=conv_general_dilated)


def batch_norm(name: str, train: bool, axis_name: str | None, dtype: Any,
               zero_scale: bool = False) -> BatchNorm:
    """PyTorch-compatible BatchNorm; `zero_scale` for a block's last BN (`zero_init_last_bn`)."""
    return BatchNorm(use_running_average=not train, axis_name=axis_name, dtype=dtype, name=name,
                     scale_init=nn.initializers.zeros if zero_scale else nn.initializers.ones)


def attention_factory(attn: str, attn_kwargs: Any, axis_name: str | None,
                      spatial_dims: int) -> Callable[..., nn.Module] | None:
    """The attention variant `attn` with its options bound, or None for `"none"`."""
    if attn == NO_ATTENTION:
        return None
    options = dict(attn_kwargs or {})
    if attn == "cbam":  # its spatial branch has a BatchNorm: synchronise it like the others
        options.setdefault("bn_axis_name", axis_name)
    return functools.partial(ATTENTION_VARIANTS[attn], spatial_dims=spatial_dims, **options)


class ResidualBlock(nn.Module):
    """BasicBlock (`bottleneck=False`) or Bottleneck (expansion 4) with attention `attn`."""

    planes: int
    stride: int = 1
    bottleneck: bool = False
    downsample: bool = False
    attn: Callable[..., nn.Module] | None = None
    zero_init_last_bn: bool = False
    axis_name: str | None = None
    dtype: Any = None

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        """Apply the block."""
        def bn(name: str, last: bool = False) -> BatchNorm:
            return batch_norm(name, train, self.axis_name, self.dtype,
                              last and self.zero_init_last_bn)

        out_ch = self.planes * (4 if self.bottleneck else 1)
        if self.bottleneck:
            y = nn.relu(bn("bn1")(conv(self.planes, 1, 1, self.dtype, "conv1")(x)))
            y = nn.relu(bn("bn2")(conv(self.planes, 3, self.stride, self.dtype, "conv2")(y)))
            y = bn("bn3", last=True)(conv(out_ch, 1, 1, self.dtype, "conv3")(y))
        else:
            y = nn.relu(bn("bn1")(conv(self.planes, 3, self.stride, self.dtype, "conv1")(x)))
            y = bn("bn2", last=True)(conv(out_ch, 3, dtype=self.dtype, name="conv2")(y))
        if self.attn is not None:
            y = self.attn(channels=out_ch, dtype=self.dtype, name="se")(y, train=train)
        shortcut = x
        if self.downsample:
            shortcut = conv(out_ch, 1, self.stride, self.dtype, "downsample_0")(x)
            shortcut = bn("downsample_1")(shortcut)
        # The residual stream: stored once, not recomputed by every later block (CPU).
        return fusion_boundary(nn.relu(y + shortcut.astype(y.dtype)))


def global_pool(x: jax.Array) -> jax.Array:
    """Global average pool over the spatial axes, in float32."""
    return jnp.mean(at_least_fp32(x), axis=tuple(range(1, x.ndim - 1)))
