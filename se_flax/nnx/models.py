"""NNX model registry: `create_model(name, rngs=..., **kwargs)` with Linen's names and options.

Names, defaults and option checks come from `se_spec.models`, so a name and its keyword
arguments mean the same network as `se_flax.create_model` and `se_torch_ref.create_model`.
"""

from __future__ import annotations

from typing import Any

from flax import nnx

from se_flax.implementation import AUTO, Implementation, resolve_implementation
from se_flax.nnx.blocks import Layers
from se_flax.nnx.mobilenet_v3 import MobileNetV3
from se_flax.nnx.r3d import VideoResNet
from se_flax.nnx.resnet import ResNet
from se_flax.nnx.vit import VisionTransformer
from se_spec import mobilenet as mobilenet_spec
from se_spec import models as spec
from se_spec import vit as vit_spec
from se_spec.models import (
    FLAX_ONLY_OPTIONS,
    check_option_names,
    model_spec,
    resolve_options,
)

# family → (network, spatial rank of its attention modules: a ViT's SE squeezes the tokens)
_FAMILIES: dict[str, tuple[type[nnx.Module], int]] = {
    "resnet2d": (ResNet, 2), "r3d": (VideoResNet, 3), mobilenet_spec.FAMILY: (MobileNetV3, 2),
    vit_spec.FAMILY: (VisionTransformer, 1)}

__all__ = ["create_model", "list_models"]


def list_models() -> list[str]:
    """Names of the registered models (every one has an NNX twin), in registration order."""
    return spec.list_models()


def create_model(name: str, *, rngs: nnx.Rngs | None = None,
                 impl: str | Implementation = AUTO, **kwargs: Any) -> nnx.Module:
    """Build a registered model as an `nnx.Module` (parameters drawn from `rngs`, default seed 0).

    The keyword arguments of `se_flax.create_model`: `num_classes`, `stem`, `attn`,
    `attn_kwargs`, `zero_init_last_bn`, `in_chans` (ViT also `img_size`, `patch_size`), and the
    Flax-only `dtype`, `axis_name` and `impl`. The model starts in training mode
    (`model.eval()` switches; a call's `train=` argument overrides either).
    """
    check_option_names(name, kwargs, FLAX_ONLY_OPTIONS)
    flax_only = {k: kwargs.pop(k) for k in FLAX_ONLY_OPTIONS if k in kwargs}
    options = resolve_options(name, **kwargs)
    cls, rank = _FAMILIES[model_spec(name).family]
    builder = Layers(resolve_implementation(impl), flax_only.get("dtype"),
                     flax_only.get("axis_name"), options.pop("attn"),
                     options.pop("attn_kwargs"), rank)
    return cls(**options, builder=builder, model_name=name,
               rngs=rngs if rngs is not None else nnx.Rngs(0))
