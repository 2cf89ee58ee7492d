"""(SE-)ResNet and ResNeXt reference in PyTorch with timm's/torchvision's state-dict layout.

Keys: `conv1`, `bn1`, `layer{1-4}.{i}.conv{1,2,3}`, `.bn{1,2,3}`, `.se.*` (attention after the
last BatchNorm, before the residual add), `.downsample.0/1`, `fc`. timm `seresnet*`,
`seresnext*` and torchvision `resnet*`, `resnext*` checkpoints load with `strict=True`. ResNeXt
(Xie et al., CVPR 2017) groups the Bottleneck's 3x3 conv (`groups=cardinality`); Selective
Kernel networks use the blocks of `se_torch_ref.models.sk_blocks`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from se_spec.models import NO_ATTENTION, block_width, check_image
from se_spec.selective_kernel import SelectiveKernelSpec
from se_torch_ref.models.sk_blocks import SelectiveKernelBlock
from se_torch_ref.variants import ATTENTION_VARIANTS


class ResidualBlock(nn.Module):
    """BasicBlock or Bottleneck (expansion 4, stride on the 3x3 conv) with attention `se`.

    A Bottleneck with `cardinality > 1` is ResNeXt's: its 3x3 conv has `cardinality` groups.
    """

    def __init__(self, in_ch: int, planes: int, stride: int, bottleneck: bool,
                 attn: Callable[..., nn.Module] | None, zero_init_last_bn: bool,
                 cardinality: int = 1, base_width: int = 64) -> None:
        super().__init__()
        out_ch = planes * (4 if bottleneck else 1)
        width = block_width("ResidualBlock", planes, base_width, cardinality, bottleneck)
        self.bottleneck = bottleneck
        if bottleneck:
            self.conv1 = nn.Conv2d(in_ch, width, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(width)
            self.conv2 = nn.Conv2d(width, width, 3, stride, 1, groups=cardinality, bias=False)
            self.bn2 = nn.BatchNorm2d(width)
            self.conv3 = nn.Conv2d(width, out_ch, 1, bias=False)
            self.bn3 = nn.BatchNorm2d(out_ch)
            last_bn = self.bn3
        else:
            self.conv1 = nn.Conv2d(in_ch, planes, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(planes)
            self.conv2 = nn.Conv2d(planes, out_ch, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(out_ch)
            last_bn = self.bn2
        if zero_init_last_bn:
            nn.init.zeros_(last_bn.weight)
        self.se = attn(channels=out_ch) if attn is not None else None
        self.relu = nn.ReLU()
        self.downsample = None
        if stride != 1 or in_ch != out_ch:
            self.downsample = nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride, bias=False),
                                            nn.BatchNorm2d(out_ch))

    @property
    def last_bn(self) -> nn.BatchNorm2d:
        """The BatchNorm that closes the residual branch (before attention and the add)."""
        return self.bn3 if self.bottleneck else self.bn2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the block."""
        y = self.relu(self.bn1(self.conv1(x)))
        if self.bottleneck:
            y = self.relu(self.bn2(self.conv2(y)))
            y = self.bn3(self.conv3(y))
        else:
            y = self.bn2(self.conv2(y))
        if self.se is not None:
            y = self.se(y)
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.relu(y + shortcut)


class ResNet(nn.Module):
    """ResNet/SE-ResNet/ResNeXt/SK-ResNet; `attn` is an attention variant name or `"none"`.

    `cardinality`/`base_width`: ResNeXt Bottlenecks; `sk`: Selective Kernel blocks.
    """

    def __init__(self, block: str = "bottleneck", layers: tuple[int, ...] = (3, 4, 6, 3),
                 num_classes: int = 1000, stem: str = "imagenet", attn: str = NO_ATTENTION,
                 attn_kwargs: dict[str, Any] | None = None, zero_init_last_bn: bool = False,
                 in_chans: int = 3, model_name: str = "ResNet", cardinality: int = 1,
                 base_width: int = 64, sk: SelectiveKernelSpec | None = None) -> None:
        super().__init__()
        self.model_name, self.stem, self.in_chans = model_name, stem, in_chans
        make_attn = None
        if attn != NO_ATTENTION:
            make_attn = functools.partial(ATTENTION_VARIANTS[attn], spatial_dims=2,
                                          **(attn_kwargs or {}))
        if stem == "imagenet":
            self.conv1 = nn.Conv2d(in_chans, 64, 7, 2, 3, bias=False)
        else:
            self.conv1 = nn.Conv2d(in_chans, 64, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(3, 2, 1) if stem == "imagenet" else nn.Identity()
        bottleneck, in_ch = block == "bottleneck", 64
        for stage, blocks in enumerate(layers):
            planes, stage_blocks = 64 * 2 ** stage, []
            for i in range(blocks):
                stride = 2 if stage > 0 and i == 0 else 1
                if sk is None:
                    stage_blocks.append(ResidualBlock(in_ch, planes, stride, bottleneck,
                                                      make_attn, zero_init_last_bn,
                                                      cardinality, base_width))
                else:
                    stage_blocks.append(SelectiveKernelBlock(
                        in_ch, planes, stride, bottleneck, make_attn, zero_init_last_bn, sk,
                        cardinality, base_width))
                in_ch = planes * (4 if bottleneck else 1)
            self.add_module(f"layer{stage + 1}", nn.Sequential(*stage_blocks))
        self.fc = nn.Linear(in_ch, num_classes)
        for name, m in self.named_modules():  # attention layers keep their own initialisation
            if isinstance(m, nn.Conv2d) and ".se." not in name:
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits `(N, num_classes)` for channels-first images `x`."""
        check_image(self.model_name, tuple(x.shape), self.in_chans, 1, self.stem)
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(x.mean((2, 3)), 1))
