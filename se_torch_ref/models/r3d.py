"""R3D / SE-R3D reference with torchvision's `VideoResNet` state-dict layout.

Keys: `stem.0` (Conv3d 3x7x7, stride 1x2x2), `stem.1` (BN), `layer1.0.conv1.0` (Conv3d 3x3x3),
`layer1.0.conv1.1` (BN), `conv2.0`, `conv2.1`, `.se.*` (attention after the last BN, before the
residual add), `.downsample.0/1`, `fc`. `torchvision.models.video.r3d_18` checkpoints load with
`strict=True` into `r3d_18`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from se_spec.models import NO_ATTENTION, check_image
from se_torch_ref.variants import ATTENTION_VARIANTS


class VideoBlock(nn.Module):
    """3D BasicBlock with optional attention `se`."""

    def __init__(self, in_ch: int, planes: int, stride: int,
                 attn: Callable[..., nn.Module] | None, zero_init_last_bn: bool) -> None:
        super().__init__()
        self.conv1 = nn.Sequential(nn.Conv3d(in_ch, planes, 3, stride, 1, bias=False),
                                   nn.BatchNorm3d(planes), nn.ReLU())
        self.conv2 = nn.Sequential(nn.Conv3d(planes, planes, 3, 1, 1, bias=False),
                                   nn.BatchNorm3d(planes))
        if zero_init_last_bn:
            nn.init.zeros_(self.conv2[1].weight)
        self.se = attn(channels=planes) if attn is not None else None
        self.relu = nn.ReLU()
        self.downsample = None
        if stride != 1 or in_ch != planes:
            self.downsample = nn.Sequential(nn.Conv3d(in_ch, planes, 1, stride, bias=False),
                                            nn.BatchNorm3d(planes))

    @property
    def last_bn(self) -> nn.BatchNorm3d:
        """The BatchNorm that closes the residual branch."""
        return self.conv2[1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the block to `(N, C, T, H, W)`."""
        y = self.conv2(self.conv1(x))
        if self.se is not None:
            y = self.se(y)
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.relu(y + shortcut)


class VideoResNet(nn.Module):
    """R3D / SE-R3D; `attn` is an attention variant name or `"none"`."""

    def __init__(self, block: str = "basic", layers: tuple[int, ...] = (2, 2, 2, 2),
                 num_classes: int = 400, stem: str = "r3d", attn: str = NO_ATTENTION,
                 attn_kwargs: dict[str, Any] | None = None, zero_init_last_bn: bool = False,
                 in_chans: int = 3, model_name: str = "VideoResNet") -> None:
        super().__init__()
        self.model_name, self.stem_name, self.in_chans = model_name, stem, in_chans
        make_attn = None
        if attn != NO_ATTENTION:
            make_attn = functools.partial(ATTENTION_VARIANTS[attn], spatial_dims=3,
                                          **(attn_kwargs or {}))
        self.stem = nn.Sequential(
            nn.Conv3d(in_chans, 64, (3, 7, 7), (1, 2, 2), (1, 3, 3), bias=False),
            nn.BatchNorm3d(64), nn.ReLU())
        in_ch = 64
        for stage, blocks in enumerate(layers):
            planes, stage_blocks = 64 * 2 ** stage, []
            for i in range(blocks):
                stride = 2 if stage > 0 and i == 0 else 1
                stage_blocks.append(VideoBlock(in_ch, planes, stride, make_attn,
                                               zero_init_last_bn))
                in_ch = planes
            self.add_module(f"layer{stage + 1}", nn.Sequential(*stage_blocks))
        self.fc = nn.Linear(in_ch, num_classes)
        for name, m in self.named_modules():  # torchvision's initialisation
            if isinstance(m, nn.Conv3d) and ".se." not in name:
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        nn.init.normal_(self.fc.weight, 0, 0.01)
        nn.init.zeros_(self.fc.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits `(N, num_classes)` for clips `(N, C, T, H, W)`."""
        check_image(self.model_name, tuple(x.shape), self.in_chans, 1, self.stem_name)
        x = self.stem(x)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(x.mean((2, 3, 4)))
