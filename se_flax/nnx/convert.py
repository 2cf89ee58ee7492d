"""Linen variables ⇄ NNX state, bit for bit, by one naming rule.

An NNX state path is the PyTorch module path with each numeric segment an integer index
(`('layer1', 0, 'se', 'fc1', 'kernel')` ↔ torch `layer1.0.se.fc1.weight`); the Linen path glues
numeric segments to the name before them (`params/layer1_0/se/fc1/kernel`, the rule of
`se_flax.convert.naming`). `nnx.Param` lives in Linen's `params`, `nnx.BatchStat` in
`batch_stats`; leaf names (`kernel`, `bias`, `scale`, `mean`, `var`) are the same in both.
PyTorch state dicts reach NNX through `se_flax.convert.torch_to_flax` then `linen_to_nnx`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax.numpy as jnp
from flax import nnx

from se_flax.convert.errors import ConversionError
from se_flax.convert.naming import Path, flatten, flax_name, torch_name, unflatten
from se_spec.variables import BATCH_STATS, COLLECTIONS, PARAMS

NnxPath = tuple[str | int, ...]
_COLLECTION = {nnx.Param: PARAMS, nnx.BatchStat: BATCH_STATS}
STAT_LEAVES = ("mean", "var")  # the only `nnx.BatchStat` leaves: BatchNorm running statistics


def linen_path(path: NnxPath, variable_type: type[nnx.Variable]) -> Path:
    """The Linen path of an NNX variable.

    `(('layer1', 0, 'se', 'fc1', 'kernel'), nnx.Param)` → `('params', 'layer1_0', 'se', 'fc1',
    'kernel')`.
    """
    return (_COLLECTION[variable_type], *linen_names(path))


def linen_names(path: NnxPath) -> Path:
    """An NNX path as Linen names, without a collection.

    `('layer1', 0, 'se', 'gate')` → `('layer1_0', 'se', 'gate')`; integer indices and digit
    strings (as Orbax restores them) alike.
    """
    *modules, leaf = path
    return (*flax_name(".".join(map(str, modules))), str(leaf))


def model_variables(model: nnx.Module) -> dict[Path, tuple[NnxPath, nnx.Variable]]:
    """The model's parameters and running statistics by Linen path."""
    state = nnx.state(model, nnx.Param, nnx.BatchStat)
    out: dict[Path, tuple[NnxPath, nnx.Variable]] = {}
    for part, vtype in zip(state, (nnx.Param, nnx.BatchStat), strict=True):
        for path, var in nnx.to_flat_state(part):
            out[linen_path(path, vtype)] = (path, var)
    return out


def _shape(x: Any) -> tuple[int, ...]:
    return tuple(getattr(x, "shape", ()))


def linen_to_nnx(model: nnx.Module, variables: Mapping[str, Any]) -> nnx.Module:
    """Load Linen `variables` (`params`, `batch_stats`) into `model` in place; returns `model`.

    Strict: a missing or unexpected variable, a shape mismatch or another collection raises a
    `ConversionError` that lists every problem with its Linen path and shapes. Arrays are kept
    as they are (dtype included), so the NNX model holds the same bits.
    """
    nnx.update(model, nnx_state(model_variables(model), variables,
                                f"Linen variables → NNX {type(model).__name__}"))
    return model


def nnx_state(expected: Mapping[Path, tuple[NnxPath, nnx.Variable]],
              variables: Mapping[str, Any], context: str) -> nnx.State:
    """The NNX state holding Linen `variables` in the slots `expected` (`model_variables`).

    Strict, with the errors of `linen_to_nnx`; `context` names the conversion in them.
    """
    problems = [f"unexpected collection {c!r}; expected {' and '.join(COLLECTIONS)}"
                for c in variables if c not in COLLECTIONS]
    given = flatten({c: v for c, v in variables.items() if c in COLLECTIONS})
    for key in sorted(set(expected) - set(given)):
        problems.append(f"missing variable {'/'.join(key)} "
                        f"(expected shape {_shape(expected[key][1])})")
    for key in sorted(set(given) - set(expected)):
        problems.append(f"unexpected variable {'/'.join(key)} (shape {_shape(given[key])})")
    for key in sorted(set(given) & set(expected)):
        if _shape(given[key]) != _shape(expected[key][1]):
            problems.append(f"shape mismatch for {'/'.join(key)}: expected "
                            f"{_shape(expected[key][1])}, got {_shape(given[key])}")
    if problems:
        raise ConversionError(problems, context=context)
    return nnx.from_flat_state([(path, var.replace(jnp.asarray(given[key])))
                                for key, (path, var) in expected.items()])


def nnx_to_linen(model: nnx.Module) -> dict[str, Any]:
    """The Linen variables `{"params": …, "batch_stats": …}` holding `model`'s arrays."""
    flat = {key: var.get_value() for key, (_, var) in model_variables(model).items()}
    return unflatten(flat)


def nnx_path(path: Path) -> NnxPath:
    """The NNX state path of a Linen variable path (the collection dropped).

    `('params', 'layer1_0', 'se', 'fc1', 'kernel')` → `('layer1', 0, 'se', 'fc1', 'kernel')`.
    """
    _, *modules, leaf = path
    module = torch_name(modules)
    return (*(int(p) if p.isdigit() else p for p in module.split(".") if p), leaf)


def linen_to_nnx_tree(variables: Mapping[str, Any]) -> dict[str | int, Any]:
    """Linen variables → the nested dict of `nnx.to_pure_dict(nnx.state(model))`, no model needed.

    Parameters and running statistics share one tree, as in an NNX state; list indices are
    integers. `nnx.replace_by_pure_dict(nnx.state(model), tree)` loads it into a model.
    """
    return unflatten({nnx_path(p): v for p, v in flatten(
        {c: variables[c] for c in COLLECTIONS if c in variables}).items()})


def nnx_tree_to_linen(tree: Mapping[Any, Any]) -> dict[str, Any]:
    """An NNX pure-dict state → Linen variables; leaves `mean`/`var` go to `batch_stats`.

    Integer keys may be stored as strings (Orbax restores them so); both are accepted.
    """
    flat = {}
    for path, value in flatten(tree).items():
        collection = BATCH_STATS if path[-1] in STAT_LEAVES else PARAMS
        flat[(collection, *linen_names(path))] = value
    return unflatten(flat)
