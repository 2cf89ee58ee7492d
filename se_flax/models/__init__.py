"""Model registry: `create_model(name, **kwargs)` and `list_models()` (names from `se_spec`)."""

from __future__ import annotations

from typing import Any

import flax.linen as nn

from se_flax.implementation import AUTO, Implementation, resolve_implementation
from se_flax.models.mobilenet_v3 import MobileNetV3
from se_flax.models.r3d import VideoResNet
from se_flax.models.resnet import ResNet
from se_flax.models.vit import VisionTransformer
from se_spec import mobilenet as mobilenet_spec
from se_spec import vit as vit_spec
from se_spec.models import (
    FLAX_ONLY_OPTIONS,
    check_option_names,
    list_models,
    model_spec,
    resolve_options,
)

_FAMILIES: dict[str, type[nn.Module]] = {"resnet2d": ResNet, "r3d": VideoResNet,
                                         mobilenet_spec.FAMILY: MobileNetV3,
                                         vit_spec.FAMILY: VisionTransformer}

__all__ = ["create_model", "list_models"]


def create_model(name: str, *, impl: str | Implementation = AUTO, **kwargs: Any) -> nn.Module:
    """Build a registered model.

    Shared options: `num_classes`, `stem` (`imagenet`/`cifar`), `attn` (variant name or
    `"none"`), `attn_kwargs`, `zero_init_last_bn`, `in_chans`; ViT also `img_size`,
    `patch_size`.
    Flax-only: `dtype` (compute dtype; params stay float32), `axis_name` (synchronised BN),
    `impl` (`"auto"`, `"xla"`, `"cpu"` or an `Implementation`: how the model is compiled, never
    what it computes; see `se_flax.implementation`).
    """
    check_option_names(name, kwargs, FLAX_ONLY_OPTIONS)
    flax_only = {k: kwargs.pop(k) for k in FLAX_ONLY_OPTIONS if k in kwargs}
    options = resolve_options(name, **kwargs)
    fields = resolve_implementation(impl).module_fields()
    return _FAMILIES[model_spec(name).family](**options, **flax_only, **fields, model_name=name)
