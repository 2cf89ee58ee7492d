"""Linen variables ⇄ NNX state: the naming rule, bit-for-bit round trips, strict errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import se_flax
import se_flax.nnx as snnx
from se_flax.convert import ConversionError, flatten, flax_to_torch, unflatten
from se_flax.convert.naming import torch_key


def _abstract(name="se_resnet50", **kwargs):
    return nnx.eval_shape(lambda: snnx.create_model(name, num_classes=10, **kwargs))


def _random_linen(name="se_resnet50", **kwargs):
    """Linen-shaped variables of random values (every leaf distinct)."""
    ref = jax.eval_shape(se_flax.create_model(name, num_classes=10, **kwargs).init,
                         jax.random.PRNGKey(0), jnp.ones((1, 32, 32, 3)))
    rng = np.random.default_rng(0)
    return unflatten({p: rng.standard_normal(a.shape).astype(np.float32)
                      for p, a in flatten(ref).items()})


def test_one_rule_names_nnx_linen_and_pytorch_alike():
    path = ("layer1", 0, "se", "fc1", "kernel")
    linen = snnx.linen_path(path, nnx.Param)
    assert linen == ("params", "layer1_0", "se", "fc1", "kernel")
    assert torch_key(linen) == "layer1.0.se.fc1.weight"
    assert snnx.linen_path(("layer2", 0, "downsample", 1, "var"), nnx.BatchStat) == (
        "batch_stats", "layer2_0", "downsample_1", "var")


def test_round_trip_is_bit_for_bit_and_keeps_dtypes():
    variables = _random_linen()
    variables["params"]["fc"]["bias"] = variables["params"]["fc"]["bias"].astype(jnp.bfloat16)
    model = snnx.linen_to_nnx(_abstract(), variables)
    assert model.layer1[0].se.fc1.kernel.get_value().shape == (1, 1, 256, 16)
    back = flatten(snnx.nnx_to_linen(model))
    given = flatten(variables)
    assert set(back) == set(given)
    for k, v in given.items():
        assert back[k].dtype == v.dtype and np.array_equal(np.asarray(back[k]), v), k


def test_every_nnx_variable_has_a_pytorch_key():
    keys = {torch_key(p) for p in flatten(snnx.nnx_to_linen(_abstract("cbam_resnet18")))}
    assert None not in keys
    assert {"layer1.0.se.spatial.conv.bn.running_var", "layer2.0.downsample.0.weight",
            "fc.weight"} <= keys


def test_missing_unexpected_and_misshapen_variables_are_all_named():
    variables = _random_linen()
    del variables["params"]["layer1_0"]["se"]["fc1"]["bias"]
    variables["batch_stats"]["extra"] = {"mean": np.zeros(3, np.float32)}
    variables["params"]["fc"]["kernel"] = np.zeros((2048, 1000), np.float32)
    variables["intermediates"] = {}
    with pytest.raises(ConversionError) as err:
        snnx.linen_to_nnx(_abstract(), variables)
    message = str(err.value)
    assert "missing variable params/layer1_0/se/fc1/bias (expected shape (16,))" in message
    assert "unexpected variable batch_stats/extra/mean (shape (3,))" in message
    assert "shape mismatch for params/fc/kernel: expected (2048, 10), got (2048, 1000)" in message
    assert "unexpected collection 'intermediates'" in message
    assert "4 problem(s)" in message


def test_a_failed_load_leaves_the_model_unchanged():
    model = snnx.create_attention("cbam", 16, rngs=nnx.Rngs(3))
    before = np.asarray(model.channel.fc2.kernel.get_value())
    variables = jax.tree.map(np.zeros_like, snnx.nnx_to_linen(model))
    variables["params"]["channel"]["fc1"]["kernel"] = np.zeros((3, 3), np.float32)
    with pytest.raises(ConversionError, match="params/channel/fc1/kernel"):
        snnx.linen_to_nnx(model, variables)
    np.testing.assert_array_equal(model.channel.fc2.kernel.get_value(), before)


def test_pytorch_state_dict_names_come_from_the_nnx_model():
    model = _abstract("se_r3d_18")
    zeros = jax.tree.map(lambda a: np.zeros(a.shape, a.dtype), snnx.nnx_to_linen(model))
    state_dict = flax_to_torch(zeros)
    assert state_dict["stem.0.weight"].shape == (64, 3, 3, 7, 7)
    assert state_dict["layer2.0.conv1.1.running_var"].shape == (128,)


def test_a_parameter_outside_any_module_keeps_its_name():
    """ViT's `cls_token`/`pos_embed`: NNX `('cls_token',)` ↔ Linen `params/cls_token` ↔ torch."""
    assert snnx.linen_path(("cls_token",), nnx.Param) == ("params", "cls_token")
    assert torch_key(snnx.linen_path(("pos_embed",), nnx.Param)) == "pos_embed"
    options = {"img_size": 32, "patch_size": 8}
    variables = _random_linen("se_vit_tiny_patch16_224", **options)
    assert "batch_stats" not in variables
    model = snnx.linen_to_nnx(_abstract("se_vit_tiny_patch16_224", **options), variables)
    np.testing.assert_array_equal(model.cls_token.get_value(),
                                  variables["params"]["cls_token"])
    back = flatten(snnx.nnx_to_linen(model))
    assert set(back) == set(flatten(variables))
    for k, v in flatten(variables).items():
        assert np.array_equal(np.asarray(back[k]), v), k
    del variables["params"]["pos_embed"]
    with pytest.raises(ConversionError, match=r"missing variable params/pos_embed \(expected "
                       r"shape \(1, 17, 192\)\)"):
        snnx.linen_to_nnx(_abstract("se_vit_tiny_patch16_224", **options), variables)
