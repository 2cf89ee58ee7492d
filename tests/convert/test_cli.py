"""`se-convert` and the weight files, without PyTorch (safetensors, msgpack, Orbax)."""

import re
import subprocess
import sys

import ml_dtypes
import numpy as np
import pytest

from se_flax.convert import (
    CheckpointError,
    flatten,
    flax_to_torch,
    model_template,
    read_state_dict,
    read_variables,
    unflatten,
    write_state_dict,
    write_variables,
)
from se_flax.convert.cli import main
from se_flax.convert.files import checkpoint_format

NAME = "se_resnet18"


def random_variables(dtype=np.float32):
    rng = np.random.default_rng(0)
    return unflatten({p: (rng.random(s.shape, dtype=np.float32) + (p[-1] == "var")).astype(dtype)
                      for p, s in flatten(model_template(NAME, num_classes=10)).items()})


def same_bytes(a, b):
    return sorted(a) == sorted(b) and all(
        a[k].dtype == b[k].dtype and a[k].shape == b[k].shape and a[k].tobytes() == b[k].tobytes()
        for k in a)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    state = flax_to_torch(random_variables(), NAME)
    path = tmp_path_factory.mktemp("ckpt") / "w.safetensors"
    write_state_dict(state, path)
    return path, state


def test_formats():
    assert [checkpoint_format(p) for p in ("a.safetensors", "a.pth", "a.pt", "a.bin",
                                           "a.msgpack", "a_dir", "a.orbax")] == \
        ["safetensors", "torch", "torch", "torch", "msgpack", "orbax", "orbax"]
    with pytest.raises(CheckpointError, match=r"unknown checkpoint format '.h5'"):
        checkpoint_format("w.h5")


@pytest.mark.parametrize("flax_file", ["w.msgpack", "w_orbax"])
def test_torch_to_flax_to_torch_is_bit_exact(checkpoint, tmp_path, capsys, flax_file):
    src, state = checkpoint
    assert main([str(src), str(tmp_path / flax_file), "--model", NAME]) == 0
    line = capsys.readouterr().out.strip()
    assert re.fullmatch(
        rf"se-convert: {NAME} torch→flax: 134 tensors, 11,\d{{3}},\d{{3}} parameters, layout "
        rf"timm \(detected\), float32, 20 num_batches_tracked dropped, model options "
        rf"num_classes=10 \(from the weights\); \S+ → \S+", line), line
    variables, _ = read_variables(tmp_path / flax_file)
    assert same_bytes(flatten(variables), flatten(random_variables()))
    back = tmp_path / "back.safetensors"
    assert main([str(tmp_path / flax_file), str(back), "--model", NAME]) == 0
    line = capsys.readouterr().out
    assert f"{NAME} flax→torch: 134 tensors" in line and "layout timm (default)" in line
    assert same_bytes(read_state_dict(back)[0], state)


def test_layout_conversion_torch_to_torch(tmp_path, capsys):
    name = "se_article_resnet18"
    rng = np.random.default_rng(1)
    article = unflatten({p: rng.random(s.shape, dtype=np.float32) + (p[-1] == "var")
                         for p, s in flatten(model_template(name)).items()})
    src, dst = tmp_path / "article.safetensors", tmp_path / "timm.safetensors"
    write_state_dict(flax_to_torch(article, name, layout="article"), src)
    assert main([str(src), str(dst), "--model", name, "--out-layout", "timm"]) == 0
    assert "torch→torch" in (out := capsys.readouterr().out)
    assert "layout article (detected) → timm" in out
    state, _ = read_state_dict(dst)
    assert state["layer1.0.se.fc1.weight"].shape == (4, 64)
    assert not any(".se.fc.0." in k for k in state)
    assert same_bytes(state, flax_to_torch(article, name))


def test_bfloat16_files_round_trip(tmp_path):
    variables = random_variables(ml_dtypes.bfloat16)
    state = flax_to_torch(variables, NAME)
    for name in ("w.safetensors", "w.msgpack", "w_dir"):
        path = tmp_path / name
        if name.endswith("safetensors"):
            write_state_dict(state, path)
            assert same_bytes(read_state_dict(path)[0], state)
        else:
            write_variables(variables, path)
            assert same_bytes(flatten(read_variables(path)[0]), flatten(variables))


def test_training_state_is_accepted(tmp_path):
    variables = random_variables()
    path = tmp_path / "state.msgpack"
    write_variables(variables, path)
    from flax import serialization

    path.write_bytes(serialization.msgpack_serialize(
        {"step": np.int32(7), "opt_state": {"mu": np.ones(2)}, **variables}))
    got, notes = read_variables(path)
    assert notes == [f"took {path} params/batch_stats (ignored opt_state, step)"]
    assert same_bytes(flatten(got), flatten(variables))


def test_strict_failure_lists_the_key(checkpoint, tmp_path, capsys):
    _, state = checkpoint
    broken = {k: v for k, v in state.items() if k != "layer3.0.se.fc2.weight"}
    write_state_dict(broken, tmp_path / "broken.safetensors")
    assert main([str(tmp_path / "broken.safetensors"), str(tmp_path / "o.msgpack"),
                 "--model", NAME]) == 1
    err = capsys.readouterr().err
    assert "missing key layer3.0.se.fc2.weight" in err and "1 problem(s)" in err
    assert not (tmp_path / "o.msgpack").exists()


def test_non_strict_converts_and_lists_the_rest(checkpoint, tmp_path, capsys):
    _, state = checkpoint
    write_state_dict({**state, "head.weight": np.ones(3, np.float32)}, tmp_path / "x.safetensors")
    assert main([str(tmp_path / "x.safetensors"), str(tmp_path / "o.msgpack"), "--model", NAME,
                 "--no-strict"]) == 0
    out = capsys.readouterr()
    assert "not converted: unexpected key head.weight" in out.err
    assert "1 problem(s) listed above" in out.out


def test_refuses_to_overwrite_and_wrong_directions(checkpoint, tmp_path, capsys):
    src, _ = checkpoint
    (tmp_path / "o.msgpack").write_bytes(b"")
    assert main([str(src), str(tmp_path / "o.msgpack"), "--model", NAME]) == 1
    assert "exists; pass --overwrite" in capsys.readouterr().err
    assert main([str(src), str(tmp_path / "o2.msgpack"), "--model", NAME,
                 "--out-layout", "article"]) == 1
    assert "--out-layout is for PyTorch → PyTorch" in capsys.readouterr().err
    assert main([str(tmp_path / "missing.safetensors"), str(tmp_path / "o3.msgpack"),
                 "--model", NAME]) == 1
    assert "missing.safetensors: no such file" in capsys.readouterr().err


def test_cli_module_runs_without_torch(checkpoint, tmp_path):
    src, _ = checkpoint
    code = ("import sys; from se_flax.convert.cli import main; "
            f"rc = main([{str(src)!r}, {str(tmp_path / 'o.msgpack')!r}, '--model', {NAME!r}]); "
            "assert 'torch' not in sys.modules, 'torch was imported'; sys.exit(rc)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"se-convert: {NAME} torch→flax: 134 tensors")
    help_text = subprocess.run([sys.executable, "-m", "se_flax.convert", "--help"],
                               capture_output=True, text=True, check=True).stdout
    assert "--no-strict" in help_text and "--layout" in help_text
