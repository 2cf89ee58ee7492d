"""What a registered model expects: variable shapes, initial values, options implied by weights.

`model_template` (shapes, no FLOPs), `init_variables` (initial values), and `torch_options` /
`flax_options` (the `num_classes`, `in_chans` and `stem` a set of weights implies).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from se_flax.convert.naming import flatten, unflatten
from se_flax.convert.tensors import torch_kernel_shape
from se_flax.models import create_model
from se_spec.models import resolve_options, sample_input_shape
from se_spec.variables import COLLECTIONS, PARAMS
from se_spec.vit import options_from_pos_embed

STEM_KERNEL = {7: "imagenet", 3: "cifar"}


def _options_key(kwargs: Mapping[str, Any]) -> str | None:
    try:
        return json.dumps(kwargs, sort_keys=True)
    except TypeError:
        return None


@functools.lru_cache(maxsize=32)
def _cached_template(name: str, options: str) -> dict[str, Any]:
    return _build_template(name, json.loads(options))


def _build_template(name: str, kwargs: Mapping[str, Any]) -> dict[str, Any]:
    model = create_model(name, **kwargs)
    x = jax.ShapeDtypeStruct(sample_input_shape(name, model.in_chans,
                                                img_size=getattr(model, "img_size", None)),
                             jnp.float32)
    shapes = jax.eval_shape(lambda x: model.init(jax.random.PRNGKey(0), x), x)
    return {k: shapes[k] for k in COLLECTIONS if k in shapes}


def model_template(name: str, **kwargs: Any) -> dict[str, Any]:
    """`{"params", "batch_stats"}` of a registered model as `jax.ShapeDtypeStruct`s (no FLOPs)."""
    defaults = resolve_options(name)  # drop options given at their default: one cache entry
    kwargs = {k: v for k, v in kwargs.items() if k not in defaults or defaults[k] != v}
    key = _options_key(kwargs)
    template = _cached_template(name, key) if key is not None else _build_template(name, kwargs)
    return unflatten(flatten(template))  # fresh dicts: callers may edit them


def init_variables(name: str, seed: int = 0, **kwargs: Any) -> dict[str, Any]:
    """Freshly initialised `{"params", "batch_stats"}` of a registered model, as NumPy arrays."""
    model = create_model(name, **kwargs)
    x = jnp.zeros(sample_input_shape(name, model.in_chans,
                                     img_size=getattr(model, "img_size", None)), jnp.float32)
    variables = jax.jit(model.init)(jax.random.PRNGKey(seed), x)
    return {k: jax.tree.map(np.asarray, variables[k]) for k in COLLECTIONS if k in variables}


def torch_options(state_dict: Mapping[str, Any]) -> dict[str, Any]:
    """`num_classes`, `in_chans`, `stem` (ViT: `img_size`, `patch_size`) read off a state dict.

    `num_classes` from the last Linear (`fc`, MobileNetV3's `classifier.3`, ViT's `head`);
    `in_chans` from the first conv (`conv1.weight` of image ResNets, `stem.0.weight` of video
    ones, `features.0.0.weight`, `patch_embed.proj.weight`); `stem` from the 2D `conv1` kernel
    (7: `imagenet`, 3: `cifar`); a ViT's `patch_size` from its patch kernel and `img_size` from
    the length of `pos_embed`. A MobileNetV3's stem (a stride) leaves no trace in the weights.
    """
    options: dict[str, Any] = {}
    for key in ("fc.weight", "classifier.3.weight", "head.weight"):
        fc = state_dict.get(key)
        if fc is not None and len(fc.shape) == 2:
            options["num_classes"] = int(fc.shape[0])
    for key in ("features.0.0.weight", "patch_embed.proj.weight"):
        first = state_dict.get(key)
        if first is not None and len(first.shape) == 4:
            options["in_chans"] = int(first.shape[1])
    proj, pos_embed = state_dict.get("patch_embed.proj.weight"), state_dict.get("pos_embed")
    if proj is not None and pos_embed is not None and len(proj.shape) == 4 \
            and len(pos_embed.shape) == 3:
        options.update(options_from_pos_embed(pos_embed.shape, int(proj.shape[-1])))
    conv1, stem = state_dict.get("conv1.weight"), state_dict.get("stem.0.weight")
    if conv1 is not None and len(conv1.shape) == 4:
        options["in_chans"] = int(conv1.shape[1])
        if conv1.shape[-1] in STEM_KERNEL:
            options["stem"] = STEM_KERNEL[conv1.shape[-1]]
    elif stem is not None and len(stem.shape) == 5:
        options["in_chans"] = int(stem.shape[1])
    return options


def flax_options(variables: Mapping[str, Any]) -> dict[str, Any]:
    """`torch_options` read off Flax variables (the same layers' kernels, `pos_embed`)."""
    params = variables.get(PARAMS, {})

    def kernel(*modules: str) -> Any:
        node = params
        for module in modules:
            node = node.get(module) if isinstance(node, Mapping) else None
        return node.get("kernel") if isinstance(node, Mapping) else None

    shapes: dict[str, Any] = {}
    for modules, key in ((("fc",), "fc.weight"), (("conv1",), "conv1.weight"),
                         (("stem_0",), "stem.0.weight"),
                         (("classifier_3",), "classifier.3.weight"), (("head",), "head.weight"),
                         (("features_0_0",), "features.0.0.weight"),
                         (("patch_embed", "proj"), "patch_embed.proj.weight")):
        k = kernel(*modules)
        if k is not None and len(k.shape) >= 2:
            shapes[key] = np.empty(torch_kernel_shape(tuple(k.shape)), np.int8)
    pos_embed = params.get("pos_embed")
    if pos_embed is not None and len(pos_embed.shape) == 3:
        shapes["pos_embed"] = np.empty(tuple(pos_embed.shape), np.int8)
    return torch_options(shapes)
