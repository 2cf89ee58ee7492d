"""Selective Kernel unit (Li et al., "Selective Kernel Networks", CVPR 2019) in timm's layout.

Keys: `paths.{i}.conv` / `paths.{i}.bn` (one 3x3 conv + BatchNorm + ReLU per path, path `i`
dilated by `dilations[i]`), `attn.fc_reduce` (1x1 conv, no bias), `attn.bn`, `attn.fc_select`
(1x1 conv to `paths x C` logits, no bias). Options and widths come from
`se_spec.selective_kernel`. The selection weights `(N, paths, C)` (softmax over paths) of the
last forward are kept in `last_selection`.
"""

from __future__ import annotations

import torch
from torch import nn

from se_spec.selective_kernel import attention_channels, check_selective_kernel


class ConvNormAct(nn.Sequential):
    """Bias-free conv (symmetric padding `dilation * (k // 2)`) + BatchNorm (+ ReLU)."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int = 3, stride: int = 1,
                 dilation: int = 1, groups: int = 1, act: bool = True) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, kernel, stride, dilation * (kernel // 2),
                              dilation, groups, bias=False)
        self.bn = nn.BatchNorm2d(out_ch)
        if act:
            self.act = nn.ReLU()


class SelectiveKernelAttn(nn.Module):
    """Per-path channel weights from the fused paths: softmax over paths of `fc_select`."""

    def __init__(self, channels: int, paths: int, attn_channels: int) -> None:
        super().__init__()
        self.paths = paths
        self.fc_reduce = nn.Conv2d(channels, attn_channels, 1, bias=False)
        self.bn = nn.BatchNorm2d(attn_channels)
        self.act = nn.ReLU()
        self.fc_select = nn.Conv2d(attn_channels, channels * paths, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """`(N, paths, C, H, W)` path outputs → `(N, paths, C)` selection weights."""
        s = x.sum(1).mean((2, 3), keepdim=True)
        s = self.fc_select(self.act(self.bn(self.fc_reduce(s))))
        return torch.softmax(s.view(s.shape[0], self.paths, -1), dim=1)


class SelectiveKernel(nn.Module):
    """Selective Kernel convolution: parallel dilated 3x3 paths mixed by learned weights."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, groups: int = 1,
                 dilations: tuple[int, ...] = (1, 2), rd_ratio: float = 1 / 16,
                 rd_divisor: int = 8, rd_channels: int | None = None,
                 split_input: bool = True) -> None:
        super().__init__()
        path_in = check_selective_kernel("SelectiveKernel", in_channels, out_channels, groups,
                                         tuple(dilations), split_input)
        self.split_input, self.path_in = split_input, path_in
        self.paths = nn.ModuleList(ConvNormAct(path_in, out_channels, 3, stride, d, groups)
                                   for d in dilations)
        width = attention_channels(out_channels, rd_ratio, rd_divisor, rd_channels)
        self.attn = SelectiveKernelAttn(out_channels, len(dilations), width)
        self.last_selection: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Mix the paths; keep the selection weights `(N, paths, C)` in `last_selection`."""
        inputs = (torch.split(x, self.path_in, 1) if self.split_input
                  else [x] * len(self.paths))
        y = torch.stack([path(xi) for path, xi in zip(self.paths, inputs, strict=True)], 1)
        w = self.attn(y)
        self.last_selection = w.detach()
        return (y * w[..., None, None]).sum(1)
