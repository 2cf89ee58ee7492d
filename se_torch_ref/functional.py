"""Helpers shared by the PyTorch reference layers: activations, gates, pooling, conv classes."""

from __future__ import annotations

import torch
from torch import nn

from se_spec.attention import ACTIVATIONS, GATES, SPATIAL_DIMS
from se_spec.validation import check_choice

_ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU, "relu6": nn.ReLU6, "hard_swish": nn.Hardswish, "silu": nn.SiLU,
    "gelu": nn.GELU, "tanh": nn.Tanh,
}
_GATES: dict[str, type[nn.Module]] = {"sigmoid": nn.Sigmoid, "hard_sigmoid": nn.Hardsigmoid}
_CONVS: dict[int, type[nn.Module]] = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
_NORMS: dict[int, type[nn.Module]] = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d, 3: nn.BatchNorm3d}
assert tuple(_ACTIVATIONS) == ACTIVATIONS and tuple(_GATES) == GATES


def activation(module: str, name: str) -> nn.Module:
    """Activation module by name; raises ValueError naming `module` for an unknown name."""
    return _ACTIVATIONS[check_choice(module, "act", name, ACTIVATIONS)]()


def gate_module(module: str, name: str) -> nn.Module:
    """Gate module (sigmoid or hard_sigmoid) by name."""
    return _GATES[check_choice(module, "gate", name, GATES)]()


def conv_class(module: str, spatial_dims: int) -> type[nn.Module]:
    """`nn.Conv1d/2d/3d` for `spatial_dims`."""
    return _CONVS[check_choice(module, "spatial_dims", spatial_dims, SPATIAL_DIMS)]


def norm_class(module: str, spatial_dims: int) -> type[nn.Module]:
    """`nn.BatchNorm1d/2d/3d` for `spatial_dims`."""
    return _NORMS[check_choice(module, "spatial_dims", spatial_dims, SPATIAL_DIMS)]


def at_least_fp32(x: torch.Tensor) -> torch.Tensor:
    """`x` in float32, or in its own dtype if that is wider (float64)."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


def spatial_mean(x: torch.Tensor) -> torch.Tensor:
    """Squeeze: mean over all spatial axes of a channels-first tensor, in float32 → (N, C)."""
    return at_least_fp32(x).mean(dim=tuple(range(2, x.ndim)))


def spatial_max(x: torch.Tensor) -> torch.Tensor:
    """Max over all spatial axes of a channels-first tensor, in float32 → (N, C)."""
    return at_least_fp32(x).amax(dim=tuple(range(2, x.ndim)))


def rescale(x: torch.Tensor, gate: torch.Tensor, residual: bool = False) -> torch.Tensor:
    """Multiply `x` (N, C, ...) by a per-channel gate (N, C); `x + x * s` when `residual`."""
    s = gate.view(*gate.shape, *([1] * (x.ndim - 2))).to(x.dtype)
    return x + x * s if residual else x * s
