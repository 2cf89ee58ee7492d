"""Stateless helpers shared by the Flax attention layers: activations, gates, pooling."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from se_spec.attention import ACTIVATIONS, GATES
from se_spec.validation import check_choice

_ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "relu": jax.nn.relu,
    "relu6": jax.nn.relu6,
    "hard_swish": jax.nn.hard_swish,
    "silu": jax.nn.silu,
    "gelu": lambda x: jax.nn.gelu(x, approximate=False),  # torch.nn.GELU() default is exact
    "tanh": jnp.tanh,
}
_GATES: dict[str, Callable[[jax.Array], jax.Array]] = {
    "sigmoid": jax.nn.sigmoid,
    "hard_sigmoid": jax.nn.hard_sigmoid,  # relu6(x + 3) / 6, as torch.nn.Hardsigmoid
}
assert tuple(_ACTIVATIONS) == ACTIVATIONS and tuple(_GATES) == GATES


def activation(module: str, name: str) -> Callable[[jax.Array], jax.Array]:
    """Activation function by name; raises ValueError naming `module` for an unknown name."""
    return _ACTIVATIONS[check_choice(module, "act", name, ACTIVATIONS)]


def gate_fn(module: str, name: str) -> Callable[[jax.Array], jax.Array]:
    """Gate function (sigmoid or hard_sigmoid) by name."""
    return _GATES[check_choice(module, "gate", name, GATES)]


def at_least_fp32(x: jax.Array) -> jax.Array:
    """`x` in float32, or in its own dtype if that is wider (float64 under `jax.enable_x64`)."""
    return x.astype(jnp.promote_types(x.dtype, jnp.float32))


def spatial_mean(x: jax.Array) -> jax.Array:
    """Squeeze: mean over all spatial axes of a channels-last array, in float32 → (N, C)."""
    return jnp.mean(at_least_fp32(x), axis=tuple(range(1, x.ndim - 1)))


def spatial_max(x: jax.Array) -> jax.Array:
    """Max over all spatial axes of a channels-last array, in float32 → (N, C)."""
    return jnp.max(at_least_fp32(x), axis=tuple(range(1, x.ndim - 1)))


def rescale(x: jax.Array, gate: jax.Array, residual: bool = False) -> jax.Array:
    """Multiply `x` (N, ..., C) by a per-channel gate (N, C); `x + x * s` when `residual`."""
    s = gate.reshape(gate.shape[0], *([1] * (x.ndim - 2)), gate.shape[-1]).astype(x.dtype)
    return x + x * s if residual else x * s
