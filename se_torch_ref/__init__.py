"""se_torch_ref: the PyTorch reference of the se_flax networks (never imports JAX or se_flax).

The same layers, models, constructor options and variant names as `se_flax` — both resolve them
in `se_spec` — with timm's and torchvision's parameter names, so checkpoints of those libraries
load with `strict=True` and `se_flax.convert` maps every weight by one rule.
"""

from se_torch_ref.cbam import CBAM
from se_torch_ref.eca import ECA
from se_torch_ref.effective_se import EffectiveSE
from se_torch_ref.folding import fold_batchnorm
from se_torch_ref.models import create_model, list_models
from se_torch_ref.selective_kernel import SelectiveKernel
from se_torch_ref.squeeze_excite import SqueezeExcite
from se_torch_ref.variants import ATTENTION_VARIANTS, create_attention
from se_torch_ref.widen import widen_se

__all__ = ["ATTENTION_VARIANTS", "CBAM", "ECA", "EffectiveSE", "SelectiveKernel", "SqueezeExcite",
           "create_attention", "create_model", "fold_batchnorm", "list_models", "widen_se"]
