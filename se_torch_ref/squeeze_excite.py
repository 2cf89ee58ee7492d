"""Squeeze-and-Excitation reference (Hu, Shen & Sun, CVPR 2018), same options as `se_flax`.

Rank-generic over `(N, C, L)`, `(N, C, H, W)`, `(N, C, D, H, W)`; the excitation layers are 1x1
convolutions of rank `spatial_dims` (timm layout) or `nn.Linear` (the article's layout). The gate
`(N, C)` of the last forward is kept in `last_gate`.
"""

from __future__ import annotations

import torch
from torch import nn

from se_spec.attention import (
    EXCITE_LAYERS,
    SPATIAL_DIMS,
    check_groups,
    check_input,
    reduced_channels,
)
from se_spec.validation import check_choice
from se_torch_ref.functional import activation, gate_module, rescale, spatial_mean
from se_torch_ref.pointwise import apply_pointwise, make_pointwise


class SqueezeExcite(nn.Module):
    """Channel attention `x * gate(fc2(act(fc1(mean(x)))))`."""

    def __init__(self, channels: int, rd_ratio: float = 1 / 16, rd_channels: int | None = None,
                 rd_policy: str = "divisible", rd_divisor: int = 8, min_ratio: int = 8,
                 rd_round_limit: float = 0.0, excite: str = "conv", bias: bool = True,
                 groups: int = 1, act: str = "relu",
                 gate: str = "sigmoid", residual_gate: bool = False,
                 zero_init_last: bool = False, spatial_dims: int = 2) -> None:
        super().__init__()
        label = type(self).__name__
        rd = reduced_channels(label, channels, rd_ratio, rd_channels, rd_policy, rd_divisor,
                              min_ratio, rd_round_limit)
        check_choice(label, "excite", excite, EXCITE_LAYERS)
        check_choice(label, "spatial_dims", spatial_dims, SPATIAL_DIMS)
        check_groups(label, channels, rd, groups)
        if groups > 1 and excite != "conv":
            raise ValueError(f"{label}: groups={groups} needs excite='conv' (a grouped 1x1 "
                             "convolution); a Linear excitation has no groups")
        self.channels, self.spatial_dims, self.residual_gate = channels, spatial_dims, \
            residual_gate
        self.fc1 = make_pointwise(channels, rd, excite, groups, bias, spatial_dims)
        self.act = activation(label, act)
        self.fc2 = make_pointwise(rd, channels, excite, groups, bias, spatial_dims)
        self.gate = gate_module(label, gate)
        if zero_init_last:
            nn.init.zeros_(self.fc2.weight)
            if self.fc2.bias is not None:
                nn.init.zeros_(self.fc2.bias)
        self.last_gate: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Rescale `x` channel-wise and keep the gate in `last_gate`."""
        check_input(type(self).__name__, tuple(x.shape), self.channels, 1, self.spatial_dims)
        s = apply_pointwise(self.fc1, spatial_mean(x))
        s = self.gate(apply_pointwise(self.fc2, self.act(s)))
        self.last_gate = s.detach()
        return rescale(x, s, self.residual_gate)
