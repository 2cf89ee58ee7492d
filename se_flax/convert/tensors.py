"""The layout rule for one tensor, and arrays of any framework as NumPy. Never imports torch.

torch conv `(O, I/g, *k)` ↔ Flax `(*k, I/g, O)`; torch Linear `(O, I)` ↔ Flax Dense `(I, O)`.
A Linear weight `(O, I)` loads into a 1x1-conv kernel (torch `(O, I, 1, ..., 1)`) and vice versa
(the same math); no other reshaping is accepted, so a transposed or flattened tensor is a shape
mismatch, never a silent reinterpretation. Weights must be floating point; dtypes are kept
(float32, float16, bfloat16 as `ml_dtypes.bfloat16`).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

import ml_dtypes
import numpy as np


def is_array(value: Any) -> bool:
    """Whether `value` looks like a tensor (NumPy, JAX, PyTorch): it has a shape and a dtype."""
    return hasattr(value, "shape") and hasattr(value, "dtype") and not isinstance(value, Mapping)


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


def torch_kernel_to_flax(w: np.ndarray) -> np.ndarray:
    """`(O, I, *k)` → `(*k, I, O)`; `(O, I)` → `(I, O)`."""
    return np.transpose(w, (*range(2, w.ndim), 1, 0)) if w.ndim >= 2 else w


def flax_kernel_to_torch(k: np.ndarray) -> np.ndarray:
    """`(*k, I, O)` → `(O, I, *k)`; `(I, O)` → `(O, I)`."""
    return np.transpose(k, (k.ndim - 1, k.ndim - 2, *range(k.ndim - 2))) if k.ndim >= 2 else k


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


def torch_to_flax_tensor(value: np.ndarray, shape: tuple[int, ...], kernel: bool
                         ) -> np.ndarray | None:
    """A PyTorch-layout `value` as a Flax variable of `shape`, or None if it does not fit."""
    if not kernel:
        return value if tuple(value.shape) == tuple(shape) else None
    expected = torch_kernel_shape(tuple(shape))
    if not _kernel_fits(tuple(value.shape), expected):
        return None
    return torch_kernel_to_flax(value.reshape(expected))


def dtype_problem(key: str, value: np.ndarray) -> str | None:
    """A problem line when `value` is not a floating-point array."""
    if np.issubdtype(value.dtype, np.floating) or value.dtype == ml_dtypes.bfloat16:
        return None
    return f"dtype mismatch for {key}: expected a floating-point tensor, got {value.dtype}"
