"""The reference's state dicts have timm's/torchvision's keys, shapes and parameter counts."""

import pytest

import se_torch_ref.models as tm

# Published parameter counts (timm / torchvision model cards).
PUBLISHED = {"resnet18": 11_689_512, "resnet34": 21_797_672, "resnet50": 25_557_032,
             "resnet101": 44_549_160, "resnet152": 60_192_808, "se_resnet18": 11_779_624,
             "se_resnet50": 28_088_024, "r3d_18": 33_371_472}  # r3d_18: 400 classes


def torchvision_keys(blocks, bottleneck):
    """torchvision's ResNet state-dict keys, written out independently of the model code."""
    bn = ["weight", "bias", "running_mean", "running_var", "num_batches_tracked"]
    keys = ["conv1.weight"] + [f"bn1.{k}" for k in bn]
    n_conv = 3 if bottleneck else 2
    in_ch = 64
    for stage, count in enumerate(blocks, 1):
        out_ch = 64 * 2 ** (stage - 1) * (4 if bottleneck else 1)
        for i in range(count):
            p = f"layer{stage}.{i}"
            for c in range(1, n_conv + 1):
                keys += [f"{p}.conv{c}.weight"] + [f"{p}.bn{c}.{k}" for k in bn]
            if i == 0 and (stage > 1 or in_ch != out_ch):
                keys += [f"{p}.downsample.0.weight"] + [f"{p}.downsample.1.{k}" for k in bn]
            in_ch = out_ch
    return keys + ["fc.weight", "fc.bias"]


@pytest.mark.parametrize("name,blocks,bottleneck", [
    ("resnet18", (2, 2, 2, 2), False), ("resnet34", (3, 4, 6, 3), False),
    ("resnet50", (3, 4, 6, 3), True), ("resnet101", (3, 4, 23, 3), True),
    ("resnet152", (3, 8, 36, 3), True)])
def test_torchvision_key_layout(name, blocks, bottleneck):
    state = tm.create_model(name).state_dict()
    assert list(state) == torchvision_keys(blocks, bottleneck)


@pytest.mark.parametrize("name", list(PUBLISHED))
def test_parameter_counts_match_published(name):
    assert sum(p.numel() for p in tm.create_model(name).parameters()) == PUBLISHED[name]


def test_timm_se_keys_and_shapes():
    state = tm.create_model("se_resnet50").state_dict()
    assert state["layer1.0.se.fc1.weight"].shape == (16, 256, 1, 1)
    assert state["layer1.0.se.fc1.bias"].shape == (16,)
    assert state["layer4.2.se.fc2.weight"].shape == (2048, 128, 1, 1)
    state18 = tm.create_model("se_resnet18").state_dict()
    assert state18["layer1.0.se.fc1.weight"].shape == (8, 64, 1, 1)  # make_divisible(4, 8)
    without_se = {k for k in state if ".se." not in k}
    assert without_se == set(tm.create_model("resnet50").state_dict())


def test_article_se_layout():
    state = tm.create_model("se_article_resnet18").state_dict()
    assert state["layer1.0.se.fc1.weight"].shape == (4, 64)  # 64 // 16, Linear
    assert "layer1.0.se.fc1.bias" not in state


def test_strict_load_of_a_timm_named_state_dict():
    source = tm.create_model("se_resnet50", num_classes=10).state_dict()
    target = tm.create_model("se_resnet50", num_classes=10)
    assert not target.load_state_dict(source, strict=True).missing_keys


def torchvision_video_keys(blocks):
    """torchvision's `VideoResNet` (r3d_18) keys, written out independently of the model code."""
    bn = ["weight", "bias", "running_mean", "running_var", "num_batches_tracked"]
    keys = ["stem.0.weight"] + [f"stem.1.{k}" for k in bn]
    for stage, count in enumerate(blocks, 1):
        for i in range(count):
            p = f"layer{stage}.{i}"
            for c in (1, 2):
                keys += [f"{p}.conv{c}.0.weight"] + [f"{p}.conv{c}.1.{k}" for k in bn]
            if i == 0 and stage > 1:
                keys += [f"{p}.downsample.0.weight"] + [f"{p}.downsample.1.{k}" for k in bn]
    return keys + ["fc.weight", "fc.bias"]


def test_r3d_18_has_torchvision_keys_and_shapes():
    state = tm.create_model("r3d_18").state_dict()
    assert list(state) == torchvision_video_keys((2, 2, 2, 2))
    assert state["stem.0.weight"].shape == (64, 3, 3, 7, 7)
    assert state["layer2.0.conv1.0.weight"].shape == (128, 64, 3, 3, 3)
    assert state["layer2.0.downsample.0.weight"].shape == (128, 64, 1, 1, 1)
    assert state["fc.weight"].shape == (400, 512)


def test_se_r3d_adds_only_se_keys():
    plain = tm.create_model("r3d_34").state_dict()
    se = tm.create_model("se_r3d_34").state_dict()
    assert list(plain) == torchvision_video_keys((3, 4, 6, 3))
    extra = [k for k in se if k not in plain]
    assert extra and all(".se.fc1." in k or ".se.fc2." in k for k in extra)
    assert se["layer1.0.se.fc1.weight"].shape == (8, 64, 1, 1, 1)
