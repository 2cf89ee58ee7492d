"""Whole-network conversion: every model and layout round-trips; every mismatch is reported."""

import zlib

import ml_dtypes
import numpy as np
import pytest

from se_flax.convert import (
    ConversionError,
    flatten,
    flax_to_torch,
    model_template,
    torch_to_flax,
    unflatten,
    validate_variables,
)
from se_flax.convert.layouts import detect_layout
from se_flax.convert.unwrap import unwrap_state_dict
from se_spec.models import MODEL_SPECS, NO_ATTENTION


def random_variables(name, dtype=np.float32, **kwargs):
    """Distinct random values of the right shapes (running variances positive); no init."""
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    return unflatten({p: (rng.random(s.shape, dtype=np.float32) + (p[-1] == "var")).astype(dtype)
                      for p, s in flatten(model_template(name, **kwargs)).items()})


def assert_same_variables(a, b):
    fa, fb = flatten(a), flatten(b)
    assert fa.keys() == fb.keys()
    for p in fa:
        assert fa[p].dtype == fb[p].dtype and fa[p].shape == fb[p].shape, p
        assert fa[p].tobytes() == fb[p].tobytes(), p


def assert_same_state(a, b):
    assert list(a) == list(b)
    for k in a:
        assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape, k
        assert a[k].tobytes() == b[k].tobytes(), k


def fits(name, layout):
    attn = MODEL_SPECS[name].attn
    if MODEL_SPECS[name].sk is not None:  # Selective Kernel units exist in timm's layout only
        return layout == "timm"
    if layout == "torchvision":
        return attn == NO_ATTENTION
    if layout == "article":
        return attn in (NO_ATTENTION, "se_article")
    return True


# The first key each layout has no place for, per attention type.
FIRST_MISFIT = {"se": "layer1.0.se.fc1.bias", "eca": "layer1.0.se.conv.weight",
                "cbam": "layer1.0.se.channel.fc1.weight", "effective_se": "layer1.0.se.fc.weight",
                "se_article": "layer1.0.se.fc1.weight"}


# The layouts below are those of the ResNet families (tests/convert/test_network_mobilenet_vit.py
# covers MobileNetV3 and ViT).
RESNETS = [n for n, spec in MODEL_SPECS.items() if spec.family in ("resnet2d", "r3d")]


@pytest.mark.parametrize("layout", ["timm", "torchvision", "article"])
@pytest.mark.parametrize("name", RESNETS)
def test_round_trip_every_model_and_layout(name, layout):
    variables = random_variables(name)
    if not fits(name, layout):
        misfit = (r"paths\.0\.conv\.weight" if MODEL_SPECS[name].sk is not None
                  else FIRST_MISFIT[MODEL_SPECS[name].attn])
        with pytest.raises(ConversionError, match=misfit):
            flax_to_torch(variables, name, layout=layout)
        return
    state = flax_to_torch(variables, name, layout=layout)
    back, report = torch_to_flax(state, name, return_report=True)
    attn = MODEL_SPECS[name].attn
    expected = ("torchvision" if attn == NO_ATTENTION and MODEL_SPECS[name].sk is None else
                "article" if layout == "article" else "timm")
    assert (report.layout, report.detected) == (expected, True)
    assert not report.problems and len(report.dropped) == sum(k.endswith("num_batches_tracked")
                                                              for k in state)
    assert_same_variables(back, variables)                          # flax → torch → flax
    assert_same_state(flax_to_torch(back, name, layout=layout), state)  # torch → flax → torch


def test_article_layout_keys_and_shapes():
    state = flax_to_torch(random_variables("se_article_resnet18"), "se_article_resnet18",
                          layout="article")
    assert state["layer1.0.se.fc.0.weight"].shape == (4, 64)
    assert state["layer1.0.se.fc.2.weight"].shape == (64, 4)
    assert not any("fc1" in k or "se.fc.0.bias" in k for k in state)
    assert detect_layout(state) == "article"


def test_article_and_timm_layouts_load_the_same_weights():
    name = "se_article_resnet18"
    article = flax_to_torch(random_variables(name), name, layout="article")
    timm = {k.replace("se.fc.0.", "se.fc1.").replace("se.fc.2.", "se.fc2."):
            v.reshape(*v.shape, 1, 1) if ".se.fc." in k else v for k, v in article.items()}
    assert timm["layer1.0.se.fc1.weight"].shape == (4, 64, 1, 1)
    a, ra = torch_to_flax(article, name, return_report=True)
    b, rb = torch_to_flax(timm, name, return_report=True)
    assert (ra.layout, rb.layout) == ("article", "timm")
    assert_same_variables(a, b)


@pytest.mark.parametrize("dtype", [np.float16, ml_dtypes.bfloat16, np.float32])
def test_dtype_is_preserved(dtype):
    variables = random_variables("se_resnet18", dtype)
    state = flax_to_torch(variables, "se_resnet18")
    assert state["layer1.0.se.fc1.weight"].dtype == dtype
    assert state["bn1.num_batches_tracked"].dtype == np.int64
    assert_same_variables(torch_to_flax(state, "se_resnet18"), variables)


@pytest.fixture(scope="module")
def se18():
    return flax_to_torch(random_variables("se_resnet18"), "se_resnet18")


@pytest.mark.parametrize("edit,message", [
    (lambda s: s.pop("layer2.0.se.fc1.bias"), "missing key layer2.0.se.fc1.bias"),
    (lambda s: s.__setitem__("layer1.0.extra.weight", np.zeros(3, np.float32)),
     "unexpected key layer1.0.extra.weight"),
    (lambda s: s.__setitem__("layer3.1.conv2.weight", np.zeros((256, 256, 1, 3), np.float32)),
     r"shape mismatch for layer3.1.conv2.weight: expected \(256, 256, 3, 3\), "
     r"got \(256, 256, 1, 3\)"),
    (lambda s: s.__setitem__("fc.bias", np.zeros(1000, np.int64)),
     "dtype mismatch for fc.bias: expected a floating-point tensor, got int64"),
    (lambda s: s.__setitem__("fc.num_batches_tracked", np.zeros((), np.int64)),
     "unexpected key fc.num_batches_tracked"),
    (lambda s: s.__setitem__("layer2.0.conv1.weight", s["layer2.0.conv1.weight"].swapaxes(0, 1)),
     r"shape mismatch for layer2.0.conv1.weight: expected \(128, 64, 3, 3\)"),
    # a Flax-layout 1x1 kernel (1, 1, I, O) is not taken for a torch (O, I, 1, 1) one
    (lambda s: s.__setitem__("layer2.0.downsample.0.weight",
                             s["layer2.0.downsample.0.weight"].transpose(2, 3, 1, 0)),
     r"shape mismatch for layer2.0.downsample.0.weight: expected \(128, 64, 1, 1\), "
     r"got \(1, 1, 64, 128\)"),
    (lambda s: s.__setitem__("bn1.weight", s["bn1.weight"][None]),
     r"shape mismatch for bn1.weight: expected \(64,\), got \(1, 64\)"),
])
def test_each_mismatch_is_an_error_naming_the_key(se18, edit, message):
    state = dict(se18)
    edit(state)
    with pytest.raises(ConversionError, match=message) as info:
        torch_to_flax(state, "se_resnet18")
    assert "1 problem(s)" in str(info.value)


def test_every_problem_is_listed_once(se18):
    state = dict(se18)
    del state["layer4.1.bn2.running_var"]
    state["layer9.0.conv1.weight"] = np.zeros(1, np.float32)
    state["conv1.weight"] = state["conv1.weight"][:, :, :3, :3]
    with pytest.raises(ConversionError) as info:
        torch_to_flax(state, "se_resnet18", num_classes=1000, stem="imagenet")
    assert info.value.problems == [
        "missing key layer4.1.bn2.running_var", "unexpected key layer9.0.conv1.weight",
        "shape mismatch for conv1.weight: expected (64, 3, 7, 7), got (64, 3, 3, 3)"]
    assert "converting a timm-layout state dict into se_resnet18" in str(info.value)


def test_non_strict_needs_the_report(se18):
    with pytest.raises(TypeError, match="return_report=True"):
        torch_to_flax(se18, "se_resnet18", strict=False)
    with pytest.raises(TypeError, match="return_report=True"):
        flax_to_torch(random_variables("resnet18"), "resnet18", strict=False)


def test_non_strict_with_a_template_keeps_its_values(se18):
    template = random_variables("se_resnet18")
    state = {k: v + 1 for k, v in se18.items() if k != "layer1.0.se.fc2.bias"}
    state["extra.weight"] = np.ones(2, np.float32)
    out, report = torch_to_flax(state, template, strict=False, return_report=True)
    assert report.missing == ["layer1.0.se.fc2.bias"] and report.unexpected == ["extra.weight"]
    np.testing.assert_array_equal(out["params"]["layer1_0"]["se"]["fc2"]["bias"],
                                  template["params"]["layer1_0"]["se"]["fc2"]["bias"])
    np.testing.assert_array_equal(out["params"]["fc"]["bias"], se18["fc.bias"] + 1)


def test_non_strict_with_a_name_reports_extra_keys(se18):
    state = {**se18, "head.weight": np.ones(2, np.float32)}
    out, report = torch_to_flax(state, "se_resnet18", strict=False, return_report=True)
    assert report.unexpected == ["head.weight"] and not report.missing
    assert_same_variables(out, torch_to_flax(se18, "se_resnet18"))


def test_non_strict_with_a_template_of_shapes_refuses_to_invent_values(se18):
    state = {k: v for k, v in se18.items() if k != "fc.bias"}
    with pytest.raises(ConversionError, match="no value for params/fc/bias"):
        torch_to_flax(state, model_template("se_resnet18"), strict=False, return_report=True)


@pytest.mark.slow
def test_non_strict_with_a_name_initialises_what_is_missing(se18):
    state = {k: v for k, v in se18.items() if k != "fc.bias"}
    out, report = torch_to_flax(state, "se_resnet18", strict=False, return_report=True)
    assert report.missing == ["fc.bias"] and "1 variable(s) kept their initial values" in \
        report.notes[-1]
    assert out["params"]["fc"]["bias"].shape == (1000,)


def test_wrapped_and_prefixed_checkpoints_are_unwrapped_and_reported(se18):
    wrapped = {"epoch": 3, "optimizer": {"lr": 0.1},
               "state_dict": {f"module.{k}": v for k, v in se18.items()}}
    out, report = torch_to_flax(wrapped, "se_resnet18", return_report=True)
    assert report.notes[:2] == ["unwrapped checkpoint['state_dict'] (ignored epoch, optimizer)",
                                "stripped the prefix 'module.' shared by all 154 keys"]
    assert_same_variables(out, torch_to_flax(se18, "se_resnet18"))
    state, notes = unwrap_state_dict({"model": {f"_orig_mod.{k}": v for k, v in se18.items()}})
    assert list(state) == list(se18) and len(notes) == 2


def test_a_partly_prefixed_state_dict_is_not_guessed(se18):
    state = dict(se18)
    state["module.fc.weight"] = state.pop("fc.weight")
    with pytest.raises(ConversionError, match="unexpected key module.fc.weight"):
        torch_to_flax(state, "se_resnet18")


def test_not_a_state_dict():
    with pytest.raises(ConversionError, match="entries epoch, lr are not tensors"):
        torch_to_flax({"epoch": 3, "lr": 0.1, "w": np.ones(2)}, "resnet18")
    with pytest.raises(ConversionError, match="is a list, not a state dict"):
        torch_to_flax([np.ones(2)], "resnet18")


def test_layout_override_and_mixed_layouts():
    name = "se_article_resnet18"
    article = flax_to_torch(random_variables(name), name, layout="article")
    with pytest.raises(ConversionError, match="unexpected key layer1.0.se.fc.0.weight"):
        torch_to_flax(article, name, layout="timm")
    mixed = dict(article)
    mixed["layer1.0.se.fc1.weight"] = mixed.pop("layer1.0.se.fc.0.weight")
    with pytest.raises(ConversionError, match="mixes the article's SE keys"):
        torch_to_flax(mixed, name)
    with pytest.raises(ValueError, match="layout='keras' is not supported"):
        torch_to_flax(article, name, layout="keras")


def test_layout_hints():
    article = flax_to_torch(random_variables("se_article_resnet50"), "se_article_resnet50",
                            layout="article")
    with pytest.raises(ConversionError, match="(?s)missing key layer1.0.se.fc1.bias.*"
                                              "hint: the article's SE has no bias"):
        torch_to_flax(article, "se_resnet50")
    # same widths at depth 50 (C // 16 == make_divisible(C / 16, 8) for C >= 256)
    conv = torch_to_flax(article, "se_resnet50", attn_kwargs={"bias": False})
    linear = torch_to_flax(article, "se_article_resnet50")
    se_conv, se_linear = conv["params"]["layer4_2"]["se"], linear["params"]["layer4_2"]["se"]
    assert se_conv["fc2"]["kernel"].shape == (1, 1, 128, 2048)
    np.testing.assert_array_equal(se_conv["fc2"]["kernel"][0, 0], se_linear["fc2"]["kernel"])
    plain = flax_to_torch(random_variables("resnet18"), "resnet18")
    with pytest.raises(ConversionError, match="hint: the state dict has no attention modules"):
        torch_to_flax(plain, "se_resnet18")


def test_model_options_are_read_from_the_weights():
    variables = random_variables("resnet18", num_classes=10, stem="cifar")
    state = flax_to_torch(variables, "resnet18")
    out, report = torch_to_flax(state, "resnet18", return_report=True)
    assert report.notes == ["model options num_classes=10 (from the weights), "
                            "stem='cifar' (from the weights)"]
    assert_same_variables(out, variables)
    with pytest.raises(ConversionError, match=r"shape mismatch for fc.weight: expected "
                                              r"\(1000, 512\), got \(10, 512\)"):
        torch_to_flax(state, "resnet18", num_classes=1000)


def test_flax_side_is_checked_against_the_model():
    variables = random_variables("resnet18")
    flat = flatten(variables)
    del flat[("params", "layer1_0", "conv1", "kernel")]
    flat[("params", "layer1_0", "conv9", "kernel")] = np.zeros((3, 3, 64, 64), np.float32)
    flat[("batch_stats", "bn1", "mean")] = np.zeros(65, np.float32)
    with pytest.raises(ConversionError) as info:
        flax_to_torch(unflatten(flat), "resnet18")
    assert sorted(info.value.problems) == [
        "missing variable params/layer1_0/conv1/kernel (layer1.0.conv1.weight)",
        "shape mismatch for batch_stats/bn1/mean (bn1.running_mean): expected (64,), got (65,)",
        "unexpected variable params/layer1_0/conv9/kernel (layer1.0.conv9.weight)"]
    good, report = validate_variables(unflatten(flat), "resnet18", strict=False,
                                      return_report=True)
    assert len(report.problems) == 3 and ("params", "layer1_0", "conv9", "kernel") not in \
        flatten(good)


def test_extra_collections_are_ignored_with_a_note():
    variables = {**random_variables("resnet18"), "intermediates": {"x": (np.ones(2),)}}
    state, report = flax_to_torch(variables, "resnet18", return_report=True)
    assert report.notes == ["ignored the collection(s) intermediates"]
    assert "conv1.weight" in state
