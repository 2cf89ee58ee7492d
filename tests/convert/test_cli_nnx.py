"""`se-convert --api nnx`: the Flax side as the state of the `se_flax.nnx` model."""

import numpy as np
import pytest
from flax import nnx

import se_flax.nnx as snnx
from se_flax.convert import flatten, model_template, read_variables, unflatten, write_variables
from se_flax.convert.cli import main
from se_flax.convert.files import read_tree
from se_flax.nnx.convert import linen_to_nnx_tree, nnx_tree_to_linen

NAME = "se_resnet18"


def _random_variables():
    rng = np.random.default_rng(0)
    return unflatten({p: (rng.standard_normal(s.shape) + 2 * (p[-1] == "var")).astype(np.float32)
                      for p, s in flatten(model_template(NAME, num_classes=10)).items()})


def _same(a, b):
    fa, fb = flatten(a), flatten(b)
    return set(fa) == set(fb) and all(np.array_equal(np.asarray(fa[k]), np.asarray(fb[k]))
                                      for k in fa)


@pytest.mark.parametrize("suffix", [".msgpack", ""])  # "" is an Orbax directory
def test_linen_file_to_nnx_state_and_back_is_bit_exact(tmp_path, suffix, capsys):
    variables = _random_variables()
    write_variables(variables, tmp_path / "linen.msgpack")
    nnx_file, back = tmp_path / f"nnx{suffix}", tmp_path / "back.msgpack"
    assert main([str(tmp_path / "linen.msgpack"), str(nnx_file), "--model", NAME,
                 "--api", "nnx"]) == 0
    assert f"{NAME} flax→flax nnx: 134 tensors" in capsys.readouterr().out

    # What an NNX user does with the file: the model's own state, filled by name.
    model = nnx.eval_shape(lambda: snnx.create_model(NAME, num_classes=10))
    graphdef, state = nnx.split(model)
    nnx.replace_by_pure_dict(state, read_tree(nnx_file))
    model = nnx.merge(graphdef, state)
    assert np.array_equal(model.layer1[0].se.fc1.kernel[...],
                          variables["params"]["layer1_0"]["se"]["fc1"]["kernel"])
    assert np.array_equal(model.layer2[0].downsample[1].var[...],
                          variables["batch_stats"]["layer2_0"]["downsample_1"]["var"])

    assert main([str(nnx_file), str(back), "--model", NAME]) == 0  # nnx → linen
    assert _same(read_variables(back)[0], variables)


# One model per layout of module names: ResNet, SK, ResNeXt, R3D, MobileNetV3, ViT.
TREE_MODELS = ("se_resnet18", "sk_resnet18", "se_resnext50_32x4d", "se_r3d_18",
               "mobilenet_v3_small", "se_vit_tiny_patch16_224")


def test_the_tree_rule_matches_the_nnx_model_state():
    """`linen_to_nnx_tree` of the Linen variables is the NNX model's own pure-dict state."""
    for name in TREE_MODELS:
        model = nnx.eval_shape(lambda name=name: snnx.create_model(name))
        pure = nnx.to_pure_dict(nnx.state(model))
        linen = snnx.nnx_to_linen(model)
        shapes = lambda tree: {k: v.shape for k, v in flatten(tree).items()}  # noqa: E731
        assert shapes(linen_to_nnx_tree(linen)) == shapes(pure), name
        assert shapes(nnx_tree_to_linen(pure)) == shapes(linen), name


def test_the_layout_of_a_flax_source_is_detected(tmp_path, capsys):
    variables = _random_variables()
    write_variables(variables, tmp_path / "linen.msgpack")
    assert main([str(tmp_path / "linen.msgpack"), str(tmp_path / "nnx.msgpack"), "--model", NAME,
                 "--api", "nnx"]) == 0
    assert main([str(tmp_path / "nnx.msgpack"), str(tmp_path / "linen2.msgpack"), "--model",
                 NAME]) == 0
    assert f"{NAME} flax nnx→flax: 134 tensors" in capsys.readouterr().out.splitlines()[-1]
    assert _same(read_variables(tmp_path / "linen2.msgpack")[0], variables)


def test_a_missing_nnx_variable_is_named_by_its_path(tmp_path, capsys):
    write_variables(_random_variables(), tmp_path / "linen.msgpack")
    main([str(tmp_path / "linen.msgpack"), str(tmp_path / "nnx.msgpack"), "--model", NAME,
          "--api", "nnx"])
    tree = read_tree(tmp_path / "nnx.msgpack")
    del tree["layer1"][0]["se"]["fc1"]
    from se_flax.convert.files import write_tree

    write_tree(tree, tmp_path / "cut.msgpack")
    assert main([str(tmp_path / "cut.msgpack"), str(tmp_path / "z.msgpack"), "--model",
                 NAME]) == 1
    assert "layer1_0/se/fc1/kernel" in capsys.readouterr().err
