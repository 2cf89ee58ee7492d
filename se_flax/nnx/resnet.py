"""(SE-)ResNet in NNX (He et al., CVPR 2016; attention per Hu et al., CVPR 2018).

Also ResNeXt (Xie et al., CVPR 2017: `cardinality`, `base_width`) and Selective Kernel networks
(Li et al., CVPR 2019: `sk`, blocks of `se_flax.nnx.sk_blocks`).

The twin of `se_flax.models.resnet.ResNet`: the same options and the same computation, with
attributes named as PyTorch's modules (timm/torchvision): `conv1`, `bn1`, `layer1[0].conv1`,
`layer1[0].se.fc1`, `layer1[0].downsample[0]`, `fc`. Stems: `imagenet` (7x7/2 conv, 3x3/2
max-pool padded with -inf) or `cifar` (3x3/1 conv).
"""

from __future__ import annotations

from typing import Any

import jax
from flax import nnx

from se_flax.models.blocks import global_pool
from se_flax.nnx.blocks import Layers, ResidualBlock, flag
from se_flax.nnx.sk_blocks import SelectiveKernelBlock
from se_spec.models import EXPANSION, check_image
from se_spec.selective_kernel import SelectiveKernelSpec


class ResNet(nnx.Module):
    """ResNet/SE-ResNet/ResNeXt/SK-ResNet; build it with `se_flax.nnx.create_model`."""

    def __init__(self, block: str, layers: tuple[int, ...], num_classes: int, stem: str,
                 zero_init_last_bn: bool, in_chans: int, builder: Layers, model_name: str, *,
                 cardinality: int = 1, base_width: int = 64,
                 sk: SelectiveKernelSpec | None = None, rngs: nnx.Rngs) -> None:
        self.model_name, self.stem, self.in_chans = model_name, stem, in_chans
        self.dtype, self.num_stages = builder.dtype, len(layers)
        k, s = (7, 2) if stem == "imagenet" else (3, 1)
        self.conv1 = builder.conv(in_chans, 64, (k, k), (s, s), rngs)
        self.bn1 = builder.norm(64, rngs=rngs)
        bottleneck, expansion = block == "bottleneck", EXPANSION[block]
        extra: dict[str, Any] = {"cardinality": cardinality, "base_width": base_width}
        block_cls: type[ResidualBlock | SelectiveKernelBlock] = ResidualBlock
        if sk is not None:
            block_cls, extra["sk"] = SelectiveKernelBlock, sk
        in_ch = 64
        for stage, blocks in enumerate(layers):
            planes, stage_blocks = 64 * 2 ** stage, []
            for i in range(blocks):
                stride = 2 if stage > 0 and i == 0 else 1
                stage_blocks.append(block_cls(in_ch, planes, stride, bottleneck,
                                              zero_init_last_bn, builder,
                                              f"layer{stage + 1}_{i}", **extra, rngs=rngs))
                in_ch = planes * expansion
            setattr(self, f"layer{stage + 1}", nnx.List(stage_blocks))
        self.fc = nnx.Linear(in_ch, num_classes, rngs=rngs)

    def stages(self) -> list[nnx.List]:
        """The residual stages `layer1`, `layer2`, … in order."""
        return [getattr(self, f"layer{i + 1}") for i in range(self.num_stages)]

    def __call__(self, x: jax.Array, train: bool | None = None) -> jax.Array:
        """Logits `(N, num_classes)` in float32 for channels-last images `x`.

        `train=None` follows the mode set by `model.train()` / `model.eval()`.
        """
        check_image(self.model_name, x.shape, self.in_chans, -1, self.stem)
        x = x.astype(self.dtype or x.dtype)
        x = nnx.relu(self.bn1(self.conv1(x), flag(train)))
        if self.stem == "imagenet":
            x = nnx.max_pool(x, (3, 3), (2, 2), padding=((1, 1), (1, 1)))
        for stage in self.stages():
            for block in stage:
                x = block(x, train)
        return self.fc(global_pool(x))
