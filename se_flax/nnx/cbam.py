"""Convolutional Block Attention Module in NNX (Woo et al., CBAM, ECCV 2018): `se_flax.CBAM`'s twin.

Channel attention `channel` (avg- and max-pooled descriptors through one shared bottleneck,
`fc1`/`fc2`), then spatial attention `spatial.conv` (a `k x ... x k` convolution `conv` over the
channel-wise mean and max maps, BatchNorm `bn`). Records `gate` `(N, C)` and `spatial_gate`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from se_flax.layers.functional import (
    activation,
    at_least_fp32,
    gate_fn,
    rescale,
    spatial_max,
    spatial_mean,
)
from se_flax.nnx.intermediates import labelled, record
from se_flax.nnx.norm import BatchNorm
from se_flax.nnx.pointwise import Pointwise
from se_spec.attention import SPATIAL_DIMS, check_input, reduced_channels
from se_spec.validation import check_choice, check_positive_int


class ChannelAttention(nnx.Module):
    """Shared MLP over mean- and max-pooled descriptors (CBAM's channel branch)."""

    def __init__(self, channels: int, rd_channels: int, act: Callable[[jax.Array], jax.Array],
                 gate: Callable[[jax.Array], jax.Array], bias: bool, rank: int, *,
                 rngs: nnx.Rngs) -> None:
        self.act, self.gate = act, gate
        self.fc1 = Pointwise(channels, rd_channels, "conv", 1, bias, rank, rngs=rngs)
        self.fc2 = Pointwise(rd_channels, channels, "conv", 1, bias, rank, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        """Return the channel gate `(N, C)` for channels-last `x`."""
        def mlp(v: jax.Array) -> jax.Array:
            return self.fc2(self.act(self.fc1(v)))
        return self.gate(mlp(spatial_mean(x)) + mlp(spatial_max(x)))


class ConvBn(nnx.Module):
    """Bias-free convolution with symmetric padding followed by BatchNorm."""

    def __init__(self, in_features: int, features: int, kernel_size: int, rank: int,
                 norm: Callable[..., BatchNorm], bn_axis_name: str | None, *,
                 rngs: nnx.Rngs) -> None:
        pad = kernel_size // 2
        self.conv = nnx.Conv(in_features, features, (kernel_size,) * rank,
                             padding=[(pad, pad)] * rank, use_bias=False, rngs=rngs)
        self.bn = norm(features, axis_name=bn_axis_name, rngs=rngs)

    def __call__(self, x: jax.Array, train: bool | None = None) -> jax.Array:
        """Convolve channels-last `x` and normalise."""
        return self.bn(self.conv(x), None if train is None else not train)


class SpatialAttention(nnx.Module):
    """Gate from the channel-wise mean and max maps (CBAM's spatial branch)."""

    def __init__(self, kernel_size: int, gate: Callable[[jax.Array], jax.Array], rank: int,
                 norm: Callable[..., BatchNorm], bn_axis_name: str | None, *,
                 rngs: nnx.Rngs) -> None:
        self.gate = gate
        self.conv = ConvBn(2, 1, kernel_size, rank, norm, bn_axis_name, rngs=rngs)

    def __call__(self, x: jax.Array, train: bool | None = None) -> jax.Array:
        """Return the spatial gate `(N, ..., 1)` for channels-last `x`."""
        xf = at_least_fp32(x)
        maps = jnp.concatenate([xf.mean(-1, keepdims=True), xf.max(-1, keepdims=True)], -1)
        return self.gate(self.conv(maps, train))


class CBAM(nnx.Module):
    """Channel then spatial attention; records `gate` `(N, C)` and `spatial_gate`.

    `norm` builds the spatial branch's BatchNorm (a model passes its own); `spatial_rank`
    (default `spatial_dims`, else 2) fixes the spatial kernel's rank.
    """

    def __init__(self, channels: int, rd_ratio: float = 1 / 16, rd_channels: int | None = None,
                 rd_policy: str = "divisible", rd_divisor: int = 1, spatial_kernel_size: int = 7,
                 act: str = "relu", gate: str = "sigmoid", bias: bool = False,
                 spatial_dims: int | None = None, bn_axis_name: str | None = None,
                 norm: Callable[..., BatchNorm] = BatchNorm, dtype: Any = None, *,
                 spatial_rank: int | None = None, path: str | None = None,
                 rngs: nnx.Rngs) -> None:
        label = labelled("CBAM", path)
        rd = reduced_channels(label, channels, rd_ratio, rd_channels, rd_policy, rd_divisor)
        k = check_positive_int(label, "spatial_kernel_size", spatial_kernel_size)
        if k % 2 == 0:
            raise ValueError(f"{label}: spatial_kernel_size={k} is even; expected an odd size")
        if spatial_dims is not None:
            check_choice(label, "spatial_dims", spatial_dims, SPATIAL_DIMS)
        act_fn, gate_f = activation(label, act), gate_fn(label, gate)
        self.label, self.channels, self.spatial_dims = label, channels, spatial_dims
        self.dtype = dtype
        rank = spatial_rank or spatial_dims or 2
        self.channel = ChannelAttention(channels, rd, act_fn, gate_f, bias, rank, rngs=rngs)
        self.spatial = SpatialAttention(k, gate_f, rank, norm, bn_axis_name, rngs=rngs)

    def __call__(self, x: jax.Array, train: bool | None = None) -> jax.Array:
        """Apply channel attention, then spatial attention."""
        check_input(self.label, x.shape, self.channels, -1, self.spatial_dims)
        g = self.channel(x)
        record(self, "gate", g)
        x = rescale(x, g)
        sg = self.spatial(x, train)
        record(self, "spatial_gate", sg)
        return x * sg.astype(x.dtype)
