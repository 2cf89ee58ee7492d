"""ResNeXt and Selective Kernel networks: timm/torchvision keys and counts, the SK unit's parity,
conversion round trips and option errors."""

import numpy as np
import pytest
import torch

import se_torch_ref.models as tm
from parity_tests import compare
from parity_tests.networks import randomize_
from se_flax import flax_to_torch, torch_to_flax
from se_flax.layers.selective_kernel import SelectiveKernel as FlaxSK
from se_torch_ref.models.resnet import ResNet
from se_torch_ref.selective_kernel import SelectiveKernel as TorchSK

# Published parameter counts (1000 classes): torchvision resnext50_32x4d, timm seresnext*,
# skresnet*, skresnext50_32x4d.
PUBLISHED = {"resnext50_32x4d": 25_028_904, "se_resnext50_32x4d": 27_559_896,
             "se_resnext101_32x4d": 48_955_416, "sk_resnet18": 11_958_056,
             "sk_resnet34": 22_282_376, "sk_resnext50_32x4d": 27_479_784}
BN = ["weight", "bias", "running_mean", "running_var", "num_batches_tracked"]


def seresnext_keys(blocks):
    """timm's seresnext state-dict keys, written out independently of the model code."""
    keys = ["conv1.weight"] + [f"bn1.{k}" for k in BN]
    for stage, count in enumerate(blocks, 1):
        for i in range(count):
            p = f"layer{stage}.{i}"
            for c in (1, 2, 3):
                keys += [f"{p}.conv{c}.weight"] + [f"{p}.bn{c}.{k}" for k in BN]
            keys += [f"{p}.se.fc1.weight", f"{p}.se.fc1.bias", f"{p}.se.fc2.weight",
                     f"{p}.se.fc2.bias"]
            if i == 0:
                keys += [f"{p}.downsample.0.weight"] + [f"{p}.downsample.1.{k}" for k in BN]
    return keys + ["fc.weight", "fc.bias"]


def skresnet_basic_keys(blocks):
    """timm's skresnet18/34 state-dict keys, written out independently of the model code."""
    keys = ["conv1.weight"] + [f"bn1.{k}" for k in BN]
    for stage, count in enumerate(blocks, 1):
        for i in range(count):
            p = f"layer{stage}.{i}"
            for path in (0, 1):
                keys += [f"{p}.conv1.paths.{path}.conv.weight"]
                keys += [f"{p}.conv1.paths.{path}.bn.{k}" for k in BN]
            keys += [f"{p}.conv1.attn.fc_reduce.weight"]
            keys += [f"{p}.conv1.attn.bn.{k}" for k in BN] + [f"{p}.conv1.attn.fc_select.weight"]
            keys += [f"{p}.conv2.conv.weight"] + [f"{p}.conv2.bn.{k}" for k in BN]
            if i == 0 and stage > 1:
                keys += [f"{p}.downsample.0.weight"] + [f"{p}.downsample.1.{k}" for k in BN]
    return keys + ["fc.weight", "fc.bias"]


@pytest.mark.parametrize("name", list(PUBLISHED))
def test_parameter_counts_match_published(name):
    assert sum(p.numel() for p in tm.create_model(name).parameters()) == PUBLISHED[name]


def test_se_resnext50_has_timm_keys_and_grouped_shapes():
    state = tm.create_model("se_resnext50_32x4d").state_dict()
    assert list(state) == seresnext_keys((3, 4, 6, 3))
    assert state["layer1.0.conv2.weight"].shape == (128, 4, 3, 3)  # 32 groups of 4
    assert state["layer4.0.conv2.weight"].shape == (1024, 32, 3, 3)
    assert state["layer1.0.se.fc1.weight"].shape == (16, 256, 1, 1)
    plain = tm.create_model("resnext50_32x4d").state_dict()
    assert list(plain) == [k for k in state if ".se." not in k]


def test_sk_resnet18_has_timm_keys_and_shapes():
    state = tm.create_model("sk_resnet18").state_dict()
    assert list(state) == skresnet_basic_keys((2, 2, 2, 2))
    assert state["layer1.0.conv1.paths.0.conv.weight"].shape == (64, 32, 3, 3)  # split input
    assert state["layer1.0.conv1.attn.fc_reduce.weight"].shape == (16, 64, 1, 1)
    assert state["layer1.0.conv1.attn.fc_select.weight"].shape == (128, 16, 1, 1)
    sknext = tm.create_model("sk_resnext50_32x4d").state_dict()
    assert sknext["layer2.0.conv2.paths.1.conv.weight"].shape == (256, 8, 3, 3)
    assert sknext["layer2.0.conv2.attn.fc_reduce.weight"].shape == (32, 256, 1, 1)


@pytest.mark.parametrize("options", [
    {"split_input": True, "rd_ratio": 1 / 8, "rd_divisor": 16},
    {"split_input": False, "groups": 4, "stride": 2},
    {"split_input": False, "dilations": (1, 2, 3), "rd_channels": 8},
], ids=["split", "grouped-stride2", "three-paths"])
@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
def test_selective_kernel_layer_parity(options, train):
    torch.manual_seed(0)
    ref = randomize_(TorchSK(32, 48, **options))
    flax = FlaxSK(48, **options)
    x = np.random.default_rng(0).standard_normal((3, 32, 8, 8)).astype(np.float32)
    report = compare(flax, ref, x, train=train, grads=train)
    assert report.ok, report.table()
    gates = report.of_kind("gate")
    assert [g.name for g in gates] == ["selection"]
    assert ref.last_selection.shape == (3, len(options.get("dilations", (1, 2))), 48)


@pytest.mark.parametrize("name", ["se_resnext50_32x4d", "sk_resnet18"])
def test_conversion_round_trip_is_bit_exact(name):
    torch.manual_seed(0)
    state = {k: v.numpy() for k, v in
             randomize_(tm.create_model(name, num_classes=10)).state_dict().items()}
    variables, report = torch_to_flax(state, name, return_report=True)
    assert report.layout == "timm"
    back = flax_to_torch(variables, name)
    assert set(back) == set(state)
    for key, value in state.items():
        assert back[key].dtype == value.dtype and np.array_equal(back[key], value), key
    model = tm.create_model(name, num_classes=10)
    model.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in back.items()},
                          strict=True)


@pytest.mark.parametrize("make,message", [
    (lambda: TorchSK(32, 48, groups=5), r"SelectiveKernel: groups=5 must divide each path's "
                                        r"input \(16 channels\) and out_channels=48"),
    (lambda: TorchSK(33, 48), r"split_input=True with in_channels=33 and 2 paths"),
    (lambda: TorchSK(32, 48, dilations=(1,)), r"dilations=\(1,\) is invalid"),
    (lambda: ResNet("basic", (2, 2, 2, 2), cardinality=32, base_width=4),
     r"cardinality=32, base_width=4 with block='basic'"),
    (lambda: ResNet(cardinality=0), r"cardinality=0 is invalid; expected an integer >= 1"),
])
def test_bad_options_are_named(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_folding_pairs_the_selection_bottleneck_like_pytorch():
    """Both frameworks fold `attn.fc_reduce` + `attn.bn` (and every conv + BatchNorm) alike."""
    import se_torch_ref
    from parity_tests.harness import torch_state_dict
    from se_flax import create_model
    from se_flax.folding import fold_batchnorm

    torch.manual_seed(0)
    model = randomize_(tm.create_model("sk_resnet18", num_classes=10)).eval()
    folded = torch_state_dict(se_torch_ref.fold_batchnorm(model))
    assert "layer1.0.conv1.attn.fc_reduce.bias" in folded
    ours = flax_to_torch(fold_batchnorm(create_model("sk_resnet18", num_classes=10),
                                        torch_to_flax(torch_state_dict(model), "sk_resnet18")))
    assert set(ours) == set(folded)
    for key, value in folded.items():
        assert np.array_equal(ours[key], value), key
