"""MobileNetV3 in Flax linen (Howard et al., "Searching for MobileNetV3", ICCV 2019).

Module names follow torchvision's keys through `se_flax.convert.naming`: `features_0_0` /
`features_0_1` (stem conv, BN), `features_N/block_M_0` / `block_M_1` (conv, BN), the SE module
`features_N/block_M` (`fc1`, `fc2`), `classifier_0`, `classifier_3`. Depthwise convolutions
are `nn.Conv` with `feature_group_count=C`; every convolution pads symmetrically (`k // 2`).
BatchNorm: eps 1e-3, momentum 0.99 (PyTorch's 0.01). Blocks and widths: `se_spec.mobilenet`.
"""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax

from se_flax.layers.functional import activation
from se_flax.layers.norm import BatchNorm
from se_flax.models.blocks import Boundary, ModuleDef, attention_factory, conv_init, global_pool
from se_spec.mobilenet import (
    BN_EPS,
    BN_MOMENTUM_FLAX,
    STEM_CHANNELS,
    Bneck,
    block_channels,
    head_width,
    last_conv_width,
)
from se_spec.models import NO_ATTENTION, check_image


def conv_bn(conv: ModuleDef, norm: ModuleDef, x: jax.Array, features: int, kernel: int,
            stride: int, name: str, train: bool, axis_name: str | None, dtype: Any,
            groups: int = 1, act: str | None = None, zero_scale: bool = False) -> jax.Array:
    """`act(BN(conv(x)))` as sibling modules `{name}_0` (conv) and `{name}_1` (BatchNorm).

    torchvision's `Sequential(conv, BN, act)`; call it inside a compact module.
    """
    p = kernel // 2
    y = conv(features, (kernel, kernel), (stride, stride), padding=[(p, p), (p, p)],
                    feature_group_count=groups, use_bias=False, dtype=dtype,
                    kernel_init=conv_init, name=f"{name}_0")(x)
    y = norm(use_running_average=not train, momentum=BN_MOMENTUM_FLAX, epsilon=BN_EPS,
                    axis_name=axis_name, dtype=dtype, name=f"{name}_1",
                    scale_init=nn.initializers.zeros if zero_scale else nn.initializers.ones)(y)
    return y if act is None else activation("MobileNetV3", act)(y)


class InvertedResidual(nn.Module):
    """Expansion 1x1, depthwise k x k (stride), attention, projection 1x1; identity shortcut."""

    in_ch: int
    cfg: Bneck
    attn: Any = None
    zero_init_last_bn: bool = False
    axis_name: str | None = None
    dtype: Any = None
    conv: ModuleDef = nn.Conv
    norm: ModuleDef = BatchNorm
    residual_boundary: Boundary = None

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        """Apply the block (submodules `block_M_0/1`, `block_M` for attention)."""
        cfg = self.cfg
        use_res = cfg.stride == 1 and self.in_ch == cfg.out
        cb = functools.partial(conv_bn, self.conv, self.norm, train=train,
                               axis_name=self.axis_name, dtype=self.dtype)
        index, y = 0, x
        if cfg.expanded != self.in_ch:
            y = cb(y, cfg.expanded, 1, 1, f"block_{index}", act=cfg.act)
            index += 1
        y = cb(y, cfg.expanded, cfg.kernel, cfg.stride, f"block_{index}", groups=cfg.expanded,
               act=cfg.act)
        index += 1
        if cfg.se and self.attn is not None:
            y = self.attn(channels=cfg.expanded, dtype=self.dtype, name=f"block_{index}")(
                y, train=train)
            index += 1
        y = cb(y, cfg.out, 1, 1, f"block_{index}", zero_scale=self.zero_init_last_bn and use_res)
        if not use_res:
            return y
        out = x.astype(y.dtype) + y
        return out if self.residual_boundary is None else self.residual_boundary(out)


class MobileNetV3(nn.Module):
    """MobileNetV3-Large/-Small (`block`); `attn` replaces the SE where the paper has one."""

    block: str = "large"
    layers: tuple[int, ...] = (15,)
    num_classes: int = 1000
    stem: str = "imagenet"
    attn: str = NO_ATTENTION
    attn_kwargs: Any = None
    zero_init_last_bn: bool = False
    in_chans: int = 3
    dtype: Any = None
    axis_name: str | None = None
    model_name: str = "MobileNetV3"
    conv: ModuleDef = nn.Conv
    norm: ModuleDef = BatchNorm
    residual_boundary: Boundary = None

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        """Logits `(N, num_classes)` in float32 for channels-last images `x`."""
        check_image(self.model_name, x.shape, self.in_chans, -1, self.stem)
        attn = attention_factory(self.attn, self.attn_kwargs, self.axis_name, 2, self.norm)
        x = x.astype(self.dtype or x.dtype)
        x = conv_bn(self.conv, self.norm, x, STEM_CHANNELS, 3,
                    2 if self.stem == "imagenet" else 1, "features_0", train, self.axis_name,
                    self.dtype, act="hard_swish")
        chans = block_channels(self.block)
        for i, (in_ch, cfg) in enumerate(chans, 1):
            x = InvertedResidual(in_ch, cfg, attn, self.zero_init_last_bn, self.axis_name,
                                 self.dtype, self.conv, self.norm, self.residual_boundary,
                                 name=f"features_{i}")(x, train)
        x = conv_bn(self.conv, self.norm, x, last_conv_width(self.block), 1, 1,
                    f"features_{len(chans) + 1}", train, self.axis_name, self.dtype,
                    act="hard_swish")
        dense_init = nn.initializers.normal(0.01)
        x = nn.Dense(head_width(self.block), kernel_init=dense_init, name="classifier_0")(
            global_pool(x))
        x = activation(self.model_name, "hard_swish")(x)
        return nn.Dense(self.num_classes, kernel_init=dense_init, name="classifier_3")(x)
