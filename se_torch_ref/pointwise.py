"""Excitation layer of the reference: a 1x1 `ConvNd` (timm) or `nn.Linear` (the article).

The layer is the bare `nn.ConvNd` / `nn.Linear`, so its parameters are named exactly like
timm's (`fc1.weight`, `fc1.bias`); `apply_pointwise` feeds it the squeezed `(N, C)` vector.
"""

from __future__ import annotations

import torch
from torch import nn

from se_torch_ref.functional import conv_class


def make_pointwise(in_features: int, out_features: int, excite: str = "conv", groups: int = 1,
                   bias: bool = True, spatial_dims: int = 2) -> nn.Module:
    """A 1x1 convolution of rank `spatial_dims` (`excite="conv"`) or a Linear layer."""
    if excite == "conv":
        return conv_class("Pointwise", spatial_dims)(in_features, out_features, 1,
                                                     groups=groups, bias=bias)
    return nn.Linear(in_features, out_features, bias=bias)


def apply_pointwise(layer: nn.Module, v: torch.Tensor) -> torch.Tensor:
    """Apply an excitation layer to `(N, C)` → `(N, C_out)`."""
    if isinstance(layer, nn.Linear):
        return layer(v)
    spatial = layer.weight.ndim - 2
    return layer(v.view(*v.shape, *([1] * spatial))).flatten(1)
