"""Flax model registry, options and bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from se_flax.flops import model_cost
from se_flax.models import create_model, list_models


def _init(model, shape):
    return jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), jnp.ones(shape)))


def test_registry_names():
    names = list_models()
    for depth in (18, 34, 50, 101, 152):
        assert f"resnet{depth}" in names and f"se_resnet{depth}" in names


@pytest.mark.parametrize("name,count", [("resnet50", 25_557_032), ("se_resnet50", 28_088_024),
                                        ("se_resnet18", 11_779_624)])
def test_parameter_counts_match_timm(name, count):
    assert model_cost(create_model(name), (1, 64, 64, 3))[0] == count


def test_resnet50_macs_at_224():
    # 4.09 GMACs is the published ResNet-50 (v1.5) figure.
    assert round(model_cost(create_model("resnet50"), (1, 224, 224, 3))[1] / 1e9, 2) == 4.09


def test_unknown_model_lists_close_matches():
    with pytest.raises(ValueError, match=r"unknown model 'se_resnet5' \(did you mean"):
        create_model("se_resnet5")


@pytest.mark.parametrize("kwargs,message", [
    ({"attn": "sse"}, r"unknown attention 'sse'"),
    ({"stem": "tiny"}, r"stem='tiny' is not supported; expected one of 'imagenet', 'cifar'"),
    ({"num_classes": 0}, r"num_classes=0 is invalid; expected an integer >= 1"),
])
def test_bad_options(kwargs, message):
    with pytest.raises(ValueError, match=message):
        create_model("se_resnet18", **kwargs)


def test_unexpected_keyword_is_named():
    with pytest.raises(TypeError, match=r"se_resnet18: .*'width'.*expected some of num_classes"):
        create_model("se_resnet18", width=2)


@pytest.mark.parametrize("shape,message", [
    ((2, 64, 64, 1), r"input has 1 channels .* expected in_chans=3"),
    ((2, 64, 64), r"input of rank 3 .* expected rank 4"),
    ((2, 16, 64, 3), r"input of size \(16, 64\) \(height, width\) is smaller than the total "
                     r"stride \(32, 32\)"),
])
def test_bad_input(shape, message):
    with pytest.raises(ValueError, match=message):
        _init(create_model("se_resnet18"), shape)


def test_cifar_stem_accepts_small_input():
    _init(create_model("se_resnet18", stem="cifar"), (2, 8, 8, 3))
    with pytest.raises(ValueError, match=r"total stride \(8, 8\)"):
        _init(create_model("se_resnet18", stem="cifar"), (2, 4, 4, 3))


def test_bf16_compute_fp32_params_and_logits():
    model = create_model("se_resnet18", dtype=jnp.bfloat16, num_classes=10, stem="cifar")
    x = jnp.ones((2, 16, 16, 3))
    variables = model.init(jax.random.PRNGKey(0), x)
    assert {p.dtype for p in jax.tree.leaves(variables["params"])} == {jnp.dtype("float32")}
    logits, state = model.apply(variables, x, mutable=["intermediates"])
    assert logits.dtype == jnp.float32 and logits.shape == (2, 10)
    gate = state["intermediates"]["layer1_0"]["se"]["gate"][0]
    assert gate.dtype == jnp.float32 and gate.shape == (2, 64)


def test_zero_init_last_bn():
    v = create_model("se_resnet50", zero_init_last_bn=True).init(jax.random.PRNGKey(0),
                                                                   jnp.ones((1, 32, 32, 3)))
    assert not np.any(v["params"]["layer1_0"]["bn3"]["scale"])
    assert np.all(v["params"]["layer1_0"]["bn2"]["scale"] == 1)


def test_video_models():
    assert create_model("se_r3d_18").num_classes == 400
    v = _init(create_model("r3d_18"), (1, 8, 32, 32, 3))
    assert v["params"]["stem_0"]["kernel"].shape == (3, 7, 7, 3, 64)
    assert v["params"]["layer2_0"]["downsample_0"]["kernel"].shape == (1, 1, 1, 64, 128)
    assert model_cost(create_model("r3d_18"), (1, 8, 32, 32, 3))[0] == 33_371_472
    se = _init(create_model("se_r3d_18"), (1, 8, 32, 32, 3))
    assert se["params"]["layer1_0"]["se"]["fc1"]["kernel"].shape == (1, 1, 1, 64, 8)


@pytest.mark.parametrize("shape,message", [
    ((1, 8, 32, 32), r"input of rank 4 .* expected rank 5 \(batch, channels, time, height"),
    ((1, 4, 32, 32, 3), r"input of size \(4, 32, 32\) \(time, height, width\) is smaller than "
                        r"the total stride \(8, 16, 16\)"),
])
def test_video_bad_input(shape, message):
    with pytest.raises(ValueError, match=message):
        _init(create_model("se_r3d_18"), shape)


def test_video_models_refuse_image_stems():
    with pytest.raises(ValueError, match=r"stem='cifar' is not supported; expected one of 'r3d'"):
        create_model("r3d_18", stem="cifar")
