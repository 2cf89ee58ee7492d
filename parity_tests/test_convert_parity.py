"""Conversion against real PyTorch: se_torch_ref checkpoints, files, layouts, pickles, folding."""

import functools
import os
import pickle
import sys

import jax
import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

import se_torch_ref
import se_torch_ref.models as torch_models
from parity_tests.harness import channels_last, torch_state_dict
from parity_tests.networks import randomize_
from se_flax.convert import (
    UnsafeCheckpointError,
    flax_to_torch,
    read_state_dict,
    read_variables,
    torch_to_flax,
    write_state_dict,
)
from se_flax.convert.cli import main
from se_flax.folding import fold_batchnorm, folded_apply
from se_flax.models import create_model
from se_spec.models import MODEL_SPECS
from se_spec.tolerances import EVAL_TOL, scaled_error


def same_state(a, b):
    """Same keys, dtypes, shapes and bytes (key order aside: safetensors sorts)."""
    assert sorted(a) == sorted(b)
    for k in a:
        x, y = np.asarray(a[k]), np.asarray(b[k])
        assert (x.dtype, x.shape) == (y.dtype, y.shape), k
        assert x.tobytes() == y.tobytes(), k
    return True


@functools.cache
def flax_logits_fn(name):
    model = create_model(name)
    return jax.jit(lambda v, x: model.apply(v, x))


def logits_error(name, variables, torch_model, x):
    with torch.no_grad():
        ref = torch_model.eval()(torch.from_numpy(x)).numpy()
    ours = np.asarray(flax_logits_fn(name)(variables, channels_last(x)))
    return scaled_error(ours, ref)[1]


@pytest.fixture(scope="module")
def se_resnet50():
    torch.manual_seed(0)
    model = randomize_(torch_models.create_model("se_resnet50"), seed=0).eval()
    x = np.random.default_rng(0).standard_normal((2, 3, 64, 64)).astype(np.float32)
    return model, x


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_se_convert_round_trip_of_a_se_torch_ref_checkpoint(se_resnet50, tmp_path, capsys,
                                                            suffix):
    model, x = se_resnet50
    src = tmp_path / f"se_resnet50{suffix}"
    if suffix == ".pth":
        torch.save(model.state_dict(), src)
    else:
        save_file(model.state_dict(), src)
    assert main([str(src), str(tmp_path / "flax.msgpack"), "--model", "se_resnet50"]) == 0
    summary = capsys.readouterr().out
    assert "se_resnet50 torch→flax: 331 tensors, 28,088,024 parameters, layout timm " \
           "(detected), float32, 53 num_batches_tracked dropped" in summary, summary
    variables, _ = read_variables(tmp_path / "flax.msgpack")
    err = logits_error("se_resnet50", variables, model, x)
    print(f"se_resnet50 {suffix} → msgpack: logits scaled error {err:.2e}")
    assert err <= EVAL_TOL
    back = tmp_path / f"back{suffix}"
    assert main([str(tmp_path / "flax.msgpack"), str(back), "--model", "se_resnet50"]) == 0
    reloaded = (torch.load(back, weights_only=True) if suffix == ".pth" else
                load_file(back))
    assert same_state({k: v.numpy() for k, v in reloaded.items()}, torch_state_dict(model))
    strict_model = torch_models.create_model("se_resnet50")
    strict_model.load_state_dict(reloaded, strict=True)


@pytest.mark.parametrize("name", list(MODEL_SPECS))
def test_every_se_torch_ref_model_round_trips_bit_exactly(name):
    torch.manual_seed(0)
    state = torch_state_dict(randomize_(torch_models.create_model(name, num_classes=10)))
    variables, report = torch_to_flax(state, name, return_report=True)
    assert not report.problems
    assert same_state(flax_to_torch(variables, name), state)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_half_precision_checkpoints_keep_their_dtype(tmp_path, dtype, suffix):
    model = randomize_(torch_models.create_model("se_resnet18", num_classes=10)).to(dtype)
    src = tmp_path / f"w{suffix}"
    if suffix == ".pth":
        torch.save(model.state_dict(), src)
    else:
        save_file(model.state_dict(), src)
    state, _ = read_state_dict(src)
    variables = torch_to_flax(state, "se_resnet18")
    assert {str(v.dtype) for v in jax.tree.leaves(variables)} == {str(dtype).split(".")[1]}
    write_state_dict(flax_to_torch(variables, "se_resnet18"), tmp_path / f"out{suffix}")
    out = (torch.load(tmp_path / f"out{suffix}", weights_only=True) if suffix == ".pth" else
           load_file(tmp_path / f"out{suffix}"))
    for k, v in model.state_dict().items():
        assert out[k].dtype == v.dtype and torch.equal(out[k], v), k


class ArticleSEBlock(nn.Module):
    """The article's §3.1 SE_Block (bias-free Linear layers in `fc`), gate kept for parity."""

    def __init__(self, channel, ratio=16):
        super().__init__()
        self.fc = nn.Sequential(nn.Linear(channel, channel // ratio, bias=False), nn.ReLU(),
                                nn.Linear(channel // ratio, channel, bias=False), nn.Sigmoid())

    def forward(self, x):
        y = self.fc(x.mean((2, 3)))
        return x * y[:, :, None, None]


def article_network(name="se_article_resnet18"):
    """se_torch_ref's network with the article's own SE block in every residual block."""
    torch.manual_seed(0)
    model = randomize_(torch_models.create_model(name))
    for block in (b for layer in (model.layer1, model.layer2, model.layer3, model.layer4)
                  for b in layer):
        se = ArticleSEBlock(block.se.channels)
        with torch.no_grad():
            se.fc[0].weight.copy_(torch.randn_like(se.fc[0].weight) * 0.3)
            se.fc[2].weight.copy_(torch.randn_like(se.fc[2].weight) * 0.3)
        block.se = se
    return model.eval()


def test_article_and_timm_layouts_give_the_same_logits():
    name = "se_article_resnet18"
    model = article_network(name)
    article = torch_state_dict(model)
    assert "layer1.0.se.fc.0.weight" in article and article["layer1.0.se.fc.0.weight"].ndim == 2
    timm = {k.replace("se.fc.0.", "se.fc1.").replace("se.fc.2.", "se.fc2."):
            v[..., None, None] if ".se.fc." in k else v for k, v in article.items()}
    assert timm["layer1.0.se.fc1.weight"].shape == (4, 64, 1, 1)
    from_article, ra = torch_to_flax(article, name, return_report=True)
    from_timm, rt = torch_to_flax(timm, name, return_report=True)
    assert (ra.layout, rt.layout) == ("article", "timm")
    x = np.random.default_rng(3).standard_normal((2, 3, 64, 64)).astype(np.float32)
    logits_a = np.asarray(flax_logits_fn(name)(from_article, channels_last(x)))
    logits_t = np.asarray(flax_logits_fn(name)(from_timm, channels_last(x)))
    np.testing.assert_array_equal(logits_a, logits_t)
    err = logits_error(name, from_article, model, x)
    print(f"article-layout {name}: logits scaled error vs the article's network {err:.2e}")
    assert err <= EVAL_TOL
    # and back into the article's own network, strictly
    exported = flax_to_torch(from_timm, name, layout="article")
    article_network(name).load_state_dict({k: torch.from_numpy(v) for k, v in exported.items()},
                                          strict=True)
    assert same_state(exported, article)


class Payload:
    """Unpickling this runs `touch MARKER` (the classic malicious checkpoint)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_a_malicious_pickle_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": {"conv1.weight": torch.zeros(1)}, "x": Payload(marker)}, path)
    with pytest.raises(UnsafeCheckpointError, match=r"evil\.pth: refused to load") as info:
        read_state_dict(path)
    assert "system" in str(info.value)
    assert not marker.exists()
    assert main([str(path), str(tmp_path / "o.msgpack"), "--model", "resnet18"]) == 1
    assert not marker.exists()
    # the payload is real: unpickling without weights_only runs it
    torch.load(path, weights_only=False)
    assert marker.exists()


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_a_legacy_raw_pickle_is_refused_too(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    path.write_bytes(pickle.dumps(Payload(marker)))
    with pytest.raises(UnsafeCheckpointError, match=r"evil\.pt: refused to load"):
        read_state_dict(path)
    assert not marker.exists()


def test_torch_folding_matches_unfolded_and_flax_folding(se_resnet50):
    model, x = se_resnet50
    before = {k: v.clone() for k, v in model.state_dict().items()}
    folded = se_torch_ref.fold_batchnorm(model)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())  # untouched
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    xt = torch.from_numpy(x)
    with torch.no_grad():
        ref, got = model(xt).numpy(), folded(xt).numpy()
    err_torch = scaled_error(got, ref)[1]
    # Flax: fold the converted weights; same numbers as torch's folding, same logits
    flax_model = create_model("se_resnet50")
    variables = torch_to_flax(torch_state_dict(model), "se_resnet50")
    flax_folded = fold_batchnorm(flax_model, variables)
    assert same_state(flax_to_torch(flax_folded), torch_state_dict(folded))
    ours = jax.jit(functools.partial(folded_apply, flax_model))(flax_folded, channels_last(x))
    err_flax = scaled_error(np.asarray(ours), got)[1]
    print(f"se_resnet50 folded vs unfolded (torch) {err_torch:.2e}; "
          f"flax folded vs torch folded {err_flax:.2e}", file=sys.stderr)
    assert err_torch <= EVAL_TOL and err_flax <= EVAL_TOL
