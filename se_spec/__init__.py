"""se_spec: what the Flax models and their PyTorch reference share, free of any framework.

Option choices and validation of the attention layers (`se_spec.attention`), the named variants
(`se_spec.variants`), the model registry (`se_spec.models`), variable and gate names
(`se_spec.variables`) and the parity tolerances (`se_spec.tolerances`). Imports neither JAX nor
PyTorch: `se_flax` and `se_torch_ref` both build on it, and neither imports the other.
"""

from se_spec.models import MODEL_SPECS, ModelSpec, list_models, model_spec, resolve_options
from se_spec.tolerances import EVAL_TOL, TRAIN_TOL, scaled_error
from se_spec.variants import VARIANT_SPECS

__all__ = ["EVAL_TOL", "MODEL_SPECS", "TRAIN_TOL", "VARIANT_SPECS", "ModelSpec", "list_models",
           "model_spec", "resolve_options", "scaled_error"]
