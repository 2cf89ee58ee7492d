"""Reference model registry: same names and errors as the Flax one."""

import pytest
import torch

import se_torch_ref.models as tm
from se_spec.models import MODEL_SPECS


def test_same_registry_as_flax():
    assert tm.list_models() == list(MODEL_SPECS)


def test_flax_only_option_is_refused():
    with pytest.raises(TypeError, match=r"dtype is a Flax-only option"):
        tm.create_model("se_resnet18", dtype="bfloat16")


def test_unknown_model():
    with pytest.raises(ValueError, match=r"unknown model 'seresnet50' \(did you mean se_resnet50"):
        tm.create_model("seresnet50")


@pytest.mark.parametrize("shape,message", [
    ((2, 1, 64, 64), r"input has 1 channels .* expected in_chans=3"),
    ((2, 3, 64), r"input of rank 3"),
    ((2, 3, 64, 20), r"input of size \(64, 20\) \(height, width\) is smaller than the total "
                     r"stride \(32, 32\)"),
])
def test_bad_input(shape, message):
    with pytest.raises(ValueError, match=message):
        tm.create_model("resnet18")(torch.ones(shape))
