"""Model registry of the reference: same names and options as `se_flax.create_model`."""

from __future__ import annotations

from typing import Any

from torch import nn

from se_flax.model_specs import FLAX_ONLY_OPTIONS, MODEL_SPECS, model_spec, resolve_options
from se_torch_ref.models.r3d import VideoResNet
from se_torch_ref.models.resnet import ResNet

_FAMILIES: dict[str, type[nn.Module]] = {"resnet2d": ResNet, "r3d": VideoResNet}


def list_models() -> list[str]:
    """Names of all registered models."""
    return list(MODEL_SPECS)


def create_model(name: str, **kwargs: Any) -> nn.Module:
    """Build a registered model with the shared options of `se_flax.create_model`."""
    flax_only = [k for k in FLAX_ONLY_OPTIONS if k in kwargs]
    if flax_only:
        raise TypeError(f"{name}: {', '.join(flax_only)} is a Flax-only option; the PyTorch "
                        "reference computes in float32 on one device")
    try:
        options = resolve_options(name, **kwargs)
    except TypeError as e:
        if "unexpected keyword" not in str(e):
            raise
        raise TypeError(f"{name}: {e}; expected some of num_classes, stem, attn, attn_kwargs, "
                        "zero_init_last_bn, in_chans") from None
    return _FAMILIES[model_spec(name).family](**options, model_name=name)
