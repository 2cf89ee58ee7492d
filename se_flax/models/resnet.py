"""(SE-)ResNet in Flax linen: He et al., CVPR 2016, with attention per Hu et al., CVPR 2018.

Also ResNeXt (Xie et al., CVPR 2017: `cardinality`, `base_width`) and Selective Kernel networks
(Li et al., CVPR 2019: `sk`, blocks of `se_flax.models.sk_blocks`). Module names follow the
PyTorch keys of timm/torchvision through `se_flax.convert.naming`: `conv1`, `bn1`,
`layer1_0/conv1`, `layer1_0/se/fc1`, `layer1_0/downsample_0`, `fc`.
Stems: `imagenet` (7x7/2 conv, 3x3/2 max-pool padded with -inf) or `cifar` (3x3/1 conv).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax

from se_flax.layers.norm import BatchNorm
from se_flax.models.blocks import (
    Boundary,
    ModuleDef,
    ResidualBlock,
    attention_factory,
    global_pool,
    norm_layer,
    padded_conv,
)
from se_flax.models.sk_blocks import SelectiveKernelBlock
from se_spec.models import NO_ATTENTION, check_image
from se_spec.selective_kernel import SelectiveKernelSpec


class ResNet(nn.Module):
    """ResNet/SE-ResNet/ResNeXt/SK-ResNet; `attn` is an attention variant name or `"none"`."""

    block: str = "bottleneck"
    layers: tuple[int, ...] = (3, 4, 6, 3)
    num_classes: int = 1000
    stem: str = "imagenet"
    attn: str = NO_ATTENTION
    attn_kwargs: Any = None
    zero_init_last_bn: bool = False
    in_chans: int = 3
    dtype: Any = None
    axis_name: str | None = None
    model_name: str = "ResNet"
    conv: ModuleDef = nn.Conv
    norm: ModuleDef = BatchNorm
    residual_boundary: Boundary = None
    cardinality: int = 1
    base_width: int = 64
    sk: SelectiveKernelSpec | None = None

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        """Logits `(N, num_classes)` in float32 for channels-last images `x`."""
        check_image(self.model_name, x.shape, self.in_chans, -1, self.stem)
        attn = attention_factory(self.attn, self.attn_kwargs, self.axis_name, 2, self.norm)
        x = x.astype(self.dtype or x.dtype)
        k, s = (7, 2) if self.stem == "imagenet" else (3, 1)
        x = padded_conv(self.conv, 64, (k, k), (s, s), self.dtype, "conv1")(x)
        x = norm_layer(self.norm, "bn1", train, self.axis_name, self.dtype)(x)
        x = nn.relu(x)
        if self.stem == "imagenet":
            x = nn.max_pool(x, (3, 3), (2, 2), padding=((1, 1), (1, 1)))
        bottleneck = self.block == "bottleneck"
        extra: dict[str, Any] = {"cardinality": self.cardinality, "base_width": self.base_width}
        block_cls: type[nn.Module] = ResidualBlock
        if self.sk is not None:
            block_cls, extra["sk"] = SelectiveKernelBlock, self.sk
        in_ch = 64
        for stage, blocks in enumerate(self.layers):
            planes = 64 * 2 ** stage
            for i in range(blocks):
                stride = 2 if stage > 0 and i == 0 else 1
                out_ch = planes * (4 if bottleneck else 1)
                x = block_cls(planes, stride, bottleneck,
                              downsample=stride != 1 or in_ch != out_ch, attn=attn,
                              zero_init_last_bn=self.zero_init_last_bn,
                              axis_name=self.axis_name, dtype=self.dtype,
                              conv=self.conv, norm=self.norm,
                              residual_boundary=self.residual_boundary, **extra,
                              name=f"layer{stage + 1}_{i}")(x, train)
                in_ch = out_ch
        return nn.Dense(self.num_classes, name="fc")(global_pool(x))
