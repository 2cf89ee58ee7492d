"""The naming rule between PyTorch state-dict keys and Flax variable paths.

A Flax module path is the PyTorch module path with every numeric segment glued to the name
before it by `_`: `layer1.0.se.fc1` ↔ `layer1_0/se/fc1`, `downsample.0` ↔ `downsample_0`.
Leaves: conv/linear `weight` ↔ `params/…/kernel`, BatchNorm `weight` ↔ `params/…/scale`,
`bias` ↔ `params/…/bias`, `running_mean` ↔ `batch_stats/…/mean`, `running_var` ↔
`batch_stats/…/var`, `cls_token` ↔ `params/cls_token` and `pos_embed` ↔ `params/pos_embed`
(same shapes, `(1, 1, C)` / `(1, L, C)`); `num_batches_tracked` has no Flax twin (dropped on
import, recreated on export).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from se_spec.variables import BATCH_STATS, PARAMS

Path = tuple[str, ...]

# (collection, leaf) of a Flax variable → torch parameter suffix.
FLAX_TO_TORCH_LEAF = {
    (PARAMS, "kernel"): "weight",
    (PARAMS, "scale"): "weight",
    (PARAMS, "bias"): "bias",
    (BATCH_STATS, "mean"): "running_mean",
    (BATCH_STATS, "var"): "running_var",
    # Parameters that are not a layer's (ViT): the same name on both sides, no transposition.
    (PARAMS, "cls_token"): "cls_token",
    (PARAMS, "pos_embed"): "pos_embed",
}
DROPPED_TORCH_LEAVES = ("num_batches_tracked",)


def flax_name(torch_module_path: str) -> Path:
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


def torch_key(path: Path) -> str | None:
    """The state-dict key of a Flax variable path (`('params', 'fc', 'kernel')` → `fc.weight`).

    None when the path has no PyTorch twin (an unknown collection or leaf).
    """
    collection, *modules, leaf = path
    suffix = FLAX_TO_TORCH_LEAF.get((collection, leaf))
    return None if suffix is None else f"{torch_name(modules)}.{suffix}".lstrip(".")


def flatten(tree: Mapping[str, Any], prefix: Path = ()) -> dict[Path, Any]:
    """Nested dict → `{path tuple: leaf}`."""
    flat: dict[Path, Any] = {}
    for k, v in tree.items():
        if isinstance(v, Mapping):
            flat.update(flatten(v, (*prefix, str(k))))
        else:
            flat[(*prefix, str(k))] = v
    return flat


def unflatten(flat: Mapping[Path, Any]) -> dict[str, Any]:
    """`{path tuple: leaf}` → nested dict."""
    tree: dict[str, Any] = {}
    for path, leaf in flat.items():
        node = tree
        for p in path[:-1]:
            node = node.setdefault(p, {})
        node[path[-1]] = leaf
    return tree
