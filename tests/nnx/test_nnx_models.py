"""NNX models against their Linen twins: same weights, same numbers, same names, same errors.

Every comparison here is expected to be bit for bit: the NNX modules call the same JAX
operations in the same order as the Linen ones (same convolutions, the same BatchNorm
functions, the same float32 squeeze and gate), so XLA compiles the same program. The asserts
require exact equality; a difference would be a port bug, not rounding.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from nnx_twins import differences, linen_grads, linen_run, linen_twin, loaded, nnx_grads, nnx_run

import se_flax
import se_flax.nnx as snnx
from se_flax.convert import flatten
from se_flax.convert.naming import torch_key
from se_spec.models import model_spec

# Bit-for-bit runs in the default suite: one ResNet and the ViT (MobileNetV3 and SK compare
# with Linen in the slow runs; by default they meet PyTorch in parity_tests/test_nnx_torch.py
# and, as layers, Linen in test_nnx_layers.py).
FAST = {"se_resnet18", "se_vit_tiny_patch16_224"}
DEEP = ("101", "152", "r3d_34")
VIT_OPTIONS = {"img_size": 32, "patch_size": 8}  # 17 tokens


def _options(name):
    family = model_spec(name).family
    extra = {"r3d": {}, "vit": VIT_OPTIONS}.get(family, {"stem": "cifar"})
    return {"num_classes": 10} | extra


def _input(name):
    family = model_spec(name).family
    shape = {"r3d": (2, 8, 16, 16, 3), "vit": (2, 32, 32, 3)}.get(family, (2, 16, 16, 3))
    return jnp.asarray(np.random.default_rng(0).standard_normal(shape), jnp.float32)


def _marks(name):
    return () if name in FAST else (pytest.mark.slow,)


def _exact(diffs):
    assert diffs and max(diffs.values()) == 0.0, {k: v for k, v in diffs.items() if v}


def test_nnx_lists_every_linen_model_of_its_families():
    assert snnx.list_models() == se_flax.list_models() and len(snnx.list_models()) == 34


def _twins(name, **extra):
    x, options = _input(name), _options(name) | extra
    linen = se_flax.create_model(name, **options)
    variables = linen_twin(linen, x)
    model = loaded(nnx.eval_shape(lambda: snnx.create_model(name, **options)), variables)
    return x, linen, variables, model


@pytest.mark.parametrize("name", [pytest.param(n, marks=_marks(n)) for n in snnx.list_models()])
def test_eval_and_train_outputs_match_linen_bit_for_bit(name):
    """Eval logits and gates; train logits, gates and updated running statistics: exact."""
    with jax.default_matmul_precision("highest"):
        x, linen, variables, model = _twins(name)
        for train in (False, True):
            y_ref, gates_ref, stats_ref = linen_run(linen, variables, x, train)
            y, gates, stats = nnx_run(model, x, train)
            _exact(differences({("logits",): y}, {("logits",): y_ref}))
            if gates_ref:
                _exact(differences(gates, gates_ref))
            if stats_ref is None:  # no BatchNorm (ViT)
                assert stats is None
            else:
                _exact(differences(stats, stats_ref))


@pytest.mark.slow
@pytest.mark.parametrize("impl", ["xla", "cpu"])
def test_each_implementation_matches_its_linen_twin(impl):
    """`impl` picks the same rewrites in both APIs: train logits, statistics, gradients exact."""
    with jax.default_matmul_precision("highest"):
        x, linen, variables, model = _twins("se_resnet50", impl=impl)
        y_ref, _, stats_ref = linen_run(linen, variables, x, True)
        y, _, stats = nnx_run(model, x, True)
        _exact(differences({("logits",): y}, {("logits",): y_ref}))
        _exact(differences(stats, stats_ref))
        w = jnp.asarray(np.random.default_rng(1).standard_normal((2, 10)), jnp.float32)
        _exact(differences(nnx_grads(model, x, w), linen_grads(linen, variables, x, w)))


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in snnx.list_models() if not any(d in n for d in DEEP)])
def test_gradients_match_linen_bit_for_bit(name):
    """Training-mode gradients of every parameter: exact."""
    with jax.default_matmul_precision("highest"):
        x, linen, variables, model = _twins(name)
        w = jnp.asarray(np.random.default_rng(1).standard_normal((2, 10)), jnp.float32)
        _exact(differences(nnx_grads(model, x, w), linen_grads(linen, variables, x, w)))


def _count(tree):
    return sum(int(np.prod(a.shape)) for a in jax.tree.leaves(tree))


@pytest.mark.parametrize("name", [pytest.param(n, marks=() if n.endswith("18") or n in FAST else
                                               (pytest.mark.slow,)) for n in snnx.list_models()])
def test_parameter_count_and_shapes_equal_the_linen_twin(name):
    x = jax.ShapeDtypeStruct(_input(name).shape, jnp.float32)
    linen = se_flax.create_model(name, **_options(name))
    ref = jax.eval_shape(linen.init, jax.random.PRNGKey(0), x)
    ours = snnx.nnx_to_linen(nnx.eval_shape(lambda: snnx.create_model(name, **_options(name))))
    assert jax.tree.map(lambda a: a.shape, ours) == jax.tree.map(lambda a: a.shape, ref)
    assert _count(ours["params"]) == _count(ref["params"])


def _same_error(build_linen, build_nnx):
    with pytest.raises(Exception) as ref:
        build_linen()
    with pytest.raises(type(ref.value)) as ours:
        build_nnx()
    assert str(ours.value) == str(ref.value)
    return str(ours.value)


@pytest.mark.parametrize("name,kwargs", [
    ("se_resnet5", {}),
    ("se_resnet18", {"attn": "sse"}),
    ("se_resnet18", {"stem": "tiny"}),
    ("se_resnet18", {"num_classes": 0}),
    ("se_resnet18", {"width": 2}),
    ("se_resnet18", {"impl": "gpu"}),
    ("se_resnet18", {"attn_kwargs": {"groups": 3}}),
    ("se_resnet18", {"attn_kwargs": {"act": "foo"}}),
    ("se_resnet18", {"attn_kwargs": {"bogus": 1}}),
    ("cbam_resnet18", {"attn_kwargs": {"spatial_kernel_size": 4}}),
    ("eca_resnet18", {"attn_kwargs": {"kernel_size": 2}}),
    ("se_r3d_18", {"stem": "cifar"}),
    ("mobilenet_v3_small", {"stem": "patch"}),
    ("mobilenet_v3_small", {"attn_kwargs": {"act": "foo"}}),
    ("mobilenet_v3_large", {"attn": "cbam", "attn_kwargs": {"spatial_kernel_size": 4}}),
    ("se_vit_tiny_patch16_224", {"img_size": 40}),
    ("se_vit_tiny_patch16_224", {"patch_size": 0}),
    ("se_vit_tiny_patch16_224", {"zero_init_last_bn": True}),
    ("se_vit_tiny_patch16_224", {"img_size": 32, "attn_kwargs": {"act": "foo"}}),
    ("vit_tiny_patch16_224", {"stem": "cifar"}),
])
def test_bad_options_raise_the_linen_error(name, kwargs):
    x = jnp.ones((1, 8, 32, 32, 3) if "r3d" in name else (1, 32, 32, 3))

    def linen():
        model = se_flax.create_model(name, **kwargs)
        jax.eval_shape(model.init, jax.random.PRNGKey(0), x)

    _same_error(linen, lambda: nnx.eval_shape(lambda: snnx.create_model(name, **kwargs)))


@pytest.mark.parametrize("shape", [(2, 64, 64, 1), (2, 64, 64), (2, 16, 64, 3)])
def test_bad_input_raises_the_linen_error(shape):
    linen = se_flax.create_model("se_resnet18")
    model = nnx.eval_shape(lambda: snnx.create_model("se_resnet18"))
    x = jnp.ones(shape)
    _same_error(lambda: jax.eval_shape(linen.init, jax.random.PRNGKey(0), x),
                lambda: nnx.eval_shape(lambda m: m(x), model))


@pytest.mark.parametrize("name,shape", [
    ("mobilenet_v3_small", (2, 32, 32, 1)),
    ("mobilenet_v3_small", (2, 32, 32)),
    ("se_vit_tiny_patch16_224", (2, 64, 64, 3)),
    ("se_vit_tiny_patch16_224", (2, 32, 32, 1)),
    ("se_vit_tiny_patch16_224", (2, 32, 32)),
])
def test_bad_input_of_mobilenet_and_vit_raises_the_linen_error(name, shape):
    options = VIT_OPTIONS if "vit" in name else {}
    linen = se_flax.create_model(name, **options)
    model = nnx.eval_shape(lambda: snnx.create_model(name, **options))
    x = jnp.ones(shape)
    _same_error(lambda: jax.eval_shape(linen.init, jax.random.PRNGKey(0), x),
                lambda: nnx.eval_shape(lambda m: m(x), model))


def test_mobilenet_and_vit_attributes_follow_the_pytorch_module_names():
    small = nnx.eval_shape(lambda: snnx.create_model("mobilenet_v3_small", num_classes=10))
    assert small.features[0][0].kernel.shape == (3, 3, 3, 16)
    assert small.features[1].block[0][0].kernel.shape == (3, 3, 1, 16)  # depthwise
    assert small.features[1].block[1].fc1.kernel.shape == (1, 1, 16, 8)
    assert small.features[12][1].mean.shape == (576,) and small.features[12][1].epsilon == 1e-3
    assert small.classifier[3].kernel.shape == (1024, 10)
    vit = nnx.eval_shape(lambda: snnx.create_model("se_vit_tiny_patch16_224", **VIT_OPTIONS))
    assert vit.cls_token.shape == (1, 1, 192) and vit.pos_embed.shape == (1, 17, 192)
    assert vit.patch_embed.proj.kernel.shape == (8, 8, 3, 192)
    assert vit.blocks[11].attn.qkv.kernel.shape == (192, 576) and vit.head.kernel.shape == (
        192, 1000)
    assert vit.blocks[0].se.fc1.kernel.shape == (1, 192, 16)  # spatial_dims=1: a 1-wide conv
    keys = {torch_key(p) for p in flatten(snnx.nnx_to_linen(small))} | {
        torch_key(p) for p in flatten(snnx.nnx_to_linen(vit))}
    assert {"features.1.block.1.fc2.weight", "features.2.block.0.1.running_var",
            "classifier.0.weight", "cls_token", "pos_embed", "blocks.0.attn.qkv.weight",
            "blocks.0.se.fc1.weight", "patch_embed.proj.weight", "norm.weight",
            "head.bias"} <= keys


def test_attributes_follow_the_pytorch_module_names():
    model = nnx.eval_shape(lambda: snnx.create_model("se_resnet50", num_classes=10))
    assert model.layer1[0].se.fc1.kernel.shape == (1, 1, 256, 16)
    assert model.layer1[0].downsample[0].kernel.shape == (1, 1, 64, 256)
    assert model.layer4[2].bn3.var.shape == (2048,) and model.fc.kernel.shape == (2048, 10)
    video = nnx.eval_shape(lambda: snnx.create_model("se_r3d_18"))
    assert video.stem[0].kernel.shape == (3, 7, 7, 3, 64)
    assert video.layer2[0].conv1[1].mean.shape == (128,)


def test_eval_mode_and_train_argument_agree():
    model = nnx.eval_shape(lambda: snnx.create_model("resnet18", num_classes=3))
    assert model.bn1.use_running_average is False
    model.eval()
    assert model.layer1[0].bn2.use_running_average is True
    model.train()
    assert model.layer4[1].bn1.use_running_average is False


def test_axis_name_reaches_every_batchnorm_including_cbams():
    model = nnx.eval_shape(lambda: snnx.create_model("cbam_resnet18", axis_name="batch"))
    norms = [m for _, m in nnx.iter_modules(model) if isinstance(m, snnx.BatchNorm)]
    assert len(norms) == 1 + 8 * 2 + 3 + 8 and {n.axis_name for n in norms} == {"batch"}


def test_resnext_and_sk_attributes_follow_the_timm_module_names():
    resnext = nnx.eval_shape(lambda: snnx.create_model("resnext50_32x4d", num_classes=10))
    assert resnext.layer1[0].conv2.kernel.shape == (3, 3, 4, 128)  # 32 groups of 4 channels
    assert resnext.layer1[0].conv2.feature_group_count == 32
    sk = nnx.eval_shape(lambda: snnx.create_model("sk_resnet18", num_classes=10))
    unit = sk.layer2[0].conv1
    assert isinstance(unit, snnx.SelectiveKernel) and unit.paths[1].conv.kernel_dilation == (2, 2)
    assert unit.paths[0].conv.kernel.shape == (3, 3, 32, 128)  # split input: 64 / 2 paths
    assert unit.attn.fc_reduce.kernel.shape == (1, 1, 128, 16)
    assert unit.attn.fc_select.kernel.shape == (1, 1, 16, 256) and unit.attn.bn.var.shape == (16,)
    assert sk.layer2[0].conv2.bn.scale.shape == (128,)


def test_bad_input_of_an_sk_model_raises_the_linen_error():
    linen = se_flax.create_model("sk_resnet18")
    model = nnx.eval_shape(lambda: snnx.create_model("sk_resnet18"))
    x = jnp.ones((2, 64, 64, 1))
    _same_error(lambda: jax.eval_shape(linen.init, jax.random.PRNGKey(0), x),
                lambda: nnx.eval_shape(lambda m: m(x), model))
