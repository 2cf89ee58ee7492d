"""Selective Kernel unit (Li et al., "Selective Kernel Networks", CVPR 2019), timm's layout.

Parallel 3x3 paths (conv + BatchNorm + ReLU, path `i` dilated by `dilations[i]`), fused by
summing, squeezed by a global mean, reduced (`attn/fc_reduce` + `attn/bn` + ReLU), turned into
per-path logits (`attn/fc_select`) and mixed by a softmax over paths. Module names follow timm's
keys through `se_flax.convert.naming`: `paths_0/conv`, `paths_0/bn`, `attn/fc_reduce`,
`attn/bn`, `attn/fc_select` (1x1 convs on the squeezed `(N, 1, 1, C)` map, so that BatchNorm
folding pairs `fc_reduce` with `attn/bn` as PyTorch's does). The squeeze and the selection run
in float32 whatever `dtype` the network computes in; the selection weights `(N, paths, C)` are
recorded with `sow("intermediates", "selection", w)`. Options and widths:
`se_spec.selective_kernel`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from se_flax.layers.functional import at_least_fp32, spatial_mean
from se_flax.layers.labels import module_label
from se_flax.layers.norm import BatchNorm
from se_spec.selective_kernel import attention_channels, check_selective_kernel
from se_spec.variables import SELECTION

ModuleDef = Any
# torchvision/timm: kaiming_normal_(mode="fan_out", nonlinearity="relu").
conv_init = nn.initializers.variance_scaling(2.0, "fan_out", "normal")


class ConvNormAct(nn.Module):
    """Bias-free conv (PyTorch's symmetric padding `dilation * (k // 2)`) + BatchNorm (+ ReLU)."""

    features: int
    kernel: int = 3
    stride: int = 1
    dilation: int = 1
    groups: int = 1
    act: bool = True
    zero_scale: bool = False
    axis_name: str | None = None
    dtype: Any = None
    conv: ModuleDef = nn.Conv
    norm: ModuleDef = BatchNorm

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        """Apply conv, BatchNorm and ReLU."""
        pad = self.dilation * (self.kernel // 2)
        x = self.conv(self.features, (self.kernel, self.kernel), (self.stride, self.stride),
                      padding=((pad, pad), (pad, pad)),
                      kernel_dilation=(self.dilation, self.dilation),
                      feature_group_count=self.groups, use_bias=False, dtype=self.dtype,
                      kernel_init=conv_init, name="conv")(x)
        x = self.norm(use_running_average=not train, axis_name=self.axis_name, dtype=self.dtype,
                      scale_init=nn.initializers.zeros if self.zero_scale
                      else nn.initializers.ones, name="bn")(x)
        return nn.relu(x) if self.act else x


class SelectiveKernelAttn(nn.Module):
    """Selection weights `(N, paths, C)` of the fused paths, in float32 (softmax over paths)."""

    channels: int
    paths: int
    attn_channels: int
    axis_name: str | None = None
    norm: ModuleDef = BatchNorm

    @nn.compact
    def __call__(self, ys: Sequence[jax.Array], train: bool = False) -> jax.Array:
        """`paths` outputs `(N, H, W, C)` → softmax-over-paths weights `(N, paths, C)`."""
        fused = at_least_fp32(ys[0])
        for y in ys[1:]:
            fused = fused + at_least_fp32(y)
        s = spatial_mean(fused)[:, None, None, :]  # (N, 1, 1, C): 1x1 convs, as in PyTorch
        s = nn.Conv(self.attn_channels, (1, 1), use_bias=False, kernel_init=conv_init,
                    name="fc_reduce")(s)
        s = self.norm(use_running_average=not train, axis_name=self.axis_name, name="bn")(s)
        s = nn.Conv(self.channels * self.paths, (1, 1), use_bias=False, kernel_init=conv_init,
                    name="fc_select")(nn.relu(s))
        return jax.nn.softmax(s.reshape(s.shape[0], self.paths, self.channels), axis=1)


class SelectiveKernel(nn.Module):
    """Selective Kernel convolution to `features` channels; records the selection weights.

    `split_input` gives each path `C_in / paths` input channels (timm's skresnet18/34);
    `groups` groups every path's conv (SKNet-50 is a ResNeXt, 32 groups).
    """

    features: int
    stride: int = 1
    groups: int = 1
    dilations: tuple[int, ...] = (1, 2)
    rd_ratio: float = 1 / 16
    rd_divisor: int = 8
    rd_channels: int | None = None
    split_input: bool = True
    axis_name: str | None = None
    dtype: Any = None
    conv: ModuleDef = nn.Conv
    norm: ModuleDef = BatchNorm

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        """Mix the paths of channels-last `x` `(N, H, W, C_in)` → `(N, H', W', features)`."""
        check_selective_kernel(module_label(self), x.shape[-1], self.features, self.groups,
                               tuple(self.dilations), self.split_input)
        paths = len(self.dilations)
        inputs = jnp.split(x, paths, axis=-1) if self.split_input else [x] * paths
        ys = [ConvNormAct(self.features, 3, self.stride, d, self.groups, axis_name=self.axis_name,
                          dtype=self.dtype, conv=self.conv, norm=self.norm,
                          name=f"paths_{i}")(xi, train)
              for i, (d, xi) in enumerate(zip(self.dilations, inputs, strict=True))]
        width = attention_channels(self.features, self.rd_ratio, self.rd_divisor,
                                   self.rd_channels)
        w = SelectiveKernelAttn(self.features, paths, width, self.axis_name, self.norm,
                                name="attn")(ys, train)
        self.sow("intermediates", SELECTION, w)
        out = ys[0] * w[:, 0, None, None, :].astype(ys[0].dtype)
        for i, y in enumerate(ys[1:], 1):
            out = out + y * w[:, i, None, None, :].astype(y.dtype)
        return out
