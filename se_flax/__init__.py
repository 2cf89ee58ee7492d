"""se_flax: Squeeze-and-Excitation networks in JAX/Flax (Linen). Never imports PyTorch.

Attention layers (`SqueezeExcite`, `EffectiveSE`, `ECA`, `CBAM`) and their named variants, the
Selective Kernel unit (`SelectiveKernel`), a PyTorch-compatible `BatchNorm`, the model registry
(`create_model`, `list_models`), whole-network PyTorch ⇄ Flax weight conversion
(`torch_to_flax`, `flax_to_torch`; more in `se_flax.convert`) and inference BatchNorm folding.
The ResNet and R3D families also exist as native Flax NNX modules: `se_flax.nnx`.
"""

from se_flax.convert import flax_to_torch, torch_to_flax
from se_flax.folding import fold_batchnorm, folded_apply
from se_flax.implementation import Implementation
from se_flax.layers import CBAM, ECA, BatchNorm, EffectiveSE, SelectiveKernel, SqueezeExcite
from se_flax.models import create_model, list_models
from se_flax.variants import ATTENTION_VARIANTS, create_attention
from se_flax.widen import widen_se

__all__ = ["ATTENTION_VARIANTS", "BatchNorm", "CBAM", "ECA", "EffectiveSE", "Implementation",
           "SelectiveKernel", "SqueezeExcite", "create_attention", "create_model",
           "flax_to_torch", "fold_batchnorm", "folded_apply", "list_models", "torch_to_flax",
           "widen_se"]
__version__ = "0.1.0"
