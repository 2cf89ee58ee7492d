"""`widen_se`: a trained network's SE reduction changed (e.g. 16 → 8) without changing its outputs.

The SENet article's tip — train with reduction 16, fine-tune with 8 — needs the ratio-16
weights in a ratio-8 network. Every SE module gets the new hidden width (`se_spec.widening`):
new units with zero outgoing weights and small random incoming weights, so the network computes
the same function and the new units can learn; shrinking keeps the units with the largest
outgoing weights and reports what it dropped. Every other array is copied unchanged, and any
other difference between the two models is an error naming the key.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from se_spec.variables import PARAMS
from se_spec.widening import (
    FC1,
    FC2,
    Excitation,
    WidthChange,
    modules_to_resize,
    resize_hidden,
)


def _shapes(model: nn.Module, input_shape: tuple[int, ...]) -> dict[tuple[str, ...], tuple]:
    """Flattened `{path: shape}` of `model`'s variables for an input of `input_shape`."""
    tree = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros(input_shape),
                                             train=False))
    return {k: v.shape for k, v in traverse_util.flatten_dict(dict(tree)).items()}


def _input_shape(variables: dict[str, Any], img_size: int | None = None) -> tuple[int, ...]:
    """A small input the network of `variables` accepts, read off its first convolution.

    A ViT takes exactly its `img_size` a side.
    """
    kernels = [v for k, v in traverse_util.flatten_dict(dict(variables[PARAMS])).items()
               if k[-1] == "kernel" and np.ndim(v) in (4, 5)]
    if not kernels:
        raise ValueError("widen_se: no convolution kernel in the variables; pass input_shape")
    first = kernels[0]
    in_chans = first.shape[-2]
    side = img_size or 64
    return (1, side, side, in_chans) if np.ndim(first) == 4 else (1, 8, 64, 64, in_chans)


def _name(path: tuple[str, ...]) -> str:
    return "/".join(path)


def widen_se(variables: dict[str, Any], from_model: nn.Module, to_model: nn.Module, *,
             seed: int = 0, init_scale: float = 1e-2,
             input_shape: tuple[int, ...] | None = None) -> WidthChange:
    """`variables` of `from_model` re-shaped for `to_model`, which differs in SE widths only.

    Returns a `WidthChange`: `.weights` (the new variables), `.exact`, `.report()`. New incoming
    weights are normal with std `init_scale / sqrt(fan_in)`, drawn from `seed`.
    """
    shape = input_shape or _input_shape(variables, getattr(from_model, "img_size", None))
    source = {k: np.asarray(v) for k, v in traverse_util.flatten_dict(dict(variables)).items()}
    expected, target = _shapes(from_model, shape), _shapes(to_model, shape)
    modules = modules_to_resize({k: v.shape for k, v in source.items()}, expected, target,
                                lambda k: (k[:-2], k[-2]) if len(k) >= 3 else None, _name)
    out = dict(source)
    rng = np.random.default_rng(seed)
    dropped = []
    for m in modules:
        w1, w2 = source[(*m, FC1, "kernel")], source[(*m, FC2, "kernel")]
        if w2.shape[-2] != w1.shape[-1]:
            raise ValueError(f"widen_se: {_name(m)} has a grouped excitation "
                             f"({w1.shape} → {w2.shape}); only groups=1 can be resized")
        b1 = source.get((*m, FC1, "bias"))
        ex = Excitation(w1, b1, w2, w1.ndim - 1, w2.ndim - 2)
        new, lost = resize_hidden(_name(m), ex, target[(*m, FC1, "kernel")][-1], rng,
                                  init_scale)
        out[(*m, FC1, "kernel")], out[(*m, FC2, "kernel")] = new.fc1_weight, new.fc2_weight
        if b1 is not None:
            out[(*m, FC1, "bias")] = new.fc1_bias
        if lost is not None:
            dropped.append(lost)
    for k in out:
        if out[k].shape != target[k]:
            raise ValueError(f"widen_se: {_name(k)} became {out[k].shape}, to_model expects "
                             f"{target[k]}")
    return WidthChange(traverse_util.unflatten_dict(out), dropped, len(modules))
