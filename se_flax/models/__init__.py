"""Model registry: `create_model(name, **kwargs)` and `list_models()`."""

from __future__ import annotations

from typing import Any

import flax.linen as nn

from se_flax.model_specs import (
    FLAX_ONLY_OPTIONS,
    MODEL_SPECS,
    check_option_names,
    model_spec,
    resolve_options,
)
from se_flax.models.r3d import VideoResNet
from se_flax.models.resnet import ResNet

_FAMILIES: dict[str, type[nn.Module]] = {"resnet2d": ResNet, "r3d": VideoResNet}


def list_models() -> list[str]:
    """Names of all registered models."""
    return list(MODEL_SPECS)


def create_model(name: str, **kwargs: Any) -> nn.Module:
    """Build a registered model.

    Shared options: `num_classes`, `stem` (`imagenet`/`cifar`), `attn` (variant name or
    `"none"`), `attn_kwargs`, `zero_init_last_bn`, `in_chans`.
    Flax-only: `dtype` (compute dtype; params stay float32), `axis_name` (synchronised BN).
    """
    check_option_names(name, kwargs, FLAX_ONLY_OPTIONS)
    flax_only = {k: kwargs.pop(k) for k in FLAX_ONLY_OPTIONS if k in kwargs}
    options = resolve_options(name, **kwargs)
    return _FAMILIES[model_spec(name).family](**options, **flax_only, model_name=name)
