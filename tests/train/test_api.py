"""`--api nnx`: the NNX twins train through the same step, checkpoints and export as Linen."""

import json

import numpy as np
import pytest

from train.config import ConfigError, TrainConfig
from train.loop import final_params
from train.testing import TINY_ARGS, run_train

ARGS = [*TINY_ARGS, "--max-steps", "6", "--log-every", "1", "--checkpoint-every", "6"]


def _losses(run_dir):
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in rows if r["split"] == "train"}


def _leaves(tree, prefix=""):
    out = {}
    for k, v in tree.items():
        out.update(_leaves(v, f"{prefix}{k}/") if isinstance(v, dict) else
                   {prefix + k: np.asarray(v)})
    return out


def test_nnx_run_follows_the_linen_run_from_the_same_seed(tmp_path):
    """Same seed and data: the same loss at every step and the same final variables."""
    runs = {}
    for api in ("linen", "nnx"):
        proc = run_train(*ARGS, "--api", api, "--output-dir", str(tmp_path / api))
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert f"se_resnet18 ({api}) on digits" in proc.stdout + proc.stderr
        runs[api] = tmp_path / api
    linen, nnx = _losses(runs["linen"]), _losses(runs["nnx"])
    assert sorted(linen) == sorted(nnx) == list(range(1, 7))
    worst = max(abs(nnx[s] - linen[s]) / abs(linen[s]) for s in linen)
    assert worst <= 1e-5, (linen, nnx)
    ours, ref = _leaves(final_params(runs["nnx"])), _leaves(final_params(runs["linen"]))
    assert set(ours) == set(ref) and len(ref) > 100
    for k in ref:
        np.testing.assert_allclose(ours[k], ref[k], rtol=1e-5, atol=1e-6, err_msg=k)


def test_an_unknown_api_is_named():
    with pytest.raises(ConfigError, match=r"api='torch' is invalid; expected one of 'linen', "
                                          r"'nnx'"):
        TrainConfig(api="torch").validate()
