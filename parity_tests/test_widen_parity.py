"""`widen_se` in both frameworks, and a PyTorch checkpoint widened in Flax then exported back."""

import numpy as np
import torch

import se_flax
import se_torch_ref
from se_spec.tolerances import EVAL_TOL, scaled_error

OPTS = {"num_classes": 5, "stem": "cifar"}
WIDE = {"attn_kwargs": {"rd_ratio": 1 / 8}}


def test_torch_widened_network_computes_the_same_logits():
    torch.manual_seed(0)
    narrow = se_torch_ref.create_model("se_resnet18", **OPTS).eval()
    wide = se_torch_ref.create_model("se_resnet18", **OPTS, **WIDE).eval()
    change = se_torch_ref.widen_se(narrow.state_dict(), narrow, wide)
    wide.load_state_dict(change.weights, strict=True)
    x = torch.randn(3, 3, 16, 16)
    with torch.no_grad():
        _, rel = scaled_error(wide(x).numpy(), narrow(x).numpy())
    assert change.exact and rel <= EVAL_TOL


def test_pytorch_checkpoint_widened_in_flax_loads_strictly_and_matches():
    torch.manual_seed(1)
    narrow_t = se_torch_ref.create_model("se_resnet18", **OPTS).eval()
    variables = se_flax.torch_to_flax(narrow_t.state_dict(), "se_resnet18", **OPTS)
    narrow_f = se_flax.create_model("se_resnet18", **OPTS)
    wide_f = se_flax.create_model("se_resnet18", **OPTS, **WIDE)
    widened = se_flax.widen_se(variables, narrow_f, wide_f).weights
    state = se_flax.flax_to_torch(widened, "se_resnet18", **OPTS, **WIDE)
    wide_t = se_torch_ref.create_model("se_resnet18", **OPTS, **WIDE).eval()
    wide_t.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in state.items()},
                           strict=True)
    x = torch.randn(3, 3, 16, 16)
    with torch.no_grad():
        _, rel = scaled_error(wide_t(x).numpy(), narrow_t(x).numpy())
    assert rel <= EVAL_TOL, rel
