"""PyTorch ⇄ Flax weight conversion for every registered model. Never imports torch.

One module per concern, imported in this order (no cycle): `naming` (PyTorch keys ↔ Flax paths),
`errors` (`ConversionError`, `ConversionReport`), `tensors` (the layout rule for one tensor, NumPy
from any framework), `state` (whole dicts by those rules), `layouts` (timm / torchvision / article
checkpoints), `unwrap` (wrapped checkpoints and key prefixes), `templates` (what a model expects),
`network` (`torch_to_flax`, `flax_to_torch`, `validate_variables`), `files` (weight files) and
`cli` (`se-convert`).
"""

from se_flax.convert.errors import ConversionError, ConversionReport
from se_flax.convert.files import (
    CheckpointError,
    UnsafeCheckpointError,
    load_torch_checkpoint,
    read_state_dict,
    read_variables,
    write_state_dict,
    write_variables,
)
from se_flax.convert.layouts import LAYOUTS
from se_flax.convert.naming import flatten, flax_name, torch_name, unflatten
from se_flax.convert.network import flax_to_torch, torch_to_flax, validate_variables
from se_flax.convert.templates import init_variables, model_template

__all__ = ["LAYOUTS", "CheckpointError", "ConversionError", "ConversionReport",
           "UnsafeCheckpointError", "flatten", "flax_name", "flax_to_torch", "init_variables",
           "load_torch_checkpoint", "model_template", "read_state_dict", "read_variables",
           "torch_name", "torch_to_flax", "unflatten", "validate_variables", "write_state_dict",
           "write_variables"]
