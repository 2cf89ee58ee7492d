"""The PyTorch ⇄ Flax naming and layout rules, with NumPy arrays only."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import se_flax
from se_flax.convert import ConversionError, flax_name, flax_to_torch, torch_name, torch_to_flax
from se_flax.convert.layouts import ARTICLE_SE_RENAMES


def _variables(module, shape=(2, 5, 5, 64)):
    v = module.init(jax.random.PRNGKey(0), jnp.ones(shape))
    return jax.tree.map(np.asarray, {k: v for k, v in v.items() if k != "intermediates"})


@pytest.mark.parametrize("torch_path,flax_path", [
    ("layer1.0.se.fc1", ("layer1_0", "se", "fc1")),
    ("layer1.0.downsample.0", ("layer1_0", "downsample_0")),
    ("stem.0", ("stem_0",)),
    ("layer2.1.conv1.0", ("layer2_1", "conv1_0")),
    ("fc", ("fc",)),
])
def test_naming_rule_both_ways(torch_path, flax_path):
    assert flax_name(torch_path) == flax_path
    assert torch_name(flax_path) == torch_path


@pytest.mark.parametrize("variant", list(se_flax.ATTENTION_VARIANTS))
def test_round_trip_is_bit_exact(variant):
    variables = _variables(se_flax.create_attention(variant, 64))
    state = flax_to_torch(variables)
    back = torch_to_flax(state, variables)
    for a, b in zip(jax.tree.leaves(variables), jax.tree.leaves(back), strict=True):
        assert a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b)
    again = flax_to_torch(back)
    assert state.keys() == again.keys()
    assert all(np.array_equal(state[k], again[k]) for k in state)


def test_torch_layouts():
    state = flax_to_torch(_variables(se_flax.SqueezeExcite(64)))
    assert state["fc1.weight"].shape == (8, 64, 1, 1) and state["fc1.bias"].shape == (8,)
    state = flax_to_torch(_variables(se_flax.SqueezeExcite(64, excite="linear")))
    assert state["fc1.weight"].shape == (8, 64)
    cbam = flax_to_torch(_variables(se_flax.CBAM(64)))
    assert cbam["spatial.conv.conv.weight"].shape == (1, 2, 7, 7)
    assert cbam["spatial.conv.bn.num_batches_tracked"].dtype == np.int64
    assert flax_to_torch(_variables(se_flax.ECA(64)))["conv.weight"].shape == (1, 1, 3)


@pytest.mark.parametrize("dtype", [np.float16, np.float32, "bfloat16"])
def test_dtype_is_preserved(dtype):
    template = _variables(se_flax.SqueezeExcite(64))
    state = {k: v.astype(jnp.dtype(dtype)) for k, v in flax_to_torch(template).items()}
    out = torch_to_flax(state, template)
    assert out["params"]["fc1"]["kernel"].dtype == jnp.dtype(dtype)


def test_linear_weights_load_into_conv_kernels_and_back():
    conv_t = _variables(se_flax.SqueezeExcite(64))
    lin = flax_to_torch(_variables(se_flax.SqueezeExcite(64, excite="linear")))
    loaded = torch_to_flax(lin, conv_t)
    np.testing.assert_array_equal(loaded["params"]["fc1"]["kernel"][0, 0],
                                  lin["fc1.weight"].T)


def test_article_keys_are_renamed():
    template = _variables(se_flax.create_attention("se_article", 64))
    article = {"fc.0.weight": np.ones((4, 64), np.float32),
               "fc.2.weight": np.full((64, 4), 2, np.float32)}
    out = torch_to_flax(article, template, renames=ARTICLE_SE_RENAMES)
    assert out["params"]["fc2"]["kernel"].shape == (4, 64)
    assert (out["params"]["fc2"]["kernel"] == 2).all()


def test_every_problem_is_listed_in_one_error():
    template = _variables(se_flax.SqueezeExcite(64))
    state = flax_to_torch(template)
    del state["fc1.bias"]
    state["fc2.weight"] = np.zeros((64, 9, 1, 1), np.float32)
    state["fc3.weight"] = np.zeros(3, np.float32)
    with pytest.raises(ConversionError) as info:
        torch_to_flax(state, template)
    msg = str(info.value)
    assert "3 problem(s)" in msg
    assert "missing key fc1.bias" in msg
    assert "unexpected key fc3.weight" in msg
    assert "shape mismatch for fc2.weight: expected (64, 8, 1, 1), got (64, 9, 1, 1)" in msg


def test_non_strict_reports_instead_of_raising():
    template = _variables(se_flax.SqueezeExcite(64))
    state = flax_to_torch(template)
    del state["fc1.bias"]
    out, report = torch_to_flax(state, template, strict=False, return_report=True)
    assert report.missing == ["fc1.bias"] and not report.unexpected
    np.testing.assert_array_equal(out["params"]["fc1"]["bias"], template["params"]["fc1"]["bias"])


def test_num_batches_tracked_is_dropped_not_unexpected():
    template = _variables(se_flax.CBAM(64))
    _, report = torch_to_flax(flax_to_torch(template), template, return_report=True)
    assert report.dropped == ["spatial.conv.bn.num_batches_tracked"]
