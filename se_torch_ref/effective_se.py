"""Effective Squeeze-Excitation reference (CenterMask, CVPR 2020; timm `EffectiveSEModule`)."""

from __future__ import annotations

import torch
from torch import nn

from se_spec.attention import EXCITE_LAYERS, SPATIAL_DIMS, check_input
from se_spec.validation import check_choice, check_positive_int
from se_torch_ref.functional import gate_module, rescale, spatial_max, spatial_mean
from se_torch_ref.pointwise import apply_pointwise, make_pointwise


class EffectiveSE(nn.Module):
    """`x * hard_sigmoid(fc(mean(x)))`; the gate `(N, C)` is kept in `last_gate`."""

    def __init__(self, channels: int, add_maxpool: bool = False, gate: str = "hard_sigmoid",
                 excite: str = "conv", spatial_dims: int = 2) -> None:
        super().__init__()
        label = type(self).__name__
        check_positive_int(label, "channels", channels)
        check_choice(label, "excite", excite, EXCITE_LAYERS)
        check_choice(label, "spatial_dims", spatial_dims, SPATIAL_DIMS)
        self.channels, self.spatial_dims, self.add_maxpool = channels, spatial_dims, add_maxpool
        self.fc = make_pointwise(channels, channels, excite, 1, True, spatial_dims)
        self.gate = gate_module(label, gate)
        self.last_gate: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Rescale `x` channel-wise."""
        check_input(type(self).__name__, tuple(x.shape), self.channels, 1, self.spatial_dims)
        s = spatial_mean(x)
        if self.add_maxpool:
            s = 0.5 * s + 0.5 * spatial_max(x)
        s = self.gate(apply_pointwise(self.fc, s))
        self.last_gate = s.detach()
        return rescale(x, s)
