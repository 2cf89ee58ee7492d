"""`--api nnx`: the NNX twins train through the same step, checkpoints and export as Linen."""

import json

import numpy as np
import pytest

from train.config import ConfigError, TrainConfig
from train.loop import final_params
from train.testing import TINY_ARGS, run_train

ARGS = [*TINY_ARGS, "--log-every", "1", "--checkpoint-every", "3"]


def _losses(run_dir):
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in rows if r["split"] == "train"}


def _leaves(tree, prefix=""):
    out = {}
    for k, v in tree.items():
        out.update(_leaves(v, f"{prefix}{k}/") if isinstance(v, dict) else
                   {prefix + k: np.asarray(v)})
    return out


def _train(*args):
    proc = run_train(*ARGS, *args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout + proc.stderr


def test_nnx_run_follows_the_linen_run_and_resumes_as_linen(tmp_path):
    """Same seed and data: the same loss at every step; an NNX checkpoint resumes in Linen.

    Linen trains 6 steps straight; NNX trains steps 1-3 and Linen resumes its checkpoint for
    steps 4-6. The NNX step compiles to the Linen program (the same operations on the same
    arrays), and resuming is bit-identical, so every loss and the final variables must be equal
    bit for bit; the issue's bound of 1e-5 relative would hide a port bug.
    """
    linen, mixed = tmp_path / "linen", tmp_path / "nnx_then_linen"
    assert "se_resnet18 (linen) on digits" in _train("--max-steps", "6", "--output-dir",
                                                     str(linen))
    assert "se_resnet18 (nnx) on digits" in _train("--api", "nnx", "--max-steps", "3",
                                                   "--output-dir", str(mixed))
    _train("--api", "linen", "--max-steps", "6", "--resume", "--output-dir", str(mixed))
    ref, ours = _losses(linen), _losses(mixed)
    assert sorted(ref) == sorted(ours) == list(range(1, 7))
    assert ours == ref
    final, final_ref = _leaves(final_params(mixed)), _leaves(final_params(linen))
    assert set(final) == set(final_ref) and len(final_ref) > 100
    for k in final_ref:
        assert np.array_equal(final[k], final_ref[k]), k


def test_an_unknown_api_is_named():
    with pytest.raises(ConfigError, match=r"api='torch' is invalid; expected one of 'linen', "
                                          r"'nnx'"):
        TrainConfig(api="torch").validate()
