"""3D ResNets for video in NNX (Tran et al., CVPR 2018), with optional SE3D per block.

The twin of `se_flax.models.r3d.VideoResNet`, with torchvision's `VideoResNet` module names as
attributes: `stem[0]` (3x7x7 conv, stride 1x2x2), `stem[1]` (BN), `layer1[0].conv1[0]` (3x3x3
conv), `conv1[1]` (BN), `conv2[0]`, `conv2[1]`, `se`, `downsample[0]`/`[1]`, `fc`. Inputs are
`(N, T, H, W, C)`.
"""

from __future__ import annotations

import jax
from flax import nnx

from se_flax.models.blocks import global_pool
from se_flax.nnx.blocks import Layers, attend_and_add, flag
from se_spec.models import check_image


class VideoBlock(nnx.Module):
    """3D BasicBlock: two 3x3x3 conv + BN pairs (`conv1`, `conv2`), then attention `se`."""

    def __init__(self, in_ch: int, planes: int, stride: int, zero_init_last_bn: bool,
                 layers: Layers, path: str, *, rngs: nnx.Rngs) -> None:
        s = (stride,) * 3
        self.conv1 = nnx.List([layers.conv(in_ch, planes, (3, 3, 3), s, rngs),
                               layers.norm(planes, rngs=rngs)])
        self.conv2 = nnx.List([layers.conv(planes, planes, (3, 3, 3), (1, 1, 1), rngs),
                               layers.norm(planes, zero_scale=zero_init_last_bn, rngs=rngs)])
        self.se = layers.attention(planes, f"{path}/se", rngs)
        self.downsample = None if stride == 1 and in_ch == planes else nnx.List([
            layers.conv(in_ch, planes, (1, 1, 1), s, rngs), layers.norm(planes, rngs=rngs)])
        self.residual_boundary = layers.boundary()

    def __call__(self, x: jax.Array, train: bool | None = None) -> jax.Array:
        """Apply the block to `(N, T, H, W, C)`."""
        ra = flag(train)
        y = nnx.relu(self.conv1[1](self.conv1[0](x), ra))
        y = self.conv2[1](self.conv2[0](y), ra)
        return attend_and_add(self, y, x, train)


class VideoResNet(nnx.Module):
    """R3D / SE-R3D; build it with `se_flax.nnx.create_model`."""

    def __init__(self, block: str, layers: tuple[int, ...], num_classes: int, stem: str,
                 zero_init_last_bn: bool, in_chans: int, builder: Layers, model_name: str, *,
                 rngs: nnx.Rngs) -> None:
        del block  # always the 3D BasicBlock
        self.model_name, self.stem_name, self.in_chans = model_name, stem, in_chans
        self.dtype, self.num_stages = builder.dtype, len(layers)
        self.stem = nnx.List([builder.conv(in_chans, 64, (3, 7, 7), (1, 2, 2), rngs),
                              builder.norm(64, rngs=rngs)])
        in_ch = 64
        for stage, blocks in enumerate(layers):
            planes, stage_blocks = 64 * 2 ** stage, []
            for i in range(blocks):
                stride = 2 if stage > 0 and i == 0 else 1
                stage_blocks.append(VideoBlock(in_ch, planes, stride, zero_init_last_bn,
                                               builder, f"layer{stage + 1}_{i}", rngs=rngs))
                in_ch = planes
            setattr(self, f"layer{stage + 1}", nnx.List(stage_blocks))
        self.fc = nnx.Linear(in_ch, num_classes, rngs=rngs)

    def stages(self) -> list[nnx.List]:
        """The residual stages `layer1`, `layer2`, … in order."""
        return [getattr(self, f"layer{i + 1}") for i in range(self.num_stages)]

    def __call__(self, x: jax.Array, train: bool | None = None) -> jax.Array:
        """Logits `(N, num_classes)` for channels-last clips `(N, T, H, W, C)`.

        `train=None` follows the mode set by `model.train()` / `model.eval()`.
        """
        check_image(self.model_name, x.shape, self.in_chans, -1, self.stem_name)
        x = x.astype(self.dtype or x.dtype)
        x = nnx.relu(self.stem[1](self.stem[0](x), flag(train)))
        for stage in self.stages():
            for block in stage:
                x = block(x, train)
        return self.fc(global_pool(x))
