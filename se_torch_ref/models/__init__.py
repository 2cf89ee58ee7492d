"""Model registry of the reference: same names and options as `se_flax.create_model`."""

from __future__ import annotations

from typing import Any

from torch import nn

from se_spec import mobilenet as mobilenet_spec
from se_spec import vit as vit_spec
from se_spec.models import (
    FLAX_ONLY_OPTIONS,
    check_option_names,
    list_models,
    model_spec,
    resolve_options,
)
from se_torch_ref.models.mobilenet_v3 import MobileNetV3
from se_torch_ref.models.r3d import VideoResNet
from se_torch_ref.models.resnet import ResNet
from se_torch_ref.models.vit import VisionTransformer

_FAMILIES: dict[str, type[nn.Module]] = {"resnet2d": ResNet, "r3d": VideoResNet,
                                         mobilenet_spec.FAMILY: MobileNetV3,
                                         vit_spec.FAMILY: VisionTransformer}

__all__ = ["create_model", "list_models"]


def create_model(name: str, **kwargs: Any) -> nn.Module:
    """Build a registered model with the shared options of `se_flax.create_model`."""
    flax_only = [k for k in FLAX_ONLY_OPTIONS if k in kwargs]
    if flax_only:
        raise TypeError(f"{name}: {', '.join(flax_only)} is a Flax-only option; the PyTorch "
                        "reference computes in float32 on one device")
    check_option_names(name, kwargs)
    options = resolve_options(name, **kwargs)
    return _FAMILIES[model_spec(name).family](**options, model_name=name)
