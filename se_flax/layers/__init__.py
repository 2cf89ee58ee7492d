"""Flax (linen) layers: SE, EffectiveSE, ECA, CBAM, Selective Kernel and a PyTorch BatchNorm."""

from se_flax.layers.cbam import CBAM
from se_flax.layers.eca import ECA
from se_flax.layers.effective_se import EffectiveSE
from se_flax.layers.norm import BatchNorm
from se_flax.layers.selective_kernel import SelectiveKernel
from se_flax.layers.squeeze_excite import SqueezeExcite

__all__ = ["CBAM", "ECA", "BatchNorm", "EffectiveSE", "SelectiveKernel", "SqueezeExcite"]
