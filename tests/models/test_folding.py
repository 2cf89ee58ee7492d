"""BatchNorm folding in Flax: folded == unfolded in eval mode, within the fp32 tolerance."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from se_flax.convert import flatten, flax_to_torch, model_template, unflatten
from se_flax.folding import find_conv_bn_pairs, fold_batchnorm, folded_apply
from se_flax.models import create_model
from se_spec.tolerances import EVAL_TOL
from se_spec.tolerances import scaled_error as _scaled_error


def trained_like_variables(name, seed=0, dtype=np.float32, **kwargs):
    """LeCun-normal kernels, small biases, BatchNorm affine and statistics away from 1/0."""
    rng = np.random.default_rng(seed)
    out = {}
    for p, s in flatten(model_template(name, **kwargs)).items():
        if p[-1] == "kernel":
            v = rng.standard_normal(s.shape) / np.sqrt(np.prod(s.shape[:-1]))
        elif p[-1] in ("scale", "var"):
            v = 0.5 + rng.random(s.shape)
        else:
            v = 0.2 * rng.standard_normal(s.shape)
        out[p] = v.astype(dtype)
    return unflatten(out)


def scaled_error(ours, ref):
    return _scaled_error(ours, ref)[1]


@pytest.mark.parametrize("name,pairs", [("se_resnet18", 20), ("cbam_resnet18", 28)])
def test_folded_matches_unfolded(name, pairs):
    model = create_model(name)
    variables = trained_like_variables(name)
    folded = fold_batchnorm(model, variables)
    assert len(find_conv_bn_pairs(model, variables)) == pairs
    assert "batch_stats" not in folded                   # every BatchNorm follows a conv
    state = flax_to_torch(folded)
    assert "conv1.bias" in state and "bn1.weight" not in state
    assert "layer1.0.downsample.0.bias" not in state     # resnet18's layer1 has none
    assert "layer2.0.downsample.0.bias" in state and "layer2.0.downsample.1.weight" not in state
    attention = {k: v for k, v in flatten(variables["params"]).items() if "se" in k and
                 "conv" not in k}
    for path, value in attention.items():                # SE/CBAM MLP weights are untouched
        np.testing.assert_array_equal(flatten(folded["params"])[path], value)
    x = jnp.asarray(np.random.default_rng(1).standard_normal((2, 64, 64, 3)), jnp.float32)
    with jax.default_matmul_precision("highest"):
        ref = jax.jit(lambda v, x: model.apply(v, x))(variables, x)
        got = jax.jit(functools.partial(folded_apply, model))(folded, x)
    assert scaled_error(got, ref) <= EVAL_TOL


def test_folding_is_exact_in_float64():
    options = {"stem": "cifar", "num_classes": 10}
    model = create_model("resnet18", **options)
    variables = trained_like_variables("resnet18", dtype=np.float64, **options)
    x = np.random.default_rng(2).standard_normal((2, 8, 8, 3))
    with jax.enable_x64(True):
        ref = model.apply(variables, x)
        got = folded_apply(model, fold_batchnorm(model, variables), x)
    assert ref.dtype == jnp.float64 and scaled_error(got, ref) < 1e-13


def test_a_module_without_registry_attributes_needs_a_sample_input():
    from se_flax.layers import CBAM

    module = CBAM(64)
    x = jnp.ones((1, 4, 4, 64))
    variables = module.init(jax.random.PRNGKey(0), x)
    with pytest.raises(ValueError, match="pass sample_input"):
        fold_batchnorm(module, variables)
    pairs = find_conv_bn_pairs(module, variables, x)
    assert pairs == [(("spatial", "conv", "conv"), ("spatial", "conv", "bn"), 1e-5)]
