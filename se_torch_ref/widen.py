"""`widen_se` for PyTorch state dicts: the twin of `se_flax.widen_se` (same rule, same report).

PyTorch keeps the hidden units on axis 0 of `fc1.weight` (`(rd, C, 1, 1)` or `(rd, C)`) and on
axis 1 of `fc2.weight`. The rule itself lives in `se_spec.widening`.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from se_spec.widening import (
    FC1,
    FC2,
    Excitation,
    WidthChange,
    modules_to_resize,
    resize_hidden,
)


def _split(key: str) -> tuple[str, str] | None:
    """`"layer1.0.se.fc1.weight"` → `("layer1.0.se", "fc1")`."""
    parts = key.rsplit(".", 2)
    return (parts[0], parts[1]) if len(parts) == 3 else None


def widen_se(state_dict: dict[str, torch.Tensor], from_model: nn.Module, to_model: nn.Module,
             *, seed: int = 0, init_scale: float = 1e-2) -> WidthChange:
    """`state_dict` of `from_model` re-shaped for `to_model`, which differs in SE widths only.

    Returns a `WidthChange` whose `.weights` is a state dict that `to_model` loads strictly.
    """
    source = {k: v.detach().cpu() for k, v in state_dict.items()}
    expected = {k: tuple(v.shape) for k, v in from_model.state_dict().items()}
    target = {k: tuple(v.shape) for k, v in to_model.state_dict().items()}
    modules = modules_to_resize({k: tuple(v.shape) for k, v in source.items()}, expected, target,
                                _split, str)
    out = dict(source)
    rng = np.random.default_rng(seed)
    dropped = []
    for m in modules:
        w1 = source[f"{m}.{FC1}.weight"].numpy()
        w2 = source[f"{m}.{FC2}.weight"].numpy()
        if w2.shape[1] != w1.shape[0]:
            raise ValueError(f"widen_se: {m} has a grouped excitation ({tuple(w1.shape)} → "
                             f"{tuple(w2.shape)}); only groups=1 can be resized")
        bias_key = f"{m}.{FC1}.bias"
        b1 = source[bias_key].numpy() if bias_key in source else None
        new, lost = resize_hidden(m, Excitation(w1, b1, w2, 0, 1),
                                  target[f"{m}.{FC1}.weight"][0], rng, init_scale)
        out[f"{m}.{FC1}.weight"] = torch.from_numpy(np.ascontiguousarray(new.fc1_weight))
        out[f"{m}.{FC2}.weight"] = torch.from_numpy(np.ascontiguousarray(new.fc2_weight))
        if b1 is not None:
            out[bias_key] = torch.from_numpy(np.ascontiguousarray(new.fc1_bias))
        if lost is not None:
            dropped.append(lost)
    return WidthChange(out, dropped, len(modules))
