"""Checkpoints that wrap their state dict: unwrapped once, into NumPy arrays, with notes.

Training scripts store the state dict under a key (`{"state_dict": ...}`, `{"model": ...}`) and
wrappers prefix every key (`module.` from DataParallel/DDP, `_orig_mod.` from `torch.compile`,
`model.` from Lightning). Both are undone here and reported as notes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from se_flax.convert.errors import ConversionError
from se_flax.convert.tensors import is_array, to_numpy

# Keys under which training scripts store the state dict, in order of preference.
WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "module", "net", "network")
# Prefixes that wrappers add to every key.
WRAPPER_PREFIXES = ("module.", "_orig_mod.", "model.")


def unwrap_state_dict(checkpoint: Any) -> tuple[dict[str, np.ndarray], list[str]]:
    """The state dict inside `checkpoint` as NumPy arrays, plus notes on what was unwrapped.

    Accepts a plain state dict, or one held under `WRAPPER_KEYS` (possibly nested), and strips
    any of `WRAPPER_PREFIXES` that every key shares. Anything else raises a `ConversionError`.
    """
    notes: list[str] = []
    obj, where = checkpoint, "checkpoint"
    while True:
        if not isinstance(obj, Mapping):
            raise ConversionError([f"{where} is a {type(obj).__name__}, not a state dict (a "
                                   "mapping of names to tensors)"], "reading the state dict")
        if all(is_array(v) for v in obj.values()):
            break
        wrapper = next((k for k in WRAPPER_KEYS if isinstance(obj.get(k), Mapping)), None)
        if wrapper is None:
            others = [str(k) for k, v in obj.items() if not is_array(v)]
            raise ConversionError(
                [f"{where} is not a state dict: entries {', '.join(others[:8])} are not "
                 f"tensors, and none of {', '.join(WRAPPER_KEYS)} holds one"],
                "reading the state dict")
        ignored = sorted(str(k) for k in obj if k != wrapper)
        notes.append(f"unwrapped {where}[{wrapper!r}]"
                     + (f" (ignored {', '.join(ignored)})" if ignored else ""))
        obj, where = obj[wrapper], f"{where}[{wrapper!r}]"
    state = {str(k): to_numpy(v) for k, v in obj.items()}
    return strip_prefixes(state, notes)


def strip_prefixes(state: dict[str, Any], notes: list[str] | None = None
                   ) -> tuple[dict[str, Any], list[str]]:
    """Remove any of `WRAPPER_PREFIXES` shared by every key (repeatedly), noting each."""
    notes = [] if notes is None else notes
    while state:
        prefix = next((p for p in WRAPPER_PREFIXES if all(k.startswith(p) for k in state)), None)
        if prefix is None:
            break
        state = {k[len(prefix):]: v for k, v in state.items()}
        notes.append(f"stripped the prefix {prefix!r} shared by all {len(state)} keys")
    return state, notes
