"""PyTorch state dict ⇄ Flax variables, by one naming rule and one layout rule. NumPy only.

Naming rule: a Flax module path is the PyTorch module path with every numeric segment glued to
the name before it by `_` (`layer1.0.se.fc1` ↔ `layer1_0/se/fc1`, `downsample.0` ↔
`downsample_0`). Leaves: conv/linear `weight` ↔ `kernel`, BatchNorm `weight` ↔ `scale`, `bias` ↔
`bias`, `running_mean` ↔ `batch_stats/mean`, `running_var` ↔ `batch_stats/var` (our BatchNorm
stores the unbiased running variance, as PyTorch does, so it is copied unchanged).
`num_batches_tracked` is dropped on import and recreated (as 0) on export.

Layout rule: torch conv `(O, I/g, *k)` ↔ Flax `(*k, I/g, O)`; torch Linear `(O, I)` ↔ Flax Dense
`(I, O)`. A Linear weight `(O, I)` loads into a 1x1-conv kernel (torch `(O, I, 1, ..., 1)`) and
vice versa (same math); no other reshaping is accepted, so a transposed or flattened tensor is a
shape mismatch, never a silent reinterpretation. Weights must be floating point; dtypes are
preserved (float32, float16, bfloat16).

This module is the per-tensor machinery. Whole networks (model names, the timm / torchvision /
article layouts, wrapped checkpoints) are `se_flax.convert`; `torch_to_flax` and `flax_to_torch`
here are that module's functions, kept importable from `se_flax.mapping`.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import ml_dtypes
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
    """A state dict does not match the target; `problems` lists every mismatch.

    `context` (optional) says what was being converted; `hints` (optional) suggest a fix.
    """

    def __init__(self, problems: list[str], context: str = "", hints: Iterable[str] = ()):
        self.problems = list(problems)
        self.hints = list(hints)
        listing = "\n  ".join(self.problems)
        head = f"{context}: " if context else ""
        tail = "".join(f"\nhint: {h}" for h in self.hints)
        super().__init__(f"{head}{len(self.problems)} problem(s) converting weights:\n  "
                         f"{listing}{tail}")


@dataclass
class ConversionReport:
    """What a conversion did: loaded keys, every key that did not match, and notes.

    `layout` is the PyTorch layout used (`timm`, `torchvision`, `article`) and `detected` says
    whether it was detected from the keys; `notes` record anything done besides the plain
    mapping (an unwrapped checkpoint, a stripped `module.` prefix, inferred model options,
    variables that kept their initial values).
    """

    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    layout: str | None = None
    detected: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def problems(self) -> list[str]:
        """One line per missing, unexpected or wrongly shaped (or typed) key."""
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


def to_numpy(value: Any) -> np.ndarray:
    """A NumPy array of `value` (NumPy, JAX or PyTorch), same dtype; bfloat16 via ml_dtypes.

    PyTorch tensors are recognised without importing torch (if one exists, torch is loaded).
    """
    if type(value).__module__.split(".")[0] == "torch":
        torch = sys.modules["torch"]
        t = value.detach().cpu().contiguous()
        if t.dtype == torch.bfloat16:
            return t.view(torch.int16).numpy().view(ml_dtypes.bfloat16).copy()
        return t.numpy().copy()
    return np.asarray(value)


def torch_kernel_shape(flax_shape: tuple[int, ...]) -> tuple[int, ...]:
    """The PyTorch shape of a Flax kernel shape: `(*k, I, O)` → `(O, I, *k)`."""
    if len(flax_shape) < 2:
        return tuple(flax_shape)
    return (flax_shape[-1], flax_shape[-2], *flax_shape[:-2])


def _kernel_fits(got: tuple[int, ...], expected: tuple[int, ...]) -> bool:
    """Exact shape, or a Linear `(O, I)` against a 1x1 conv `(O, I, 1, ..., 1)` either way."""
    if got == expected:
        return True
    if len(got) == 2 and len(expected) > 2:
        return got == expected[:2] and all(d == 1 for d in expected[2:])
    if len(expected) == 2 and len(got) > 2:
        return got[:2] == expected and all(d == 1 for d in got[2:])
    return False


def _fit_shape(value: np.ndarray, shape: tuple[int, ...], kernel: bool = False
               ) -> np.ndarray | None:
    """A PyTorch-layout `value` as a Flax variable of `shape`, or None if it does not fit."""
    if not kernel:
        return value if tuple(value.shape) == tuple(shape) else None
    expected = torch_kernel_shape(tuple(shape))
    if not _kernel_fits(tuple(value.shape), expected):
        return None
    return torch_kernel_to_flax(value.reshape(expected))


def _dtype_problem(key: str, value: np.ndarray) -> str | None:
    """A problem line when `value` is not a floating-point array."""
    if np.issubdtype(value.dtype, np.floating) or value.dtype == ml_dtypes.bfloat16:
        return None
    return f"dtype mismatch for {key}: expected a floating-point tensor, got {value.dtype}"


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

    Returns `(variables, report)`. With `strict=True` any missing key, unexpected key, shape
    mismatch or non-floating tensor raises one `ConversionError` listing all of them; with
    `strict=False` the template's own values stay where nothing matched and the report says
    which. `num_batches_tracked` of a BatchNorm in the template is dropped (`report.dropped`);
    anywhere else it is an unexpected key. Template leaves may be arrays or
    `jax.ShapeDtypeStruct`s (only `.shape` is read).
    """
    arrays = {k: to_numpy(v) for k, v in rename_keys(state_dict, renames).items()}
    report = ConversionReport()
    out: dict[tuple[str, ...], Any] = {}
    used: set[str] = set()
    norm_modules: set[str] = set()
    for path, target in flatten(template).items():
        collection, *modules, leaf = path
        if collection not in ("params", "batch_stats"):
            continue
        out[path] = target
        if (collection, leaf) not in FLAX_TO_TORCH_LEAF:
            report.mismatched.append(f"no PyTorch name for Flax variable {'/'.join(path)}")
            continue
        prefix = torch_name(modules)
        key = f"{prefix}.{FLAX_TO_TORCH_LEAF[(collection, leaf)]}".lstrip(".")
        if leaf == "mean":
            norm_modules.add(prefix)
        target_shape = tuple(target.shape)
        if key not in arrays:
            report.missing.append(key)
            continue
        used.add(key)
        value = arrays[key]
        problem = _dtype_problem(key, value)
        if problem:
            report.mismatched.append(problem)
            continue
        fitted = _fit_shape(value, target_shape, kernel=leaf == "kernel")
        if fitted is None:
            expected = torch_kernel_shape(target_shape) if leaf == "kernel" else target_shape
            report.mismatched.append(f"shape mismatch for {key}: expected {expected}, "
                                     f"got {tuple(value.shape)}")
            continue
        out[path] = fitted
        report.loaded.append(key)
    for key in arrays:
        if key in used:
            continue
        module, _, leaf = key.rpartition(".")
        if leaf in DROPPED_TORCH_LEAVES and module in norm_modules:
            report.dropped.append(key)
        else:
            report.unexpected.append(key)
    if strict and report.problems:
        raise ConversionError(report.problems)
    return unflatten(out), report


def variables_to_state_dict(variables: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Flax `params`/`batch_stats` → PyTorch-named NumPy arrays (with `num_batches_tracked`).

    Other collections (`intermediates`, ...) are ignored. No layout conversion: see
    `se_flax.convert.flax_to_torch` for whole networks.
    """
    out: dict[str, np.ndarray] = {}
    for path, value in flatten(variables).items():
        collection, *modules, leaf = path
        if collection not in ("params", "batch_stats"):
            continue
        if (collection, leaf) not in FLAX_TO_TORCH_LEAF:
            raise ConversionError([f"no PyTorch name for Flax variable {'/'.join(path)}"])
        array = to_numpy(value)
        if leaf == "kernel":
            array = flax_kernel_to_torch(array)
        prefix = torch_name(modules)
        out[f"{prefix}.{FLAX_TO_TORCH_LEAF[(collection, leaf)]}".lstrip(".")] = array
        if leaf == "mean":
            out[f"{prefix}.num_batches_tracked".lstrip(".")] = np.zeros((), np.int64)
    return out


def torch_to_flax(state_dict: Mapping[str, Any], target: Any, **kwargs: Any) -> Any:
    """PyTorch state dict → Flax variables; see `se_flax.convert.torch_to_flax`.

    `target` is a template of variables or a registered model name; strict by default.
    """
    from se_flax import convert  # lazy: convert imports this module

    return convert.torch_to_flax(state_dict, target, **kwargs)


def flax_to_torch(variables: Mapping[str, Any], model: Any = None, **kwargs: Any) -> Any:
    """Flax variables → PyTorch-named NumPy arrays; see `se_flax.convert.flax_to_torch`."""
    from se_flax import convert  # lazy: convert imports this module

    return convert.flax_to_torch(variables, model, **kwargs)
