"""Efficient Channel Attention reference (ECA-Net, CVPR 2020; timm `EcaModule`)."""

from __future__ import annotations

import torch
from torch import nn

from se_spec.attention import SPATIAL_DIMS, check_input, eca_kernel_size
from se_spec.validation import check_choice, check_positive_int
from se_torch_ref.functional import gate_module, rescale, spatial_mean


class ECA(nn.Module):
    """`x * gate(conv1d_over_channels(mean(x)))`; the gate `(N, C)` is kept in `last_gate`."""

    def __init__(self, channels: int, kernel_size: int | None = None, gamma: float = 2,
                 beta: float = 1, gate: str = "sigmoid", spatial_dims: int = 2) -> None:
        super().__init__()
        label = type(self).__name__
        check_positive_int(label, "channels", channels)
        check_choice(label, "spatial_dims", spatial_dims, SPATIAL_DIMS)
        if kernel_size is None:
            kernel_size = eca_kernel_size(channels, gamma, beta)
        elif check_positive_int(label, "kernel_size", kernel_size) % 2 == 0:
            raise ValueError(f"{label}: kernel_size={kernel_size} is even; expected an odd size "
                             "so the channel convolution stays centred")
        self.channels, self.spatial_dims = channels, spatial_dims
        self.conv = nn.Conv1d(1, 1, kernel_size, padding=(kernel_size - 1) // 2, bias=False)
        self.gate = gate_module(label, gate)
        self.last_gate: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Rescale `x` channel-wise."""
        check_input(type(self).__name__, tuple(x.shape), self.channels, 1, self.spatial_dims)
        s = self.gate(self.conv(spatial_mean(x)[:, None, :])[:, 0, :])
        self.last_gate = s.detach()
        return rescale(x, s)
