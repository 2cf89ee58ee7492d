"""MobileNetV3 reference (Howard et al., ICCV 2019) with torchvision's state-dict layout.

Keys: `features.0.0/1` (stem conv, BN), `features.N.block.M.0/1` (each inverted residual's
expansion, depthwise and projection conv + BN), `features.N.block.M.fc1/fc2` (the SE module),
`features.{last}.0/1` (last 1x1 conv), `classifier.0` and `classifier.3`. torchvision
`mobilenet_v3_large` / `mobilenet_v3_small` checkpoints load with `strict=True`. Blocks and
widths: `se_spec.mobilenet`. No dropout in the classifier (`classifier.2` is the identity; its
place keeps torchvision's index of the last Linear).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from se_spec.mobilenet import (
    BN_EPS,
    BN_MOMENTUM_TORCH,
    STEM_CHANNELS,
    Bneck,
    block_channels,
    head_width,
    last_conv_width,
)
from se_spec.models import NO_ATTENTION, check_image
from se_torch_ref.functional import activation
from se_torch_ref.variants import ATTENTION_VARIANTS


def conv_bn(in_ch: int, out_ch: int, kernel: int, stride: int = 1, groups: int = 1,
            act: str | None = None) -> nn.Sequential:
    """`Sequential(conv, BN[, act])` with symmetric padding `k // 2` (torchvision's layout)."""
    conv = nn.Conv2d(in_ch, out_ch, kernel, stride, kernel // 2, groups=groups, bias=False)
    nn.init.kaiming_normal_(conv.weight, mode="fan_out")  # torchvision's initialisation
    layers: list[nn.Module] = [
        conv, nn.BatchNorm2d(out_ch, eps=BN_EPS, momentum=BN_MOMENTUM_TORCH)]
    if act is not None:
        layers.append(activation("MobileNetV3", act))
    return nn.Sequential(*layers)


class InvertedResidual(nn.Module):
    """Expansion 1x1, depthwise k x k (stride), attention, projection 1x1; identity shortcut."""

    def __init__(self, in_ch: int, cfg: Bneck, attn: Callable[..., nn.Module] | None,
                 zero_init_last_bn: bool) -> None:
        super().__init__()
        self.use_res = cfg.stride == 1 and in_ch == cfg.out
        layers: list[nn.Module] = []
        if cfg.expanded != in_ch:
            layers.append(conv_bn(in_ch, cfg.expanded, 1, act=cfg.act))
        layers.append(conv_bn(cfg.expanded, cfg.expanded, cfg.kernel, cfg.stride,
                              groups=cfg.expanded, act=cfg.act))
        if cfg.se and attn is not None:
            layers.append(attn(channels=cfg.expanded))
        layers.append(conv_bn(cfg.expanded, cfg.out, 1))
        self.block = nn.Sequential(*layers)
        if zero_init_last_bn and self.use_res:
            nn.init.zeros_(self.last_bn.weight)

    @property
    def last_bn(self) -> nn.BatchNorm2d:
        """The projection's BatchNorm (closes the residual branch)."""
        return self.block[-1][1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the block."""
        y = self.block(x)
        return x + y if self.use_res else y


class MobileNetV3(nn.Module):
    """MobileNetV3-Large/Small; `attn` replaces the SE module where the paper has one."""

    def __init__(self, block: str = "large", layers: tuple[int, ...] = (15,),
                 num_classes: int = 1000, stem: str = "imagenet",
                 attn: str = NO_ATTENTION, attn_kwargs: dict[str, Any] | None = None,
                 zero_init_last_bn: bool = False, in_chans: int = 3,
                 model_name: str = "MobileNetV3") -> None:
        super().__init__()
        self.model_name, self.stem, self.in_chans = model_name, stem, in_chans
        make_attn = None
        if attn != NO_ATTENTION:
            make_attn = functools.partial(ATTENTION_VARIANTS[attn], spatial_dims=2,
                                          **(attn_kwargs or {}))
        features: list[nn.Module] = [conv_bn(in_chans, STEM_CHANNELS, 3,
                                             2 if stem == "imagenet" else 1, act="hard_swish")]
        for in_ch, cfg in block_channels(block):
            features.append(InvertedResidual(in_ch, cfg, make_attn, zero_init_last_bn))
        last_in, last = features[-1].block[-1][0].out_channels, last_conv_width(block)
        features.append(conv_bn(last_in, last, 1, act="hard_swish"))
        self.features = nn.Sequential(*features)
        self.classifier = nn.Sequential(nn.Linear(last, head_width(block)), nn.Hardswish(),
                                        nn.Identity(), nn.Linear(head_width(block), num_classes))
        for m in (self.classifier[0], self.classifier[3]):  # torchvision's initialisation
            nn.init.normal_(m.weight, 0, 0.01)
            nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits `(N, num_classes)` for channels-first images `x`."""
        check_image(self.model_name, tuple(x.shape), self.in_chans, 1, self.stem)
        x = self.features(x)
        return self.classifier(torch.flatten(x.mean((2, 3)), 1))

