"""MobileNetV3 and ViT in Flax: parameter counts, SE widths and gates, options and bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from se_flax.convert import flatten
from se_flax.flops import param_count
from se_flax.models import create_model, list_models
from se_spec.tolerances import EVAL_TOL, scaled_error


def _shapes(model, shape):
    return jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), jnp.ones(shape)))


def _random_variables(model, shape):
    """Random values of the model's variables (running variances positive), without `init`."""
    rng = np.random.default_rng(0)
    template = _shapes(model, shape)
    template = {k: v for k, v in template.items() if k != "intermediates"}
    return jax.tree_util.tree_map_with_path(
        lambda path, s: jnp.asarray(0.1 * rng.standard_normal(s.shape) + (
            path[-1].key == "var"), s.dtype), template)


# torchvision's mobilenet_v3_* and timm's vit_*_patch16_224 (1000 classes).
@pytest.mark.parametrize("name,shape,count", [
    ("mobilenet_v3_large", (1, 32, 32, 3), 5_483_032),
    ("mobilenet_v3_small", (1, 32, 32, 3), 2_542_856),
    ("vit_tiny_patch16_224", (1, 224, 224, 3), 5_717_416),
    ("vit_small_patch16_224", (1, 224, 224, 3), 22_050_664),
])
def test_parameter_counts_match_torchvision_and_timm(name, shape, count):
    assert param_count(_shapes(create_model(name), shape)) == count


def test_registry_lists_the_new_families():
    names = list_models()
    for name in ("mobilenet_v3_large", "mobilenet_v3_small", "vit_tiny_patch16_224",
                 "vit_small_patch16_224", "se_vit_tiny_patch16_224",
                 "se_vit_small_patch16_224"):
        assert name in names


def test_mobilenet_se_widths_are_a_quarter_rounded_to_eight_at_least_ninety_percent():
    params = _shapes(create_model("mobilenet_v3_large"), (1, 32, 32, 3))["params"]
    widths = {k[0]: v.shape for k, v in flatten(params).items() if k[-2:] == ("fc1", "kernel")}
    # expanded width → SE width: 72 → 24 (18 rounds to 16 < 0.9 * 18), 120 → 32, 480 → 120,
    # 672 → 168, 960 → 240; SE in blocks 4-6 and 11-15 (MobileNetV3 paper, Table 1).
    assert widths == {"features_4": (1, 1, 72, 24), "features_5": (1, 1, 120, 32),
                      "features_6": (1, 1, 120, 32), "features_11": (1, 1, 480, 120),
                      "features_12": (1, 1, 672, 168), "features_13": (1, 1, 672, 168),
                      "features_14": (1, 1, 960, 240), "features_15": (1, 1, 960, 240)}


def test_mobilenet_layout_depthwise_kernels_and_batchnorm():
    model = create_model("mobilenet_v3_small", num_classes=10)
    variables = _shapes(model, (1, 32, 32, 3))
    params = variables["params"]
    assert params["features_1"]["block_0_0"]["kernel"].shape == (3, 3, 1, 16)  # depthwise
    assert params["features_2"]["block_1_0"]["kernel"].shape == (3, 3, 1, 72)
    assert params["features_1"]["block_1"]["fc2"]["kernel"].shape == (1, 1, 8, 16)
    assert params["features_12_0"]["kernel"].shape == (1, 1, 96, 576)
    assert params["classifier_0"]["kernel"].shape == (576, 1024)
    assert params["classifier_3"]["kernel"].shape == (1024, 10)
    assert "var" in variables["batch_stats"]["features_0_1"]


def test_mobilenet_gates_are_recorded_and_hard_sigmoid():
    model = create_model("mobilenet_v3_small", num_classes=10, stem="cifar")
    x = jnp.asarray(np.random.default_rng(0).standard_normal((2, 16, 16, 3)), jnp.float32)
    variables = _random_variables(model, x.shape)
    _, state = jax.jit(lambda v, x: model.apply(v, x, mutable=["intermediates"]))(variables, x)
    gates = {k: v for k, v in flatten(state["intermediates"]).items() if k[-1] == "gate"}
    assert len(gates) == 9 and ("features_1", "block_1", "gate") in gates
    g = np.asarray(gates[("features_9", "block_2", "gate")][0])
    assert g.shape == (2, 288) and g.min() >= 0 and g.max() <= 1


def test_mobilenet_without_attention_has_no_se():
    params = _shapes(create_model("mobilenet_v3_small", attn="none"), (1, 32, 32, 3))["params"]
    assert not any("fc1" in k for k in flatten(params))


def test_vit_token_layout_and_se_gates():
    model = create_model("se_vit_tiny_patch16_224", num_classes=10, img_size=32, patch_size=8)
    x = jnp.ones((2, 32, 32, 3))
    variables = _random_variables(model, x.shape)
    params = variables["params"]
    assert params["cls_token"].shape == (1, 1, 192)
    assert params["pos_embed"].shape == (1, 17, 192)  # class token + 4x4 patches
    assert params["patch_embed"]["proj"]["kernel"].shape == (8, 8, 3, 192)
    assert params["blocks_0"]["attn"]["qkv"]["kernel"].shape == (192, 576)
    assert params["blocks_0"]["se"]["fc1"]["kernel"].shape == (1, 192, 16)
    assert "batch_stats" not in variables
    logits, state = jax.jit(lambda v, x: model.apply(v, x, mutable=["intermediates"]))(
        variables, x)
    assert logits.shape == (2, 10) and logits.dtype == jnp.float32
    assert state["intermediates"]["blocks_11"]["se"]["gate"][0].shape == (2, 192)


def test_vit_bf16_compute_keeps_float32_params_and_logits():
    model = create_model("se_vit_tiny_patch16_224", img_size=16, patch_size=8,
                         dtype=jnp.bfloat16)
    x = jnp.ones((1, 16, 16, 3))
    variables = _random_variables(model, x.shape)
    assert {p.dtype for p in jax.tree.leaves(variables["params"])} == {jnp.dtype("float32")}
    assert jax.jit(model.apply)(variables, x).dtype == jnp.float32


@pytest.mark.parametrize("name,kwargs,error,message", [
    ("vit_tiny_patch16_224", {"img_size": 40}, ValueError,
     r"img_size=40 is not a multiple of patch_size=16"),
    ("vit_tiny_patch16_224", {"patch_size": 0}, ValueError,
     r"patch_size=0 is invalid; expected an integer >= 1"),
    ("vit_tiny_patch16_224", {"zero_init_last_bn": True}, ValueError,
     r"zero_init_last_bn=True is invalid; expected False \(a ViT has no BatchNorm\)"),
    ("vit_tiny_patch16_224", {"stem": "cifar"}, ValueError,
     r"stem='cifar' is not supported; expected one of 'patch'"),
    ("mobilenet_v3_small", {"img_size": 32}, TypeError, r"unexpected keyword argument"),
    ("mobilenet_v3_small", {"stem": "r3d"}, ValueError,
     r"stem='r3d' is not supported; expected one of 'imagenet', 'cifar'"),
])
def test_bad_options_name_the_option(name, kwargs, error, message):
    with pytest.raises(error, match=message):
        create_model(name, **kwargs)


@pytest.mark.parametrize("name,kwargs,shape,message", [
    ("vit_tiny_patch16_224", {"img_size": 32}, (1, 48, 48, 3),
     r"input of size \(48, 48\) \(height, width\); expected \(32, 32\), the model's img_size"),
    ("vit_tiny_patch16_224", {"img_size": 32}, (1, 32, 32, 1), r"expected in_chans=3"),
    ("mobilenet_v3_small", {}, (1, 16, 16, 3), r"smaller than the total stride \(32, 32\)"),
    ("mobilenet_v3_small", {"stem": "cifar"}, (1, 8, 8, 3),
     r"smaller than the total stride \(16, 16\)"),
])
def test_bad_input_is_named(name, kwargs, shape, message):
    with pytest.raises(ValueError, match=message):
        _shapes(create_model(name, **kwargs), shape)


def test_widen_se_of_a_vit_keeps_its_outputs():
    from se_flax import widen_se

    kwargs = {"img_size": 16, "patch_size": 8, "num_classes": 10}
    narrow = create_model("se_vit_tiny_patch16_224", **kwargs)
    wide = create_model("se_vit_tiny_patch16_224", attn_kwargs={"rd_ratio": 1 / 8}, **kwargs)
    variables = _random_variables(narrow, (1, 16, 16, 3))
    change = widen_se(variables, narrow, wide)  # input shape from the model's img_size
    assert change.exact and change.weights["params"]["blocks_0"]["se"]["fc1"]["kernel"].shape \
        == (1, 192, 24)
    x = jnp.asarray(np.random.default_rng(1).standard_normal((2, 16, 16, 3)), jnp.float32)
    with jax.default_matmul_precision("highest"):
        _, rel = scaled_error(jax.jit(wide.apply)(change.weights, x),
                              jax.jit(narrow.apply)(variables, x))
    # the added SE units have zero outgoing weights: only float32 summation order differs
    assert rel <= EVAL_TOL, rel
