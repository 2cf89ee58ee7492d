"""Parity tolerances between the two frameworks, and the error they bound (docs/numerics.md).

Error of a tensor: `max|ours - ref| / max(1, max|ref|)`, in float64. Eval-mode outputs and gates
agree to `EVAL_TOL`; anything computed in training mode (outputs, BatchNorm running statistics,
gradients) to `TRAIN_TOL`, since batch statistics over few elements amplify rounding.
"""

from __future__ import annotations

from typing import Any

import numpy as np

EVAL_TOL = 1e-5
TRAIN_TOL = 1e-4


def scaled_error(ours: Any, ref: Any) -> tuple[float, float]:
    """`(max |Δ|, max |Δ| / max(1, max |ref|))` of two arrays of one shape, in float64."""
    a, b = np.asarray(ours, np.float64), np.asarray(ref, np.float64)
    if a.shape != b.shape:
        raise ValueError(f"shape mismatch: {a.shape} vs reference {b.shape}")
    if a.size == 0:
        return 0.0, 0.0
    diff = float(np.max(np.abs(a - b)))
    return diff, diff / max(1.0, float(np.max(np.abs(b))))
