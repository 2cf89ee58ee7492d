"""Whole state dicts ⇄ Flax variables by the naming rule and the layout rule. NumPy in, NumPy out.

Nothing here decides strictness or layouts: each function returns what matched together with a
`ConversionReport` of what did not, and `se_flax.convert.network` decides what to do about it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from se_flax.convert.errors import ConversionError, ConversionReport
from se_flax.convert.naming import (
    DROPPED_TORCH_LEAVES,
    FLAX_TO_TORCH_LEAF,
    Path,
    flatten,
    torch_key,
    torch_name,
    unflatten,
)
from se_flax.convert.tensors import (
    dtype_problem,
    flax_kernel_to_torch,
    torch_kernel_shape,
    torch_to_flax_tensor,
)
from se_spec.variables import BATCH_STATS, COLLECTIONS


def rename_keys(state_dict: Mapping[str, Any],
                renames: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """Apply regex `(pattern, replacement)` renames to every key, refusing collisions."""
    renames = tuple(renames)
    out: dict[str, Any] = {}
    for key, value in state_dict.items():
        new = key
        for pattern, repl in renames:
            new = re.sub(pattern, repl, new)
        if new in out:
            raise ConversionError([f"keys collide after renaming: {key!r} → {new!r}"])
        out[new] = value
    return out


def fill_template(state_dict: Mapping[str, np.ndarray], template: Mapping[str, Any]
                  ) -> tuple[dict[str, Any], ConversionReport]:
    """Fill `template`'s `params`/`batch_stats` from a PyTorch-named state dict of NumPy arrays.

    Returns `(variables, report)`: where nothing matched, the template's own leaf stays (arrays
    or `jax.ShapeDtypeStruct`s; only `.shape` is read) and the report says why.
    `num_batches_tracked` of a BatchNorm in the template is dropped (`report.dropped`); anywhere
    else it is an unexpected key.
    """
    report = ConversionReport()
    out: dict[Path, Any] = {}
    used: set[str] = set()
    norm_modules: set[str] = set()
    for path, target in flatten(template).items():
        if path[0] not in COLLECTIONS:
            continue
        out[path] = target
        key = torch_key(path)
        if key is None:
            report.mismatched.append(f"no PyTorch name for Flax variable {'/'.join(path)}")
            continue
        leaf = path[-1]
        if path[0] == BATCH_STATS and leaf == "mean":
            norm_modules.add(torch_name(path[1:-1]))
        if key not in state_dict:
            report.missing.append(key)
            continue
        used.add(key)
        value = state_dict[key]
        problem = dtype_problem(key, value)
        if problem:
            report.mismatched.append(problem)
            continue
        target_shape = tuple(target.shape)
        fitted = torch_to_flax_tensor(value, target_shape, kernel=leaf == "kernel")
        if fitted is None:
            expected = torch_kernel_shape(target_shape) if leaf == "kernel" else target_shape
            report.mismatched.append(f"shape mismatch for {key}: expected {expected}, "
                                     f"got {tuple(value.shape)}")
            continue
        out[path] = fitted
        report.loaded.append(key)
    for key in state_dict:
        if key in used:
            continue
        module, _, leaf = key.rpartition(".")
        if leaf in DROPPED_TORCH_LEAVES and module in norm_modules:
            report.dropped.append(key)
        else:
            report.unexpected.append(key)
    return unflatten(out), report


def variables_to_state_dict(variables: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Flax `params`/`batch_stats` of NumPy arrays → PyTorch-named arrays.

    `num_batches_tracked` is recreated (int64 zero); other collections are ignored; no layout
    other than the naming rule.
    """
    out: dict[str, np.ndarray] = {}
    for path, array in flatten(variables).items():
        if path[0] not in COLLECTIONS:
            continue
        key = torch_key(path)
        if key is None:
            raise ConversionError([f"no PyTorch name for Flax variable {'/'.join(path)}"])
        out[key] = flax_kernel_to_torch(array) if path[-1] == "kernel" else array
        if path[0] == BATCH_STATS and path[-1] == "mean":
            out[f"{torch_name(path[1:-1])}.num_batches_tracked".lstrip(".")] = \
                np.zeros((), np.int64)
    return out


def check_variables(variables: Mapping[str, Any], template: Mapping[str, Any]
                    ) -> tuple[dict[Path, Any], ConversionReport]:
    """Compare Flax variables with a template: `(matching leaves by path, report)`.

    Problems name the Flax path and its PyTorch key, e.g. `missing variable
    params/layer1_0/conv1/kernel (layer1.0.conv1.weight)`.
    """
    have = flatten(variables)
    want = flatten(template)
    report = ConversionReport()
    good: dict[Path, Any] = {}

    def name(path: Path) -> str:
        leaf = FLAX_TO_TORCH_LEAF.get((path[0], path[-1]), path[-1])
        return f"{'/'.join(path)} ({torch_name(path[1:-1])}.{leaf})".replace("(.", "(")

    for path, target in want.items():
        if path not in have:
            report.mismatched.append(f"missing variable {name(path)}")
        elif tuple(have[path].shape) != tuple(target.shape):
            report.mismatched.append(f"shape mismatch for {name(path)}: expected "
                                     f"{tuple(target.shape)}, got {tuple(have[path].shape)}")
        else:
            good[path] = have[path]
            report.loaded.append("/".join(path))
    report.mismatched += [f"unexpected variable {name(p)}" for p in have if p not in want]
    return good, report
