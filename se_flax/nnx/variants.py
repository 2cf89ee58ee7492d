"""Registry of named NNX attention variants (specified in `se_spec.variants`, as for Linen)."""

from __future__ import annotations

import functools
from collections.abc import Callable

from flax import nnx

from se_flax.nnx.cbam import CBAM
from se_flax.nnx.eca import ECA
from se_flax.nnx.effective_se import EffectiveSE
from se_flax.nnx.squeeze_excite import SqueezeExcite
from se_spec.validation import lookup
from se_spec.variants import VARIANT_SPECS

_CLASSES: dict[str, type[nnx.Module]] = {
    "SqueezeExcite": SqueezeExcite, "EffectiveSE": EffectiveSE, "ECA": ECA, "CBAM": CBAM,
}

ATTENTION_VARIANTS: dict[str, Callable[..., nnx.Module]] = {
    name: functools.partial(_CLASSES[kind], **options)
    for name, (kind, options) in VARIANT_SPECS.items()
}


def create_attention(name: str, channels: int, *, rngs: nnx.Rngs | None = None,
                     **kwargs: object) -> nnx.Module:
    """Build the NNX attention variant `name` for `channels` channels (extra options override)."""
    factory = lookup(ATTENTION_VARIANTS, name, "attention")
    return factory(channels=channels, rngs=rngs if rngs is not None else nnx.Rngs(0), **kwargs)
