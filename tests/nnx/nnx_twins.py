"""Run a Linen module and its NNX twin on the same weights and collect what the tests compare."""

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from se_flax.convert.naming import flatten, unflatten
from se_flax.nnx import linen_to_nnx, nnx_to_linen
from se_flax.nnx.convert import linen_names
from se_spec.tolerances import scaled_error


def randomize_batch_stats(variables: dict, seed: int = 1) -> dict:
    """Non-trivial running statistics (mean ~ N(0, 0.1), var in [0.5, 1.5]) for eval mode."""
    if "batch_stats" not in variables:
        return variables
    rng = np.random.default_rng(seed)
    stats = jax.tree.map(lambda a: a, variables["batch_stats"])
    flat = flatten(stats)
    for path, a in flat.items():
        r = rng.random(a.shape) if path[-1] == "var" else rng.standard_normal(a.shape) * 0.1
        flat[path] = jnp.asarray((r + 0.5) if path[-1] == "var" else r, a.dtype)
    return {**variables, "batch_stats": unflatten(flat)}


def linen_twin(module: Any, x: jax.Array, seed: int = 0) -> dict:
    """Random Linen variables of `module` for input `x` (NumPy: no init program to compile).

    Kernels ~ N(0, 1/fan_in), BatchNorm scales 1 + N(0, 0.1), biases N(0, 0.1), running
    statistics as `randomize_batch_stats`.
    """
    shapes = flatten(jax.eval_shape(module.init, jax.random.PRNGKey(seed), x))
    rng = np.random.default_rng(seed)
    values = {}
    for path, a in shapes.items():
        n = rng.standard_normal(a.shape)
        if path[-1] == "kernel":
            n = n / np.sqrt(max(1, int(np.prod(a.shape[:-1]))))
        elif path[-1] == "scale":
            n = 1 + 0.1 * n
        else:
            n = 0.1 * n
        values[path] = jnp.asarray(n, a.dtype)
    return randomize_batch_stats(unflatten(values), seed + 1)


def linen_run(module: Any, variables: dict, x: jax.Array, train: bool) -> tuple:
    """`(output, {gate path: value}, new batch_stats)` of a Linen module."""
    mutable = ["intermediates", "batch_stats"] if train else ["intermediates"]

    @jax.jit
    def run(variables: dict, x: jax.Array) -> tuple:
        return module.apply(variables, x, train=train, mutable=mutable)

    y, state = run(variables, x)
    gates = {p: v for p, v in flatten(dict(state.get("intermediates", {}))).items()}
    return y, gates, state.get("batch_stats", variables.get("batch_stats"))


def nnx_run(model: nnx.Module, x: jax.Array, train: bool) -> tuple:
    """`(output, {Linen gate path: value}, new batch_stats as Linen)` of an NNX module (jitted)."""
    graphdef, state = nnx.split(model)

    @jax.jit
    def run(state: Any, x: jax.Array) -> tuple:
        m = nnx.merge(graphdef, state)
        y, caps = nnx.capture(m, nnx.Intermediate)(x, train=train)
        return y, caps, nnx.state(m)

    y, caps, new_state = run(state, x)
    gates = {linen_names(path): var.get_value() for path, var in nnx.to_flat_state(caps)}
    updated = nnx.merge(graphdef, new_state)
    return y, gates, nnx_to_linen(updated).get("batch_stats")


def linen_grads(module: Any, variables: dict, x: jax.Array, w: jax.Array) -> dict:
    """Gradients of `sum(logits * w)` in training mode with respect to the Linen params."""
    def loss(params: dict) -> jax.Array:
        y, _ = module.apply({**variables, "params": params}, x, train=True,
                            mutable=["batch_stats"])
        return jnp.sum(y * w)
    return jax.jit(jax.grad(loss))(variables["params"])


def nnx_grads(model: nnx.Module, x: jax.Array, w: jax.Array) -> dict:
    """The same gradients for an NNX module, returned under Linen paths."""
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)

    def loss(both: tuple) -> jax.Array:  # both at one trace level: the statistics change
        return jnp.sum(nnx.merge(graphdef, *both)(x, train=True) * w)

    grads, _ = jax.jit(jax.grad(loss))((params, rest))
    return nnx_to_linen(nnx.merge(graphdef, grads, rest))["params"]


def loaded(abstract_or_model: nnx.Module, variables: dict) -> nnx.Module:
    """The NNX module holding the Linen `variables`."""
    return linen_to_nnx(abstract_or_model, variables)


def differences(ours: Any, ref: Any) -> dict[tuple, float]:
    """`{path: scaled error}` for two trees of one structure (nested dicts or flat dicts)."""
    a = ours if _is_flat(ours) else flatten(ours)
    b = ref if _is_flat(ref) else flatten(ref)
    assert set(a) == set(b), sorted(set(a) ^ set(b))
    out = {}
    for k in b:
        va, vb = a[k], b[k]
        va, vb = (va, vb) if isinstance(vb, tuple) else ((va,), (vb,))
        out[k] = max(scaled_error(p, q)[1] for p, q in zip(va, vb, strict=True))
    return out


def _is_flat(tree: Any) -> bool:
    return bool(tree) and all(isinstance(k, tuple) for k in tree)
