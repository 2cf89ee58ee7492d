"""Whole-network parity: build a registered model in both frameworks and compare them."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

import se_torch_ref.models as torch_models
from parity_tests.harness import ParityReport, compare
from se_flax.models import create_model
from se_flax.nnx import functional_model
from se_spec import vit
from se_spec.models import FAMILY_STEMS, NETWORK_STRIDE, input_shape, model_spec

# A ViT's default image side in parity runs: a 4x4 grid of 16-pixel patches (17 tokens).
VIT_PARITY_SIZE = 64


def randomize_(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Give every BatchNorm non-trivial affine parameters and running statistics, in place.

    A freshly built network has running mean 0 / var 1 and scale 1 / bias 0, which would let an
    eval-mode bug in the statistics or the affine transform pass unnoticed. Scales are drawn in
    [0.5, 1.5], except the BatchNorm that closes each residual branch (a block's `last_bn`),
    drawn in [0.05, 0.3] as in trained ResNets (and as `zero_init_last_bn` starts them). With
    scale ~1 there too, an untrained residual stream grows with depth: in se_resnet152 the
    layer4 output reaches 1e6 and PyTorch's own float32 gates differ from its float64 gates by
    1.0, so nothing could be compared; with small last scales it stays near 5 and PyTorch's
    float32-vs-float64 error is 4e-7.

    LayerNorms (ViT) get affine parameters drawn the same way ([0.5, 1.5], 0.2 * N(0, 1)).
    """
    g = torch.Generator().manual_seed(seed)
    last = {id(m.last_bn) for m in model.modules() if hasattr(m, "last_bn")}
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                n = m.num_features
                lo, hi = (0.05, 0.3) if id(m) in last else (0.5, 1.5)
                m.weight.copy_(lo + (hi - lo) * torch.rand(n, generator=g))
                m.bias.copy_(0.2 * torch.randn(n, generator=g))
                m.running_mean.copy_(0.2 * torch.randn(n, generator=g))
                m.running_var.copy_(0.5 + torch.rand(n, generator=g))
            elif isinstance(m, torch.nn.LayerNorm):
                n = m.normalized_shape[0]
                m.weight.copy_(0.5 + torch.rand(n, generator=g))
                m.bias.copy_(0.2 * torch.randn(n, generator=g))
    return model


def block_names(model: torch.nn.Module) -> list[str]:
    """PyTorch names of every residual block in forward order.

    `layer1.0`, … (ResNets), `features.1`, … (MobileNetV3's inverted residuals), `blocks.0`, …
    (ViT).
    """
    return [name for name, m in model.named_modules() if name.count(".") == 1
            and (name.startswith(("layer", "blocks")) or hasattr(m, "use_res"))]


def default_input_size(stem: str, train: bool = False) -> int:
    """Input side for parity runs: small, but well conditioned in training mode.

    Training-mode BatchNorm normalises each channel over batch x height x width elements; in the
    last stage that is few (ImageNet stem, batch 2: 8 elements at 64x64, 18 at 96x96), and
    rounding in the statistics is amplified by `1 / std`. With every BatchNorm scale near 1,
    PyTorch's own float32 ResNet-50 block outputs at 64x64 were 2e-4 away from its float64 ones
    (no port could be held to 1e-4); with the residual-branch scales of `randomize_` they are
    4e-6 away at 64x64 and 3e-6 at 96x96. Training mode keeps 96x96 as margin for the deeper
    networks; eval mode has no batch statistics and uses 64x64. The CIFAR stem uses 32x32 (4x4
    maps in layer4). Video (`r3d` stem, 8 frames) follows the ImageNet rule with its spatial
    stride 16: 48 / 32.
    """
    if stem == "cifar":
        return 32
    if stem in vit.STEMS:
        return VIT_PARITY_SIZE
    return 3 * NETWORK_STRIDE[stem] if train else 2 * NETWORK_STRIDE[stem]


def compare_model(name: str, *, train: bool = False, batch: int = 2, size: int | None = None,
                  grads: bool | None = None, seed: int = 0, dtype: str = "float32",
                  frames: int = 8, api: str = "linen",
                  **kwargs: Any) -> ParityReport:
    """Compare `name` in both frameworks: logits, every block output, every gate.

    In training mode also the running statistics and the gradients of every parameter.
    `api="nnx"` runs the NNX twin (`se_flax.nnx`) on the JAX side instead of the Linen module.
    """
    family = model_spec(name).family
    if family == vit.FAMILY:  # the image side is the model's img_size
        kwargs["img_size"] = size = kwargs.get("img_size") or size or VIT_PARITY_SIZE
    torch.manual_seed(seed)
    torch_model = randomize_(torch_models.create_model(name, **kwargs), seed)
    flax_model = functional_model(name, **kwargs) if api == "nnx" else create_model(name, **kwargs)
    stem = kwargs.get("stem") or FAMILY_STEMS[family][0]
    if size is None and dtype == "float64" and stem == "r3d":
        size = NETWORK_STRIDE[stem]  # no conditioning concern in float64; 3D convs are slow
    size = size or default_input_size(stem, train and dtype == "float32")
    shape = input_shape(name, size, batch, frames, channels_last=False,
                        in_chans=kwargs.get("in_chans", 3))
    x = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
    return compare(flax_model, torch_model, x, train=train,
                   grads=train if grads is None else grads, probes=block_names(torch_model),
                   seed=seed, dtype=dtype, probes_channels_first=family != vit.FAMILY)
