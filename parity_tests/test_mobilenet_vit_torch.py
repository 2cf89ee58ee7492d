"""The PyTorch MobileNetV3 and ViT: torchvision's and timm's keys and sizes, gates, bad input."""

import pytest
import torch

import se_torch_ref


def _conv_bn(prefix):
    return [f"{prefix}.0.weight"] + [f"{prefix}.1.{leaf}" for leaf in (
        "weight", "bias", "running_mean", "running_var", "num_batches_tracked")]


def _se(prefix):
    return [f"{prefix}.{fc}.{leaf}" for fc in ("fc1", "fc2") for leaf in ("weight", "bias")]


# torchvision's mobilenet_v3_small, written out: what each `features.N.block` holds, in order
# (exp: 1x1 expansion conv + BN, dw: depthwise conv + BN, se: SqueezeExcitation, proj: 1x1
# projection conv + BN).
MOBILENET_V3_SMALL_BLOCKS = {1: "dw se proj", 2: "exp dw proj", 3: "exp dw proj",
                             **{n: "exp dw se proj" for n in range(4, 12)}}


def mobilenet_v3_small_keys():
    keys = _conv_bn("features.0")
    for n, parts in MOBILENET_V3_SMALL_BLOCKS.items():
        for m, part in enumerate(parts.split()):
            prefix = f"features.{n}.block.{m}"
            keys += _se(prefix) if part == "se" else _conv_bn(prefix)
    keys += _conv_bn("features.12")
    return keys + ["classifier.0.weight", "classifier.0.bias",
                   "classifier.3.weight", "classifier.3.bias"]


# timm's vit_tiny_patch16_224, written out.
VIT_BLOCK_LAYERS = ("norm1", "attn.qkv", "attn.proj", "norm2", "mlp.fc1", "mlp.fc2")


def vit_tiny_keys():
    keys = ["cls_token", "pos_embed", "patch_embed.proj.weight", "patch_embed.proj.bias"]
    for n in range(12):
        keys += [f"blocks.{n}.{layer}.{leaf}" for layer in VIT_BLOCK_LAYERS
                 for leaf in ("weight", "bias")]
    return keys + ["norm.weight", "norm.bias", "head.weight", "head.bias"]


def test_mobilenet_v3_small_has_torchvisions_keys():
    keys = list(se_torch_ref.create_model("mobilenet_v3_small").state_dict())
    assert len(keys) == 244
    assert keys == mobilenet_v3_small_keys()


def test_vit_tiny_has_timms_keys():
    keys = list(se_torch_ref.create_model("vit_tiny_patch16_224").state_dict())
    assert len(keys) == 152
    assert keys == vit_tiny_keys()


@pytest.mark.parametrize("name,count", [
    ("mobilenet_v3_large", 5_483_032), ("mobilenet_v3_small", 2_542_856),
    ("vit_tiny_patch16_224", 5_717_416), ("vit_small_patch16_224", 22_050_664),
])
def test_parameter_counts_match_torchvision_and_timm(name, count):
    model = se_torch_ref.create_model(name)
    assert sum(p.numel() for p in model.parameters()) == count


def test_se_vit_adds_one_se_per_block_and_records_its_gates():
    model = se_torch_ref.create_model("se_vit_tiny_patch16_224", img_size=32, patch_size=8,
                                      num_classes=10).eval()
    extra = {k: v.shape for k, v in model.state_dict().items() if ".se." in k}
    assert len(extra) == 4 * 12 and extra["blocks.0.se.fc1.weight"] == (16, 192, 1)
    with torch.no_grad():
        assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    assert all(b.se.last_gate.shape == (2, 192) for b in model.blocks)


def test_mobilenet_records_hard_sigmoid_gates_where_the_paper_has_se():
    model = se_torch_ref.create_model("mobilenet_v3_large").eval()
    with torch.no_grad():
        model(torch.randn(1, 3, 32, 32))
    gates = {n: m.last_gate for n, m in model.named_modules() if hasattr(m, "last_gate")}
    assert sorted(gates, key=lambda n: int(n.split(".")[1])) == [
        f"features.{i}.block.2" for i in (4, 5, 6)] + [
        f"features.{i}.block.2" for i in range(11, 16)]
    assert all(0 <= float(g.min()) and float(g.max()) <= 1 for g in gates.values())


@pytest.mark.parametrize("name,kwargs,shape,message", [
    ("vit_tiny_patch16_224", {"img_size": 32}, (1, 3, 64, 64),
     r"input of size \(64, 64\) \(height, width\); expected \(32, 32\)"),
    ("mobilenet_v3_small", {}, (1, 3, 16, 16), r"smaller than the total stride \(32, 32\)"),
])
def test_bad_input_is_named(name, kwargs, shape, message):
    model = se_torch_ref.create_model(name, **kwargs)
    with pytest.raises(ValueError, match=message):
        model(torch.zeros(shape))


def test_bad_vit_options_are_named():
    with pytest.raises(ValueError, match=r"img_size=100 is not a multiple of patch_size=16"):
        se_torch_ref.create_model("vit_tiny_patch16_224", img_size=100)
    with pytest.raises(TypeError, match=r"unexpected keyword argument\(s\) 'patch_size'"):
        se_torch_ref.create_model("mobilenet_v3_small", patch_size=8)
