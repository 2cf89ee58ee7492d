"""Selective Kernel unit in NNX (Li et al., CVPR 2019): `se_flax.SelectiveKernel`'s twin.

Parallel 3x3 paths `paths[i]` (conv + BatchNorm + ReLU, path `i` dilated by `dilations[i]`),
fused by summing, squeezed by a global mean, reduced (`attn.fc_reduce` + `attn.bn` + ReLU),
turned into per-path logits (`attn.fc_select`, 1x1 convs on the `(N, 1, 1, C)` squeeze) and
mixed by a softmax over paths; timm's module names. The squeeze and the selection run in float32;
the selection weights `(N, paths, C)` are recorded under `selection` (`nnx.capture(model,
nnx.Intermediate)`). Options, widths and checks: `se_spec.selective_kernel`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from se_flax.implementation import Implementation
from se_flax.layers.functional import at_least_fp32, spatial_mean
from se_flax.models.blocks import conv_init
from se_flax.nnx.blocks import Layers, flag
from se_flax.nnx.intermediates import labelled, record
from se_flax.nnx.norm import BatchNorm
from se_spec.selective_kernel import attention_channels, check_selective_kernel
from se_spec.variables import SELECTION


class ConvNormAct(nnx.Module):
    """Bias-free conv `conv` (padding `dilation * (k // 2)`) + BatchNorm `bn` (+ ReLU)."""

    def __init__(self, in_features: int, features: int, kernel: int, stride: int,
                 layers: Layers, *, dilation: int = 1, groups: int = 1, act: bool = True,
                 zero_scale: bool = False, rngs: nnx.Rngs) -> None:
        self.act = act
        self.conv = layers.conv(in_features, features, (kernel, kernel), (stride, stride), rngs,
                                groups=groups, dilation=dilation)
        self.bn = layers.norm(features, zero_scale=zero_scale, rngs=rngs)

    def __call__(self, x: jax.Array, train: bool | None = None) -> jax.Array:
        """Apply conv, BatchNorm and ReLU."""
        x = self.bn(self.conv(x), flag(train))
        return nnx.relu(x) if self.act else x


class SelectiveKernelAttn(nnx.Module):
    """Selection weights `(N, paths, C)` of the fused paths, in float32 (softmax over paths)."""

    def __init__(self, channels: int, paths: int, attn_channels: int, axis_name: str | None,
                 batchnorm_vjp: bool, *, rngs: nnx.Rngs) -> None:
        self.channels, self.paths = channels, paths
        self.fc_reduce = nnx.Conv(channels, attn_channels, (1, 1), use_bias=False,
                                  kernel_init=conv_init, rngs=rngs)
        self.bn = BatchNorm(attn_channels, axis_name=axis_name, custom_vjp=batchnorm_vjp,
                            rngs=rngs)
        self.fc_select = nnx.Conv(attn_channels, channels * paths, (1, 1), use_bias=False,
                                  kernel_init=conv_init, rngs=rngs)

    def __call__(self, ys: Sequence[jax.Array], train: bool | None = None) -> jax.Array:
        """`paths` outputs `(N, H, W, C)` → softmax-over-paths weights `(N, paths, C)`."""
        fused = at_least_fp32(ys[0])
        for y in ys[1:]:
            fused = fused + at_least_fp32(y)
        s = spatial_mean(fused)[:, None, None, :]  # (N, 1, 1, C): 1x1 convs, as in PyTorch
        s = self.bn(self.fc_reduce(s), flag(train))
        s = self.fc_select(nnx.relu(s))
        return jax.nn.softmax(s.reshape(s.shape[0], self.paths, self.channels), axis=1)


class SelectiveKernel(nnx.Module):
    """Selective Kernel convolution `in_channels` → `features`; records the selection weights.

    `split_input` gives each path `in_channels / paths` input channels (timm's skresnet18/34);
    `groups` groups every path's conv (SKNet-50 is a ResNeXt, 32 groups). `impl` picks the
    convolution and BatchNorm implementation (`se_flax.implementation`; plain XLA by default).
    `path` names the module in error messages.
    """

    def __init__(self, in_channels: int, features: int, stride: int = 1, groups: int = 1,
                 dilations: tuple[int, ...] = (1, 2), rd_ratio: float = 1 / 16,
                 rd_divisor: int = 8, rd_channels: int | None = None, split_input: bool = True,
                 axis_name: str | None = None, dtype: Any = None, *,
                 impl: Implementation | None = None, path: str | None = None,
                 rngs: nnx.Rngs) -> None:
        label = labelled("SelectiveKernel", path)
        dilations = tuple(dilations)
        path_in = check_selective_kernel(label, in_channels, features, groups, dilations,
                                         split_input)
        self.label, self.in_channels, self.features = label, in_channels, features
        self.groups, self.dilations, self.split_input = groups, dilations, split_input
        layers = Layers(impl or Implementation(), dtype, axis_name)
        self.paths = nnx.List([ConvNormAct(path_in, features, 3, stride, layers, dilation=d,
                                           groups=groups, rngs=rngs) for d in dilations])
        width = attention_channels(features, rd_ratio, rd_divisor, rd_channels)
        self.attn = SelectiveKernelAttn(features, len(dilations), width, axis_name,
                                        layers.impl.batchnorm_vjp, rngs=rngs)

    def __call__(self, x: jax.Array, train: bool | None = None) -> jax.Array:
        """Mix the paths of channels-last `x` `(N, H, W, C_in)` → `(N, H', W', features)`."""
        check_selective_kernel(self.label, x.shape[-1], self.features, self.groups,
                               self.dilations, self.split_input)
        if x.shape[-1] != self.in_channels:
            raise ValueError(f"{self.label}: input has {x.shape[-1]} channels (shape "
                             f"{tuple(x.shape)}); the module was built for "
                             f"in_channels={self.in_channels}")
        paths = len(self.dilations)
        inputs = jnp.split(x, paths, axis=-1) if self.split_input else [x] * paths
        ys = [p(xi, train) for p, xi in zip(self.paths, inputs, strict=True)]
        w = self.attn(ys, train)
        record(self, SELECTION, w)
        out = ys[0] * w[:, 0, None, None, :].astype(ys[0].dtype)
        for i, y in enumerate(ys[1:], 1):
            out = out + y * w[:, i, None, None, :].astype(y.dtype)
        return out
