"""se_flax.nnx: the models and layers of `se_flax` as native Flax NNX modules.

Same names, options, validation and numbers as the Linen modules; attributes follow PyTorch's
module names (`model.layer1[0].se.fc1.kernel` ↔ `layer1.0.se.fc1.weight` ↔ Linen
`layer1_0/se/fc1/kernel`). Attention gates and Selective Kernel selection weights are recorded
under `nnx.capture(model, nnx.Intermediate)`. `linen_to_nnx` / `nnx_to_linen` move weights
between the two APIs bit for bit; `functional_model` puts an NNX model behind Linen's
`init`/`apply` (the training program's `--api nnx`).
"""

from se_flax.nnx.cbam import CBAM
from se_flax.nnx.convert import linen_path, linen_to_nnx, nnx_to_linen
from se_flax.nnx.eca import ECA
from se_flax.nnx.effective_se import EffectiveSE
from se_flax.nnx.functional import FunctionalModel, functional_model
from se_flax.nnx.models import create_model, list_models
from se_flax.nnx.norm import BatchNorm
from se_flax.nnx.selective_kernel import SelectiveKernel
from se_flax.nnx.squeeze_excite import SqueezeExcite
from se_flax.nnx.variants import ATTENTION_VARIANTS, create_attention

__all__ = ["ATTENTION_VARIANTS", "BatchNorm", "CBAM", "ECA", "EffectiveSE", "FunctionalModel",
           "SelectiveKernel", "SqueezeExcite", "create_attention", "create_model",
           "functional_model", "linen_path", "linen_to_nnx", "list_models", "nnx_to_linen"]
