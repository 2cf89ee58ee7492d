"""PyTorch state dicts → NNX (through `torch_to_flax` then `linen_to_nnx`) and back.

The weights travel bit for bit in both directions; the NNX model's eval logits, gates and
Selective Kernel selection weights (ResNet, CBAM, SK, MobileNetV3, SE-ViT) match the PyTorch
reference within the eval tolerance (different frameworks, different programs).
"""

import jax
import numpy as np
import pytest
import torch
from flax import nnx

import se_flax.nnx as snnx
import se_torch_ref
from se_flax import flax_to_torch, torch_to_flax
from se_spec.tolerances import EVAL_TOL, scaled_error

CIFAR = {"stem": "cifar"}
VIT = {"img_size": 32, "patch_size": 8}
# (model, options, input side, (module path of the recorded value, PyTorch attribute, NNX name))
CASES = [
    ("se_resnet18", CIFAR, 16, (("layer1", 0, "se"), "last_gate", "gate")),
    ("cbam_resnet18", CIFAR, 16, (("layer1", 0, "se"), "last_gate", "gate")),
    ("sk_resnet18", CIFAR, 16,  # (N, paths, C) in both frameworks
     (("layer1", 0, "conv1"), "last_selection", "selection")),
    ("mobilenet_v3_small", CIFAR, 16,  # its own MobileNetV3 SE (hard-sigmoid gate)
     (("features", 1, "block", 1), "last_gate", "gate")),
    ("se_vit_tiny_patch16_224", VIT, 32, (("blocks", 0, "se"), "last_gate", "gate")),
]


def _walk(node, path):
    for part in path:
        node = node[part] if isinstance(part, int) or isinstance(node, dict) else \
            getattr(node, part)
    return node


@pytest.mark.parametrize("name,options,side,recorded", CASES)
def test_a_pytorch_checkpoint_runs_in_nnx_and_comes_back_unchanged(name, options, side,
                                                                   recorded):
    torch.manual_seed(0)
    reference = se_torch_ref.create_model(name, num_classes=10, **options).eval()
    for module in reference.modules():  # running statistics that eval mode really uses
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.normal_(0, 0.1)
            module.running_var.uniform_(0.5, 1.5)
    state_dict = {k: v.numpy() for k, v in reference.state_dict().items()}
    model = nnx.eval_shape(lambda: snnx.create_model(name, num_classes=10, **options))
    snnx.linen_to_nnx(model, torch_to_flax(state_dict, name, num_classes=10, **options))

    back = flax_to_torch(snnx.nnx_to_linen(model), name)
    assert set(back) == set(state_dict)
    for k, v in state_dict.items():
        assert np.array_equal(np.asarray(back[k]), v), k

    x = np.random.default_rng(0).standard_normal((2, 3, side, side)).astype(np.float32)
    with torch.no_grad():
        expected = reference(torch.from_numpy(x)).numpy()
    module_path, torch_attr, nnx_name = recorded
    gate_ref = getattr(_walk(reference, module_path), torch_attr).numpy()
    graphdef, state = nnx.split(model)

    @jax.jit
    def run(state, x):
        return nnx.capture(nnx.merge(graphdef, state), nnx.Intermediate)(x, train=False)

    with jax.default_matmul_precision("highest"):
        logits, caps = run(state, x.transpose(0, 2, 3, 1))
    assert scaled_error(logits, expected)[1] <= EVAL_TOL
    gate = _walk(caps, module_path)[nnx_name].get_value()[0]
    assert gate.shape == gate_ref.shape
    assert scaled_error(gate, gate_ref)[1] <= EVAL_TOL


@pytest.mark.slow
def test_a_timm_se_resnet50_state_dict_gives_the_linen_logits_in_nnx():
    """timm's `seresnet50` keys (ImageNet stem, 1000 classes), loaded strictly into both APIs."""
    import se_flax
    from parity_tests.networks import randomize_

    torch.manual_seed(0)
    state_dict = {k: v.numpy() for k, v in randomize_(
        se_torch_ref.create_model("se_resnet50")).state_dict().items()}
    assert "layer1.0.se.fc1.weight" in state_dict and "fc.weight" in state_dict  # timm's names
    variables = torch_to_flax(state_dict, "se_resnet50", layout="timm", strict=True)
    model = snnx.linen_to_nnx(nnx.eval_shape(lambda: snnx.create_model("se_resnet50")),
                              variables)
    x = np.random.default_rng(0).standard_normal((2, 64, 64, 3)).astype(np.float32)
    linen = se_flax.create_model("se_resnet50")
    graphdef, state = nnx.split(model)
    with jax.default_matmul_precision("highest"):
        ref = jax.jit(lambda v, x: linen.apply(v, x, train=False))(variables, x)
        ours = jax.jit(lambda s, x: nnx.merge(graphdef, s)(x, train=False))(state, x)
    assert np.array_equal(np.asarray(ours), np.asarray(ref))
