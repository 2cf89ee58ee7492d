"""Inference folding in PyTorch: each BatchNorm merged into the convolution before it.

Eval-mode BatchNorm is a fixed per-channel affine map, so after a convolution it folds into the
convolution's weights: with `f = weight / sqrt(running_var + eps)`, `W' = W · f` per output
channel and `b' = (b - running_mean) · f + bias` (computed in float64, cast back; the same
arithmetic as `se_flax.folding`, so the two frameworks fold to the same numbers). The folded
model has `conv.bias` and `nn.Identity()` in place of each folded BatchNorm; its state dict is
what `se_flax.convert.flax_to_torch` makes of `se_flax.folding.fold_batchnorm`'s variables.

The SE gate is *not* folded and cannot be: it is computed from each input (global mean → two
Linear layers → sigmoid), while folded weights are fixed. See `se_flax.folding` for why the
article's `fuse_se_conv` computes a different function.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from se_spec.models import sample_input_shape

CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def _sample_input(model: nn.Module, sample_input: torch.Tensor | None) -> torch.Tensor:
    if sample_input is not None:
        return sample_input
    if hasattr(model, "model_name") and hasattr(model, "in_chans"):
        return torch.zeros(sample_input_shape(model.model_name, model.in_chans,
                                              channels_last=False,
                                              img_size=getattr(model, "img_size", None)))
    raise ValueError(f"{type(model).__name__}: pass sample_input (a tensor of the input shape) "
                     "to trace the model")


def find_conv_bn_pairs(model: nn.Module, sample_input: torch.Tensor | None = None
                       ) -> list[tuple[str, str]]:
    """`(conv name, norm name)` for every BatchNorm applied to a convolution's output.

    Found by running `sample_input` (default: a small input of a registered model) through
    the model in eval mode with hooks, in forward order.
    """
    x = _sample_input(model, sample_input)
    outputs: dict[int, tuple[str, torch.Tensor]] = {}
    pairs: list[tuple[str, str]] = []
    handles = []

    def conv_hook(name: str) -> Any:
        def hook(_m: nn.Module, _inputs: Any, out: torch.Tensor) -> None:
            outputs[id(out)] = (name, out)
        return hook

    def norm_hook(name: str) -> Any:
        def hook(_m: nn.Module, inputs: Any) -> None:
            source = outputs.get(id(inputs[0])) if inputs else None
            if source is not None and source[1] is inputs[0]:
                pairs.append((source[0], name))
        return hook

    for name, module in model.named_modules():
        if isinstance(module, CONVS):
            handles.append(module.register_forward_hook(conv_hook(name)))
        elif isinstance(module, NORMS):
            handles.append(module.register_forward_pre_hook(norm_hook(name)))
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(x)
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return pairs


def fold_batchnorm(model: nn.Module, sample_input: torch.Tensor | None = None, *,
                   inplace: bool = False) -> nn.Module:
    """An eval-mode copy of `model` (or `model` itself with `inplace=True`) with BN folded."""
    pairs = find_conv_bn_pairs(model, sample_input)
    model = model if inplace else copy.deepcopy(model)
    model.eval()
    with torch.no_grad():
        for conv_name, norm_name in pairs:
            conv, norm = model.get_submodule(conv_name), model.get_submodule(norm_name)
            f64 = torch.float64
            factor = 1.0 / torch.sqrt(norm.running_var.to(f64) + norm.eps)
            if norm.weight is not None:
                factor = factor * norm.weight.to(f64)
            bias = conv.bias.to(f64) if conv.bias is not None else \
                torch.zeros_like(norm.running_mean, dtype=f64)
            new_bias = (bias - norm.running_mean.to(f64)) * factor
            if norm.bias is not None:
                new_bias = new_bias + norm.bias.to(f64)
            shape = (-1,) + (1,) * (conv.weight.ndim - 1)
            dtype = conv.weight.dtype
            conv.weight = nn.Parameter((conv.weight.to(f64) * factor.view(shape)).to(dtype))
            conv.bias = nn.Parameter(new_bias.to(norm.bias.dtype if norm.bias is not None
                                                 else dtype))
            parent, _, child = norm_name.rpartition(".")
            setattr(model.get_submodule(parent), child, nn.Identity())
    return model
