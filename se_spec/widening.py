"""Changing the hidden width of an SE excitation without changing what it computes.

The excitation is `fc2(act(fc1(s)))`. Adding hidden units whose outgoing weights (`fc2`) are
zero leaves the output as it was, whatever their incoming weights; those are drawn small and
random (with zero bias) so that the units can learn once `fc2` moves off zero. Removing units is
exact only when their outgoing weights are zero (e.g. units added by an earlier widening); the
units kept are those with the largest outgoing weights, and what was dropped is reported.

Framework-free (NumPy): `se_flax.widen_se` and `se_torch_ref.widen_se` call `resize_hidden`
with their own kernel layouts (which axis of `fc1`'s and `fc2`'s weights is the hidden one).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

FC1, FC2 = "fc1", "fc2"


@dataclass(frozen=True)
class DroppedUnits:
    """Hidden units an SE module lost when its width shrank."""

    module: str
    units: int  # how many were dropped
    largest_outgoing: float  # max |fc2 weight| among them: 0 means the change was exact


@dataclass(frozen=True)
class Excitation:
    """One SE module's excitation weights as NumPy arrays, with the axis of the hidden units."""

    fc1_weight: np.ndarray
    fc1_bias: np.ndarray | None
    fc2_weight: np.ndarray
    fc1_axis: int  # hidden-unit axis of fc1_weight
    fc2_axis: int  # hidden-unit axis of fc2_weight

    @property
    def width(self) -> int:
        """Number of hidden units."""
        return self.fc1_weight.shape[self.fc1_axis]


def resize_hidden(module: str, ex: Excitation, width: int, rng: np.random.Generator,
                  init_scale: float = 1e-2) -> tuple[Excitation, DroppedUnits | None]:
    """`ex` with `width` hidden units; the output is unchanged unless units were dropped."""
    if width < 1:
        raise ValueError(f"{module}: an SE excitation needs at least one hidden unit, "
                         f"got width {width}")
    old = ex.width
    if width >= old:
        extra = width - old
        fan_in = ex.fc1_weight.size // old
        new_in_shape = list(ex.fc1_weight.shape)
        new_in_shape[ex.fc1_axis] = extra
        scale = init_scale / np.sqrt(max(fan_in, 1))
        new_in = (rng.standard_normal(new_in_shape) * scale).astype(ex.fc1_weight.dtype)
        new_out_shape = list(ex.fc2_weight.shape)
        new_out_shape[ex.fc2_axis] = extra
        fc1 = np.concatenate([ex.fc1_weight, new_in], axis=ex.fc1_axis)
        fc2 = np.concatenate([ex.fc2_weight, np.zeros(new_out_shape, ex.fc2_weight.dtype)],
                             axis=ex.fc2_axis)
        bias = None if ex.fc1_bias is None else np.concatenate(
            [ex.fc1_bias, np.zeros(extra, ex.fc1_bias.dtype)])
        return Excitation(fc1, bias, fc2, ex.fc1_axis, ex.fc2_axis), None
    outgoing = np.moveaxis(np.abs(ex.fc2_weight), ex.fc2_axis, 0).reshape(old, -1).max(axis=1)
    keep = np.sort(np.argsort(-outgoing, kind="stable")[:width])
    dropped = np.setdiff1d(np.arange(old), keep)
    fc1 = np.take(ex.fc1_weight, keep, axis=ex.fc1_axis)
    fc2 = np.take(ex.fc2_weight, keep, axis=ex.fc2_axis)
    bias = None if ex.fc1_bias is None else ex.fc1_bias[keep]
    report = DroppedUnits(module, len(dropped), float(outgoing[dropped].max()))
    return Excitation(fc1, bias, fc2, ex.fc1_axis, ex.fc2_axis), report


def describe(dropped: list[DroppedUnits]) -> str:
    """One line per module that lost units with non-zero outgoing weights."""
    lossy = [d for d in dropped if d.largest_outgoing > 0]
    if not lossy:
        return "exact: no hidden unit with a non-zero outgoing weight was dropped"
    return "\n".join(f"{d.module}: dropped {d.units} hidden unit(s), largest outgoing weight "
                     f"{d.largest_outgoing:.3g}" for d in lossy)


@dataclass(frozen=True)
class WidthChange:
    """The re-shaped weights (Flax variables or a PyTorch state dict) and what was dropped."""

    weights: Any
    dropped: list[DroppedUnits]
    resized: int  # SE modules whose width changed

    @property
    def exact(self) -> bool:
        """True when the network computes what it computed before (up to rounding)."""
        return all(d.largest_outgoing == 0 for d in self.dropped)

    def report(self) -> str:
        """What the change did, in words."""
        return f"{self.resized} SE module(s) resized; {describe(self.dropped)}"


def modules_to_resize(source: dict[Any, tuple], expected: dict[Any, tuple],
                      target: dict[Any, tuple], split: Any, name: Any) -> list[Any]:
    """SE modules whose width differs, after checking that nothing else does.

    `source`, `expected` (from the source model) and `target` map keys to shapes; `split(key)`
    gives `(module, layer)` or None, `name(key)` the key as the user writes it.
    """
    for k in sorted(set(expected) | set(source), key=name):
        if expected.get(k) != source.get(k):
            raise ValueError(f"widen_se: the weights do not belong to from_model: {name(k)} is "
                             f"{source.get(k, 'missing')}, from_model expects "
                             f"{expected.get(k, 'no such key')}")
    if set(target) != set(source):
        k = sorted(set(target) ^ set(source), key=name)[0]
        raise ValueError("widen_se: from_model and to_model differ in more than SE widths: "
                         f"{name(k)} is in only one of them")
    changed = [k for k in source if source[k] != target[k]]
    modules = sorted({split(k)[0] for k in changed if split(k) is not None}, key=str)
    for k in changed:
        parts = split(k)
        if parts is None or parts[1] not in (FC1, FC2):
            raise ValueError(f"widen_se: {name(k)} is {source[k]} in from_model but {target[k]} "
                             "in to_model; only SE excitation widths may differ")
    return modules
