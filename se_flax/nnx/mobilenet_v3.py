"""MobileNetV3 in NNX (Howard et al., "Searching for MobileNetV3", ICCV 2019).

The twin of `se_flax.models.mobilenet_v3.MobileNetV3`: the same blocks, widths and computation,
with attributes named as torchvision's modules: `features[0][0]`/`features[0][1]` (stem conv,
BN), `features[N].block[M][0]`/`[1]` (conv, BN), the attention `features[N].block[M]` (`fc1`,
`fc2`), the last 1x1 conv `features[n + 1]`, `classifier[0]` and `classifier[3]`
(`classifier[1]`/`[2]`, hard-swish and torchvision's dropout, hold no variables: None).
BatchNorm: eps 1e-3, Flax momentum 0.99. Blocks and widths: `se_spec.mobilenet`.
"""

from __future__ import annotations

import jax
from flax import nnx

from se_flax.layers.functional import activation
from se_flax.models.blocks import global_pool
from se_flax.nnx.blocks import Layers, flag
from se_spec.mobilenet import (
    BN_EPS,
    BN_MOMENTUM_FLAX,
    STEM_CHANNELS,
    Bneck,
    block_channels,
    head_width,
    last_conv_width,
)
from se_spec.models import check_image


def conv_bn(layers: Layers, in_ch: int, features: int, kernel: int, stride: int,
            rngs: nnx.Rngs, groups: int = 1, zero_scale: bool = False) -> nnx.List:
    """`[conv, BatchNorm]`, torchvision's `Sequential(conv, BN)` (apply with `apply_conv_bn`)."""
    return nnx.List([
        layers.conv(in_ch, features, (kernel, kernel), (stride, stride), rngs, groups=groups),
        layers.norm(features, zero_scale=zero_scale, momentum=BN_MOMENTUM_FLAX, epsilon=BN_EPS,
                    rngs=rngs)])


def apply_conv_bn(pair: nnx.List, x: jax.Array, train: bool | None,
                  act: str | None = None) -> jax.Array:
    """`act(BN(conv(x)))` for a `conv_bn` pair (no activation for `act=None`)."""
    y = pair[1](pair[0](x), flag(train))
    return y if act is None else activation("MobileNetV3", act)(y)


class InvertedResidual(nnx.Module):
    """Expansion 1x1, depthwise k x k (stride), attention, projection 1x1; identity shortcut."""

    def __init__(self, in_ch: int, cfg: Bneck, zero_init_last_bn: bool, layers: Layers,
                 path: str, *, rngs: nnx.Rngs) -> None:
        self.act = cfg.act
        self.use_res = cfg.stride == 1 and in_ch == cfg.out
        block: list[nnx.Module] = []
        if cfg.expanded != in_ch:
            block.append(conv_bn(layers, in_ch, cfg.expanded, 1, 1, rngs))
        block.append(conv_bn(layers, cfg.expanded, cfg.expanded, cfg.kernel, cfg.stride, rngs,
                             groups=cfg.expanded))
        self.num_activated = len(block)
        attn = None
        if cfg.se:  # torchvision's index: the module after the depthwise conv
            attn = layers.attention(cfg.expanded, f"{path}/block_{len(block)}", rngs)
        self.has_attention = attn is not None
        if attn is not None:
            block.append(attn)
        block.append(conv_bn(layers, cfg.expanded, cfg.out, 1, 1, rngs,
                             zero_scale=zero_init_last_bn and self.use_res))
        self.block = nnx.List(block)
        self.residual_boundary = layers.boundary()

    def __call__(self, x: jax.Array, train: bool | None = None) -> jax.Array:
        """Apply the block."""
        y = x
        for i in range(self.num_activated):
            y = apply_conv_bn(self.block[i], y, train, self.act)
        if self.has_attention:
            y = self.block[self.num_activated](y, train=train)
        y = apply_conv_bn(self.block[len(self.block) - 1], y, train)
        if not self.use_res:
            return y
        out = x.astype(y.dtype) + y
        return out if self.residual_boundary is None else self.residual_boundary(out)


class MobileNetV3(nnx.Module):
    """MobileNetV3-Large/-Small (`block`); build it with `se_flax.nnx.create_model`.

    `layers` (the number of blocks) is fixed by `block` and only accepted, as in Linen.
    """

    def __init__(self, block: str, layers: tuple[int, ...], num_classes: int, stem: str,
                 zero_init_last_bn: bool, in_chans: int, builder: Layers, model_name: str, *,
                 rngs: nnx.Rngs) -> None:
        del layers
        self.model_name, self.stem, self.in_chans = model_name, stem, in_chans
        self.dtype = builder.dtype
        features: list[nnx.Module] = [conv_bn(builder, in_chans, STEM_CHANNELS, 3,
                                               2 if stem == "imagenet" else 1, rngs)]
        chans = block_channels(block)
        for i, (in_ch, cfg) in enumerate(chans, 1):
            features.append(InvertedResidual(in_ch, cfg, zero_init_last_bn, builder,
                                             f"features_{i}", rngs=rngs))
        last, head = last_conv_width(block), head_width(block)
        features.append(conv_bn(builder, chans[-1][1].out, last, 1, 1, rngs))
        self.features = nnx.List(features)
        init = nnx.initializers.normal(0.01)
        self.classifier = nnx.List([nnx.Linear(last, head, kernel_init=init, rngs=rngs), None,
                                    None, nnx.Linear(head, num_classes, kernel_init=init,
                                                     rngs=rngs)])

    def __call__(self, x: jax.Array, train: bool | None = None) -> jax.Array:
        """Logits `(N, num_classes)` in float32 for channels-last images `x`.

        `train=None` follows the mode set by `model.train()` / `model.eval()`.
        """
        check_image(self.model_name, x.shape, self.in_chans, -1, self.stem)
        x = x.astype(self.dtype or x.dtype)
        x = apply_conv_bn(self.features[0], x, train, "hard_swish")
        for i in range(1, len(self.features) - 1):
            x = self.features[i](x, train)
        x = apply_conv_bn(self.features[len(self.features) - 1], x, train, "hard_swish")
        x = self.classifier[0](global_pool(x))
        x = activation(self.model_name, "hard_swish")(x)
        return self.classifier[3](x)
