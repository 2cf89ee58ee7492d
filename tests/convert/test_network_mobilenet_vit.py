"""MobileNetV3 and ViT weights: PyTorch names and shapes, round trips bit for bit, options."""

import zlib

import numpy as np
import pytest

from se_flax.convert import (
    ConversionError,
    flatten,
    flax_to_torch,
    model_template,
    torch_to_flax,
    unflatten,
)


def random_variables(name, **kwargs):
    """Distinct random values of the right shapes (running variances positive); no init."""
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    return unflatten({p: (rng.random(s.shape, dtype=np.float32) + (p[-1] == "var"))
                      for p, s in flatten(model_template(name, **kwargs)).items()})


def assert_same_variables(a, b):
    fa, fb = flatten(a), flatten(b)
    assert fa.keys() == fb.keys()
    for p in fa:
        assert fa[p].shape == fb[p].shape and fa[p].dtype == fb[p].dtype, p
        assert fa[p].tobytes() == fb[p].tobytes(), p


def assert_same_state(a, b):
    assert list(a) == list(b)
    for k in a:
        assert a[k].shape == b[k].shape and a[k].dtype == b[k].dtype, k
        assert a[k].tobytes() == b[k].tobytes(), k


@pytest.mark.parametrize("name,kwargs", [
    ("mobilenet_v3_small", {"num_classes": 10}),
    ("mobilenet_v3_large", {}),
    ("se_vit_tiny_patch16_224", {"img_size": 32, "patch_size": 8, "num_classes": 10}),
    ("vit_small_patch16_224", {}),
])
def test_round_trip_is_bit_exact_and_options_come_from_the_weights(name, kwargs):
    variables = random_variables(name, **kwargs)
    state = flax_to_torch(variables, name, **kwargs)
    back, report = torch_to_flax(state, name, return_report=True)  # options read off the keys
    assert not report.problems
    assert_same_variables(back, variables)
    assert_same_state(flax_to_torch(back, name, **kwargs), state)


def test_vit_tokens_and_linear_layers_map_by_the_layout_rule():
    name, kwargs = "se_vit_tiny_patch16_224", {"img_size": 32, "patch_size": 8}
    variables = random_variables(name, **kwargs)
    state = flax_to_torch(variables, name, **kwargs)
    params = variables["params"]
    assert state["cls_token"].shape == (1, 1, 192)
    assert np.array_equal(state["pos_embed"], params["pos_embed"])  # no transposition
    assert np.array_equal(state["blocks.0.attn.qkv.weight"],
                          params["blocks_0"]["attn"]["qkv"]["kernel"].T)  # (out, in)
    assert state["patch_embed.proj.weight"].shape == (192, 3, 8, 8)
    assert state["blocks.3.se.fc1.weight"].shape == (16, 192, 1)


def test_mobilenet_depthwise_kernel_and_batchnorm_statistics():
    variables = random_variables("mobilenet_v3_small")
    state = flax_to_torch(variables, "mobilenet_v3_small")
    kernel = variables["params"]["features_4"]["block_1_0"]["kernel"]      # (5, 5, 1, 96)
    assert np.array_equal(state["features.4.block.1.0.weight"], kernel.transpose(3, 2, 0, 1))
    assert state["features.4.block.2.fc1.weight"].shape == (24, 96, 1, 1)
    assert state["features.4.block.1.1.num_batches_tracked"] == 0
    assert np.array_equal(state["features.4.block.1.1.running_var"],
                          variables["batch_stats"]["features_4"]["block_1_1"]["var"])


def test_a_vit_checkpoint_of_another_image_size_names_pos_embed():
    state = flax_to_torch(random_variables("vit_tiny_patch16_224", img_size=32, patch_size=16),
                          "vit_tiny_patch16_224", img_size=32, patch_size=16)
    with pytest.raises(ConversionError, match=r"shape mismatch for pos_embed: expected "
                                              r"\(1, 197, 192\), got \(1, 5, 192\)"):
        torch_to_flax(state, "vit_tiny_patch16_224", img_size=224)
