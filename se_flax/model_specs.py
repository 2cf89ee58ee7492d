"""Framework-free registry of the (SE-)ResNet family: names, depths, attention, options.

`se_flax.create_model` and `se_torch_ref.create_model` both resolve names and validate keyword
arguments here, so a name and its options mean the same network in both frameworks. Pure Python.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from se_flax.spec import check_choice, check_positive_int, lookup
from se_flax.variant_specs import VARIANT_SPECS

# Expansion of each residual block (He et al., "Deep Residual Learning", CVPR 2016).
EXPANSION = {"basic": 1, "bottleneck": 4}
DEPTHS: dict[int, tuple[str, tuple[int, ...]]] = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
}
STEMS = ("imagenet", "cifar")
STEM_STRIDE = {"imagenet": 4, "cifar": 1}
NETWORK_STRIDE = {stem: s * 8 for stem, s in STEM_STRIDE.items()}  # layers 2-4 each stride 2
NO_ATTENTION = "none"
# Flax-only keyword arguments (numerics and distribution, not architecture).
FLAX_ONLY_OPTIONS = ("dtype", "axis_name")


@dataclass(frozen=True)
class ModelSpec:
    """Architecture of one registered name."""

    block: str
    layers: tuple[int, ...]
    attn: str
    family: str = "resnet2d"


def _register() -> dict[str, ModelSpec]:
    specs: dict[str, ModelSpec] = {}
    prefixes = {"": NO_ATTENTION, "se_": "se", "se_article_": "se_article", "eca_": "eca",
                "cbam_": "cbam", "ese_": "effective_se"}
    for prefix, attn in prefixes.items():
        depths = DEPTHS if prefix in ("", "se_") else (18, 50)
        for depth in depths:
            block, layers = DEPTHS[depth]
            specs[f"{prefix}resnet{depth}"] = ModelSpec(block, layers, attn)
    return specs


MODEL_SPECS: dict[str, ModelSpec] = _register()


def model_spec(name: str) -> ModelSpec:
    """The spec of a registered model; unknown names list the close matches."""
    return lookup(MODEL_SPECS, name, "model")


def resolve_options(name: str, *, num_classes: int = 1000, stem: str = "imagenet",
                    attn: str | None = None, attn_kwargs: dict[str, Any] | None = None,
                    zero_init_last_bn: bool = False, in_chans: int = 3) -> dict[str, Any]:
    """Validate the shared keyword arguments of `create_model` and fill in the defaults."""
    spec = model_spec(name)
    check_positive_int(name, "num_classes", num_classes)
    check_positive_int(name, "in_chans", in_chans)
    check_choice(name, "stem", stem, STEMS)
    attn = spec.attn if attn is None else attn
    if attn != NO_ATTENTION:
        lookup({NO_ATTENTION: None, **VARIANT_SPECS}, attn, "attention")
    if attn_kwargs is not None and not isinstance(attn_kwargs, dict):
        raise TypeError(f"{name}: attn_kwargs must be a dict of attention options, got "
                        f"{type(attn_kwargs).__name__}")
    if not isinstance(zero_init_last_bn, bool):
        raise TypeError(f"{name}: zero_init_last_bn must be True or False, got "
                        f"{zero_init_last_bn!r}")
    return {"block": spec.block, "layers": spec.layers, "num_classes": num_classes,
            "stem": stem, "attn": attn, "attn_kwargs": dict(attn_kwargs or {}),
            "zero_init_last_bn": zero_init_last_bn, "in_chans": in_chans}


def check_image(name: str, shape: tuple[int, ...], in_chans: int, channel_axis: int,
                stem: str) -> None:
    """Validate a network input: rank 4, `in_chans` channels, sides ≥ the network's stride."""
    if len(shape) != 4:
        raise ValueError(f"{name}: input of rank {len(shape)} (shape {tuple(shape)}); expected "
                         "rank 4 (batch, channels, height, width in any layout of the framework)")
    if shape[channel_axis] != in_chans:
        raise ValueError(f"{name}: input has {shape[channel_axis]} channels (shape "
                         f"{tuple(shape)}); expected in_chans={in_chans}")
    spatial = [d for i, d in enumerate(shape[1:], 1) if i != channel_axis % 4]
    stride = NETWORK_STRIDE[stem]
    if min(spatial) < stride:
        raise ValueError(f"{name}: input of spatial size {tuple(spatial)} is smaller than the "
                         f"total stride {stride} of the {stem!r} stem; expected height and "
                         f"width >= {stride}")
