"""Flax (linen) attention layers: SE, EffectiveSE, ECA, CBAM, and a PyTorch-compatible BatchNorm."""

from se_flax.layers.cbam import CBAM
from se_flax.layers.eca import ECA
from se_flax.layers.effective_se import EffectiveSE
from se_flax.layers.norm import BatchNorm
from se_flax.layers.squeeze_excite import SqueezeExcite

__all__ = ["CBAM", "ECA", "BatchNorm", "EffectiveSE", "SqueezeExcite"]
