"""Residual blocks with a Selective Kernel unit (Li et al., CVPR 2019), timm's `skresnet` layout.

BasicBlock: `conv1` is the Selective Kernel unit (it strides), `conv2` a 3x3 `ConvNormAct`
without activation. Bottleneck: `conv1` 1x1 and `conv3` 1x1 `ConvNormAct`s around the Selective
Kernel unit `conv2` (it strides, with `cardinality` groups: SKNet-50 is a ResNeXt). Convs and
their BatchNorms are keyed `convN.conv` / `convN.bn`, as in timm; attention `se` and
`downsample.0/1` as in the plain blocks.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from se_spec.models import block_width
from se_spec.selective_kernel import SelectiveKernelSpec
from se_torch_ref.selective_kernel import ConvNormAct, SelectiveKernel


class SelectiveKernelBlock(nn.Module):
    """BasicBlock or Bottleneck whose strided 3x3 conv is a Selective Kernel unit."""

    def __init__(self, in_ch: int, planes: int, stride: int, bottleneck: bool,
                 attn: Callable[..., nn.Module] | None, zero_init_last_bn: bool,
                 sk: SelectiveKernelSpec, cardinality: int = 1, base_width: int = 64) -> None:
        super().__init__()
        out_ch = planes * (4 if bottleneck else 1)
        width = block_width("SelectiveKernelBlock", planes, base_width, cardinality, bottleneck)
        options = {"dilations": sk.dilations, "rd_ratio": sk.rd_ratio,
                   "rd_divisor": sk.rd_divisor, "split_input": sk.split_input}
        if bottleneck:
            self.conv1 = ConvNormAct(in_ch, width, 1)
            self.conv2 = SelectiveKernel(width, width, stride, cardinality, **options)
            self.conv3 = ConvNormAct(width, out_ch, 1, act=False)
        else:
            self.conv1 = SelectiveKernel(in_ch, planes, stride, **options)
            self.conv2 = ConvNormAct(planes, out_ch, 3, act=False)
        if zero_init_last_bn:
            nn.init.zeros_(self.last_bn.weight)
        self.se = attn(channels=out_ch) if attn is not None else None
        self.relu = nn.ReLU()
        self.downsample = None
        if stride != 1 or in_ch != out_ch:
            self.downsample = nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride, bias=False),
                                            nn.BatchNorm2d(out_ch))

    @property
    def last_bn(self) -> nn.BatchNorm2d:
        """The BatchNorm that closes the residual branch (before attention and the add)."""
        return (self.conv3 if hasattr(self, "conv3") else self.conv2).bn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the block."""
        y = self.conv2(self.conv1(x))
        if hasattr(self, "conv3"):
            y = self.conv3(y)
        if self.se is not None:
            y = self.se(y)
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.relu(y + shortcut)
