"""Convolutional Block Attention Module (Woo et al., "CBAM", ECCV 2018; timm `CbamModule`).

Channel attention: avg- and max-pooled descriptors through one shared bottleneck MLP, summed,
then gated. Spatial attention: the channel-wise mean and max maps, a `k x ... x k` convolution
with BatchNorm, then gated. Records both gates: `gate` `(N, C)` and `spatial_gate` `(N, ..., 1)`.
All attention maths runs in float32.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from se_flax.layers.functional import (
    activation,
    at_least_fp32,
    gate_fn,
    rescale,
    spatial_max,
    spatial_mean,
)
from se_flax.layers.labels import module_label
from se_flax.layers.norm import BatchNorm
from se_flax.layers.pointwise import Pointwise
from se_spec.attention import SPATIAL_DIMS, check_input, reduced_channels
from se_spec.validation import check_choice, check_positive_int


class ChannelAttention(nn.Module):
    """Shared MLP over mean- and max-pooled descriptors (CBAM's channel branch)."""

    channels: int
    rd_channels: int
    act: str = "relu"
    gate: str = "sigmoid"
    bias: bool = False

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """Return the channel gate `(N, C)` for channels-last `x`."""
        label = module_label(self)
        act, rank = activation(label, self.act), x.ndim - 2
        fc1 = Pointwise(self.rd_channels, "conv", 1, self.bias, rank, name="fc1")
        fc2 = Pointwise(self.channels, "conv", 1, self.bias, rank, name="fc2")
        mlp = lambda v: fc2(act(fc1(v)))  # noqa: E731
        return gate_fn(label, self.gate)(mlp(spatial_mean(x)) + mlp(spatial_max(x)))


class ConvBn(nn.Module):
    """Bias-free convolution with symmetric padding followed by BatchNorm (timm `ConvNormAct`)."""

    features: int
    kernel_size: int
    bn_axis_name: str | None = None
    norm: Any = BatchNorm

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        """Convolve channels-last `x` and normalise."""
        rank, pad = x.ndim - 2, self.kernel_size // 2
        x = nn.Conv(self.features, (self.kernel_size,) * rank, padding=[(pad, pad)] * rank,
                    use_bias=False, name="conv")(x)
        return self.norm(use_running_average=not train, axis_name=self.bn_axis_name,
                         name="bn")(x)


class SpatialAttention(nn.Module):
    """Gate from the channel-wise mean and max maps (CBAM's spatial branch)."""

    kernel_size: int = 7
    gate: str = "sigmoid"
    bn_axis_name: str | None = None
    norm: Any = BatchNorm

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        """Return the spatial gate `(N, ..., 1)` for channels-last `x`."""
        xf = at_least_fp32(x)
        maps = jnp.concatenate([xf.mean(-1, keepdims=True), xf.max(-1, keepdims=True)], -1)
        s = ConvBn(1, self.kernel_size, self.bn_axis_name, self.norm, name="conv")(maps, train)
        return gate_fn(module_label(self), self.gate)(s)


class CBAM(nn.Module):
    """Channel then spatial attention; records `gate` `(N, C)` and `spatial_gate`."""

    channels: int
    rd_ratio: float = 1 / 16
    rd_channels: int | None = None
    rd_policy: str = "divisible"
    rd_divisor: int = 1
    spatial_kernel_size: int = 7
    act: str = "relu"
    gate: str = "sigmoid"
    bias: bool = False
    spatial_dims: int | None = None
    bn_axis_name: str | None = None
    norm: Any = BatchNorm  # the spatial branch's BatchNorm (a model passes its own)
    dtype: Any = None

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        """Apply channel attention, then spatial attention."""
        label = module_label(self)
        rd = reduced_channels(label, self.channels, self.rd_ratio, self.rd_channels,
                              self.rd_policy, self.rd_divisor)
        k = check_positive_int(label, "spatial_kernel_size", self.spatial_kernel_size)
        if k % 2 == 0:
            raise ValueError(f"{label}: spatial_kernel_size={k} is even; expected an odd size")
        if self.spatial_dims is not None:
            check_choice(label, "spatial_dims", self.spatial_dims, SPATIAL_DIMS)
        activation(label, self.act), gate_fn(label, self.gate)
        check_input(label, x.shape, self.channels, -1, self.spatial_dims)
        g = ChannelAttention(self.channels, rd, self.act, self.gate, self.bias,
                             name="channel")(x)
        self.sow("intermediates", "gate", g)
        x = rescale(x, g)
        sg = SpatialAttention(k, self.gate, self.bn_axis_name, self.norm, name="spatial")(x, train)
        self.sow("intermediates", "spatial_gate", sg)
        return x * sg.astype(x.dtype)
