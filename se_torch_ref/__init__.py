"""se_torch_ref: the PyTorch reference of se_flax's modules (never imports JAX).

Same constructor options and parameter names (timm's where timm has the module) as `se_flax`,
so weights convert with `se_flax.mapping` and the parity harness compares the two.
"""

from se_torch_ref.cbam import CBAM
from se_torch_ref.eca import ECA
from se_torch_ref.effective_se import EffectiveSE
from se_torch_ref.folding import fold_batchnorm
from se_torch_ref.squeeze_excite import SqueezeExcite
from se_torch_ref.variants import ATTENTION_VARIANTS, create_attention

__all__ = ["ATTENTION_VARIANTS", "CBAM", "ECA", "EffectiveSE", "SqueezeExcite",
           "create_attention", "fold_batchnorm"]
