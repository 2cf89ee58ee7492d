"""ResNeXt and Selective Kernel networks in Flax: counts, recorded selections, option errors."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import pytest

from se_flax.flops import count_macs
from se_flax.layers.selective_kernel import SelectiveKernel
from se_flax.models import create_model, list_models
from se_flax.models.resnet import ResNet

# Published parameter counts (1000 classes): torchvision resnext50_32x4d, timm seresnext*,
# skresnet*, skresnext50_32x4d.
PUBLISHED = {"resnext50_32x4d": 25_028_904, "se_resnext50_32x4d": 27_559_896,
             "se_resnext101_32x4d": 48_955_416, "sk_resnet18": 11_958_056,
             "sk_resnet34": 22_282_376, "sk_resnext50_32x4d": 27_479_784}


def _shapes(model, shape):
    return jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), jnp.ones(shape)))


@pytest.mark.parametrize("name", list(PUBLISHED))
def test_parameter_counts_match_published(name):
    assert name in list_models()
    params = _shapes(create_model(name), (1, 32, 32, 3))["params"]
    assert sum(p.size for p in jax.tree.leaves(params)) == PUBLISHED[name]


class _GroupedConv(nn.Module):
    @nn.compact
    def __call__(self, x, train=False):
        return nn.Conv(128, (3, 3), padding=1, feature_group_count=32, use_bias=False)(x)


def test_grouped_kernels_and_their_macs():
    variables = _shapes(create_model("resnext50_32x4d", num_classes=10), (1, 32, 32, 3))
    assert variables["params"]["layer1_0"]["conv2"]["kernel"].shape == (3, 3, 4, 128)
    # A grouped conv costs output elements x (C_in / groups) x window.
    conv = _GroupedConv()
    assert count_macs(conv, _shapes(conv, (1, 8, 8, 128)), (1, 8, 8, 128)) == 8 * 8 * 128 * 4 * 9


def test_selection_weights_are_recorded_per_block_in_float32():
    model = create_model("sk_resnet18", num_classes=10, stem="cifar", dtype=jnp.bfloat16)
    x = jnp.ones((2, 8, 8, 3))
    variables = _shapes(model, x.shape)
    logits, state = jax.eval_shape(
        lambda v, x: model.apply(v, x, mutable=["intermediates"]), variables, x)
    assert logits.dtype == jnp.float32  # bfloat16 compute; the selection stays float32
    w = state["intermediates"]["layer2_0"]["conv1"]["selection"][0]
    assert w.shape == (2, 2, 128) and w.dtype == jnp.float32
    assert set(variables["params"]["layer1_0"]["conv1"]) == {"paths_0", "paths_1", "attn"}
    assert set(variables["params"]["layer1_0"]["conv1"]["attn"]) == {"fc_reduce", "bn",
                                                                     "fc_select"}


@pytest.mark.parametrize("module,shape,message", [
    (SelectiveKernel(48, groups=5), (1, 8, 8, 32),
     r"SelectiveKernel: groups=5 must divide each path's input \(16 channels\) and "
     r"out_channels=48"),
    (SelectiveKernel(48), (1, 8, 8, 33), r"split_input=True with in_channels=33 and 2 paths"),
    (ResNet("basic", (2, 2, 2, 2), cardinality=32, base_width=4), (1, 32, 32, 3),
     r"cardinality=32, base_width=4 with block='basic'; expected cardinality=1"),
    (ResNet(cardinality=8, base_width=0), (1, 32, 32, 3),
     r"base_width=0 is invalid; expected an integer >= 1"),
])
def test_bad_options_are_named(module, shape, message):
    with pytest.raises(ValueError, match=message):
        _shapes(module, shape)
