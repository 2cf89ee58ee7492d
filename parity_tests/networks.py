"""Whole-network parity: build a registered model in both frameworks and compare them."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

import se_torch_ref.models as torch_models
from parity_tests.harness import ParityReport, compare
from se_flax.model_specs import NETWORK_STRIDE
from se_flax.models import create_model


def randomize_(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Give every BatchNorm non-trivial affine parameters and running statistics, in place.

    A freshly built network has running mean 0 / var 1 and scale 1 / bias 0, which would let an
    eval-mode bug in the statistics or the affine transform pass unnoticed.
    """
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                n = m.num_features
                m.weight.copy_(0.5 + torch.rand(n, generator=g))
                m.bias.copy_(0.2 * torch.randn(n, generator=g))
                m.running_mean.copy_(0.2 * torch.randn(n, generator=g))
                m.running_var.copy_(0.5 + torch.rand(n, generator=g))
    return model


def block_names(model: torch.nn.Module) -> list[str]:
    """PyTorch names of every residual block (`layer1.0`, …), in forward order."""
    return [name for name, _ in model.named_modules() if name.count(".") == 1
            and name.startswith("layer")]


def default_input_size(stem: str) -> int:
    """Smallest convenient input side: 64 for the ImageNet stem, 32 for the CIFAR stem."""
    return max(2 * NETWORK_STRIDE[stem], 32)


def compare_model(name: str, *, train: bool = False, batch: int = 2, size: int | None = None,
                  grads: bool | None = None, seed: int = 0, dtype: str = "float32",
                  **kwargs: Any) -> ParityReport:
    """Compare `name` in both frameworks: logits, every block output, every gate.

    In training mode also the running statistics and the gradients of every parameter.
    """
    torch.manual_seed(seed)
    torch_model = randomize_(torch_models.create_model(name, **kwargs), seed)
    flax_model = create_model(name, **kwargs)
    size = size or default_input_size(kwargs.get("stem", "imagenet"))
    x = np.random.default_rng(seed).standard_normal((batch, kwargs.get("in_chans", 3), size,
                                                     size)).astype(np.float32)
    return compare(flax_model, torch_model, x, train=train,
                   grads=train if grads is None else grads, probes=block_names(torch_model),
                   seed=seed, dtype=dtype)
