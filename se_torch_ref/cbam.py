"""CBAM reference (Woo et al., ECCV 2018; timm `CbamModule` key layout).

Keys: `channel.fc1`, `channel.fc2` (bias-free 1x1 convs), `spatial.conv.conv` and
`spatial.conv.bn`. Gates of the last forward: `last_gate` `(N, C)` and `last_spatial_gate`
`(N, 1, ...)`.
"""

from __future__ import annotations

import torch
from torch import nn

from se_spec.attention import check_input, reduced_channels
from se_spec.validation import check_positive_int
from se_torch_ref.functional import (
    activation,
    at_least_fp32,
    conv_class,
    gate_module,
    norm_class,
    rescale,
    spatial_max,
    spatial_mean,
)
from se_torch_ref.pointwise import apply_pointwise, make_pointwise


class ChannelAttention(nn.Module):
    """Shared MLP over mean- and max-pooled descriptors."""

    def __init__(self, channels: int, rd_channels: int, act: str, gate: str, bias: bool,
                 spatial_dims: int) -> None:
        super().__init__()
        self.fc1 = make_pointwise(channels, rd_channels, "conv", 1, bias, spatial_dims)
        self.act = activation("CBAM", act)
        self.fc2 = make_pointwise(rd_channels, channels, "conv", 1, bias, spatial_dims)
        self.gate = gate_module("CBAM", gate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Channel gate `(N, C)`."""
        def mlp(v: torch.Tensor) -> torch.Tensor:
            return apply_pointwise(self.fc2, self.act(apply_pointwise(self.fc1, v)))
        return self.gate(mlp(spatial_mean(x)) + mlp(spatial_max(x)))


class ConvBn(nn.Module):
    """Bias-free convolution with symmetric padding, then BatchNorm."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int,
                 spatial_dims: int) -> None:
        super().__init__()
        self.conv = conv_class("CBAM", spatial_dims)(in_channels, out_channels, kernel_size,
                                                     padding=kernel_size // 2, bias=False)
        self.bn = norm_class("CBAM", spatial_dims)(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Convolve and normalise."""
        return self.bn(self.conv(x))


class SpatialAttention(nn.Module):
    """Gate from the channel-wise mean and max maps."""

    def __init__(self, kernel_size: int, gate: str, spatial_dims: int) -> None:
        super().__init__()
        self.conv = ConvBn(2, 1, kernel_size, spatial_dims)
        self.gate = gate_module("CBAM", gate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Spatial gate `(N, 1, ...)`."""
        xf = at_least_fp32(x)
        maps = torch.cat([xf.mean(1, keepdim=True), xf.amax(1, keepdim=True)], 1)
        return self.gate(self.conv(maps))


class CBAM(nn.Module):
    """Channel then spatial attention."""

    def __init__(self, channels: int, rd_ratio: float = 1 / 16, rd_channels: int | None = None,
                 rd_policy: str = "divisible", rd_divisor: int = 1, spatial_kernel_size: int = 7,
                 act: str = "relu", gate: str = "sigmoid", bias: bool = False,
                 spatial_dims: int = 2) -> None:
        super().__init__()
        label = type(self).__name__
        rd = reduced_channels(label, channels, rd_ratio, rd_channels, rd_policy, rd_divisor)
        if check_positive_int(label, "spatial_kernel_size", spatial_kernel_size) % 2 == 0:
            raise ValueError(f"{label}: spatial_kernel_size={spatial_kernel_size} is even; "
                             "expected an odd size")
        conv_class(label, spatial_dims)
        self.channels, self.spatial_dims = channels, spatial_dims
        self.channel = ChannelAttention(channels, rd, act, gate, bias, spatial_dims)
        self.spatial = SpatialAttention(spatial_kernel_size, gate, spatial_dims)
        self.last_gate: torch.Tensor | None = None
        self.last_spatial_gate: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply channel attention, then spatial attention."""
        check_input(type(self).__name__, tuple(x.shape), self.channels, 1, self.spatial_dims)
        g = self.channel(x)
        x = rescale(x, g)
        sg = self.spatial(x)
        self.last_gate, self.last_spatial_gate = g.detach(), sg.detach()
        return x * sg.to(x.dtype)
