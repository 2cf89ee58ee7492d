"""se_flax: Squeeze-and-Excitation networks in JAX/Flax (linen).

Attention layers (`SqueezeExcite`, `EffectiveSE`, `ECA`, `CBAM`), a PyTorch-compatible
`BatchNorm`, named variants, whole-network PyTorch ⇄ Flax weight conversion (`torch_to_flax`,
`flax_to_torch`) and inference BatchNorm folding. Never imports PyTorch.
Attributes are loaded on first use, so `se_flax.spec` and `se_flax.mapping` stay importable
without JAX being initialised.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "SqueezeExcite": "se_flax.layers",
    "EffectiveSE": "se_flax.layers",
    "ECA": "se_flax.layers",
    "CBAM": "se_flax.layers",
    "BatchNorm": "se_flax.layers",
    "ATTENTION_VARIANTS": "se_flax.variants",
    "create_attention": "se_flax.variants",
    "torch_to_flax": "se_flax.convert",
    "flax_to_torch": "se_flax.convert",
    "fold_batchnorm": "se_flax.folding",
    "folded_apply": "se_flax.folding",
}

__all__ = sorted(_LAZY)
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    """Import public names on first access."""
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'se_flax' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
