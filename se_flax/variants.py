"""Registry of named Flax attention variants (specified in `se_spec.variants`)."""

from __future__ import annotations

import functools
from collections.abc import Callable

import flax.linen as nn

from se_flax.layers import CBAM, ECA, EffectiveSE, SqueezeExcite
from se_spec.validation import lookup
from se_spec.variants import VARIANT_SPECS

_CLASSES: dict[str, type[nn.Module]] = {
    "SqueezeExcite": SqueezeExcite, "EffectiveSE": EffectiveSE, "ECA": ECA, "CBAM": CBAM,
}

ATTENTION_VARIANTS: dict[str, Callable[..., nn.Module]] = {
    name: functools.partial(_CLASSES[kind], **options)
    for name, (kind, options) in VARIANT_SPECS.items()
}


def create_attention(name: str, channels: int, **kwargs: object) -> nn.Module:
    """Build the attention variant `name` for `channels` channels (extra options override)."""
    return lookup(ATTENTION_VARIANTS, name, "attention")(channels=channels, **kwargs)
