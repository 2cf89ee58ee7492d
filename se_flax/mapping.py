"""PyTorch state dict ⇄ Flax variables, by one naming rule and one layout rule. NumPy only.

Naming rule: a Flax module path is the PyTorch module path with every numeric segment glued to
the name before it by `_` (`layer1.0.se.fc1` ↔ `layer1_0/se/fc1`, `downsample.0` ↔
`downsample_0`). Leaves: conv/linear `weight` ↔ `kernel`, BatchNorm `weight` ↔ `scale`, `bias` ↔
`bias`, `running_mean` ↔ `batch_stats/mean`, `running_var` ↔ `batch_stats/var` (our BatchNorm
stores the unbiased running variance, as PyTorch does, so it is copied unchanged).
`num_batches_tracked` is dropped on import and recreated (as 0) on export.

Layout rule: torch conv `(O, I/g, *k)` ↔ Flax `(*k, I/g, O)`; torch Linear `(O, I)` ↔ Flax Dense
`(I, O)`. A Linear weight loads into a 1x1-conv kernel and vice versa (same math, kernel shapes
that differ only by unit axes). dtypes are preserved.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

# (collection, leaf) of a Flax variable → torch parameter suffix.
FLAX_TO_TORCH_LEAF = {
    ("params", "kernel"): "weight",
    ("params", "scale"): "weight",
    ("params", "bias"): "bias",
    ("batch_stats", "mean"): "running_mean",
    ("batch_stats", "var"): "running_var",
}
DROPPED_TORCH_LEAVES = ("num_batches_tracked",)
# The article's SE layout `se.fc = Sequential(Linear, ReLU, Linear, Sigmoid)` → `fc1`/`fc2`.
ARTICLE_SE_RENAMES: tuple[tuple[str, str], ...] = (
    (r"(^|\.)fc\.0\.", r"\1fc1."),
    (r"(^|\.)fc\.2\.", r"\1fc2."),
)


class ConversionError(ValueError):
    """A state dict does not match the target; `problems` lists every mismatch."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        listing = "\n  ".join(problems)
        super().__init__(f"{len(problems)} problem(s) converting weights:\n  {listing}")


@dataclass
class ConversionReport:
    """What a conversion did: loaded keys, and every key that did not match."""

    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)

    @property
    def problems(self) -> list[str]:
        """One line per missing, unexpected or wrongly shaped key."""
        return ([f"missing key {k}" for k in self.missing]
                + [f"unexpected key {k}" for k in self.unexpected] + self.mismatched)


def flax_name(torch_module_path: str) -> tuple[str, ...]:
    """`'layer1.0.se.fc1'` → `('layer1_0', 'se', 'fc1')`."""
    names: list[str] = []
    for part in torch_module_path.split(".") if torch_module_path else []:
        if part.isdigit() and names:
            names[-1] = f"{names[-1]}_{part}"
        else:
            names.append(part)
    return tuple(names)


def torch_name(flax_path: Iterable[str]) -> str:
    """`('layer1_0', 'se', 'fc1')` → `'layer1.0.se.fc1'`."""
    return ".".join(re.sub(r"_(\d+)(?=_|$)", r".\1", str(p)) for p in flax_path)


def flatten(tree: Mapping[str, Any], prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], Any]:
    """Nested dict → `{path tuple: leaf}`."""
    flat: dict[tuple[str, ...], Any] = {}
    for k, v in tree.items():
        if isinstance(v, Mapping):
            flat.update(flatten(v, (*prefix, str(k))))
        else:
            flat[(*prefix, str(k))] = v
    return flat


def unflatten(flat: Mapping[tuple[str, ...], Any]) -> dict[str, Any]:
    """`{path tuple: leaf}` → nested dict."""
    tree: dict[str, Any] = {}
    for path, leaf in flat.items():
        node = tree
        for p in path[:-1]:
            node = node.setdefault(p, {})
        node[path[-1]] = leaf
    return tree


def torch_kernel_to_flax(w: np.ndarray) -> np.ndarray:
    """`(O, I, *k)` → `(*k, I, O)`; `(O, I)` → `(I, O)`."""
    return np.transpose(w, (*range(2, w.ndim), 1, 0)) if w.ndim >= 2 else w


def flax_kernel_to_torch(k: np.ndarray) -> np.ndarray:
    """`(*k, I, O)` → `(O, I, *k)`; `(I, O)` → `(O, I)`."""
    return np.transpose(k, (k.ndim - 1, k.ndim - 2, *range(k.ndim - 2))) if k.ndim >= 2 else k


def _fit_shape(value: np.ndarray, shape: tuple[int, ...]) -> np.ndarray | None:
    """`value` reshaped to `shape` when they differ only by unit axes, else None."""
    if value.shape == shape:
        return value
    squeeze = lambda s: tuple(d for d in s if d != 1)  # noqa: E731
    return value.reshape(shape) if squeeze(value.shape) == squeeze(shape) else None


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


def convert_torch_to_flax(state_dict: Mapping[str, Any], template: Mapping[str, Any], *,
                          strict: bool = True, renames: Iterable[tuple[str, str]] = ()
                          ) -> tuple[dict[str, Any], ConversionReport]:
    """Fill `template`'s `params`/`batch_stats` from a PyTorch-named state dict.

    Returns `(variables, report)`. With `strict=True` any missing key, unexpected key or shape
    mismatch raises one `ConversionError` listing all of them; with `strict=False` the template's
    own values stay where nothing matched and the report says which.
    """
    arrays = {k: np.asarray(v) for k, v in rename_keys(state_dict, renames).items()}
    report = ConversionReport()
    out: dict[tuple[str, ...], Any] = {}
    used: set[str] = set()
    for path, target in flatten(template).items():
        collection, *modules, leaf = path
        if (collection, leaf) not in FLAX_TO_TORCH_LEAF:
            continue
        key = f"{torch_name(modules)}.{FLAX_TO_TORCH_LEAF[(collection, leaf)]}".lstrip(".")
        target_shape = tuple(np.shape(target))
        out[path] = target
        if key not in arrays:
            report.missing.append(key)
            continue
        used.add(key)
        value = arrays[key]
        if leaf == "kernel":
            value = torch_kernel_to_flax(value)
        fitted = _fit_shape(value, target_shape)
        if fitted is None:
            expected = target_shape if leaf != "kernel" else \
                flax_kernel_to_torch(np.empty(target_shape, np.int8)).shape
            report.mismatched.append(f"shape mismatch for {key}: expected {expected}, "
                                     f"got {tuple(arrays[key].shape)}")
            continue
        out[path] = fitted
        report.loaded.append(key)
    for key in arrays:
        if key in used:
            continue
        if key.rsplit(".", 1)[-1] in DROPPED_TORCH_LEAVES:
            report.dropped.append(key)
        else:
            report.unexpected.append(key)
    if strict and report.problems:
        raise ConversionError(report.problems)
    return unflatten(out), report


def torch_to_flax(state_dict: Mapping[str, Any], template: Mapping[str, Any], *,
                  strict: bool = True, renames: Iterable[tuple[str, str]] = ()
                  ) -> dict[str, Any]:
    """PyTorch state dict → Flax variables shaped like `template` (strict by default)."""
    return convert_torch_to_flax(state_dict, template, strict=strict, renames=renames)[0]


def flax_to_torch(variables: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Flax `params`/`batch_stats` → PyTorch-named NumPy arrays (with `num_batches_tracked`)."""
    out: dict[str, np.ndarray] = {}
    for path, value in flatten(variables).items():
        collection, *modules, leaf = path
        if collection not in ("params", "batch_stats"):
            continue
        if (collection, leaf) not in FLAX_TO_TORCH_LEAF:
            raise ConversionError([f"no PyTorch name for Flax variable {'/'.join(path)}"])
        array = np.asarray(value)
        if leaf == "kernel":
            array = flax_kernel_to_torch(array)
        prefix = torch_name(modules)
        out[f"{prefix}.{FLAX_TO_TORCH_LEAF[(collection, leaf)]}".lstrip(".")] = array
        if leaf == "mean":
            out[f"{prefix}.num_batches_tracked".lstrip(".")] = np.zeros((), np.int64)
    return out
