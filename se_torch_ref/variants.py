"""Registry of named PyTorch attention variants (same names as `se_flax.variants`)."""

from __future__ import annotations

import functools
from collections.abc import Callable

from torch import nn

from se_spec.validation import lookup
from se_spec.variants import VARIANT_SPECS
from se_torch_ref.cbam import CBAM
from se_torch_ref.eca import ECA
from se_torch_ref.effective_se import EffectiveSE
from se_torch_ref.squeeze_excite import SqueezeExcite

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
