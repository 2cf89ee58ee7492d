"""`widen_se` for PyTorch state dicts: the twin of `se_flax.widen_se` (same rule, same report).

PyTorch keeps the hidden units on axis 0 of `fc1.weight` (`(rd, C, 1, 1)` or `(rd, C)`) and on
axis 1 of `fc2.weight`. The rule itself lives in `se_spec.widening`.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from se_spec.widening import FC1, FC2, Excitation, WidthChange, resize_hidden


def widen_se(state_dict: dict[str, torch.Tensor], from_model: nn.Module, to_model: nn.Module,
             *, seed: int = 0, init_scale: float = 1e-2) -> WidthChange:
    """`state_dict` of `from_model` re-shaped for `to_model`, which differs in SE widths only.

    Returns a `WidthChange` whose `.weights` is a state dict that `to_model` loads strictly.
    """
    source = {k: v.detach().cpu() for k, v in state_dict.items()}
    expected = {k: tuple(v.shape) for k, v in from_model.state_dict().items()}
    target = {k: tuple(v.shape) for k, v in to_model.state_dict().items()}
    for k in sorted(set(expected) | set(source)):
        got = tuple(source[k].shape) if k in source else "missing"
        if expected.get(k) != (got if k in source else None):
            raise ValueError(f"widen_se: state dict does not belong to from_model: {k} is {got}, "
                             f"from_model expects {expected.get(k, 'no such key')}")
    if set(target) != set(source):
        k = sorted(set(target) ^ set(source))[0]
        raise ValueError(f"widen_se: from_model and to_model differ in more than SE widths: "
                         f"{k} is in only one of them")
    modules = sorted({k.rsplit(".", 2)[0] for k in source
                      if tuple(source[k].shape) != target[k]})
    for k in source:
        parts = k.rsplit(".", 2)
        if tuple(source[k].shape) != target[k] and not (
                len(parts) == 3 and parts[1] in (FC1, FC2) and parts[0] in modules):
            raise ValueError(f"widen_se: {k} is {tuple(source[k].shape)} in from_model but "
                             f"{target[k]} in to_model; only SE excitation widths may differ")
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
