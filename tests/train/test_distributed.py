"""Two processes on localhost (jax.distributed, CPU collectives) train in lockstep to the
parameters of one process with the same global batch.

The single process holds 2 CPU devices, so each device sees the same 8 examples in both runs and
only the runtime differs (one process vs two processes over gloo). Against one device with all
16 examples the float32 sums are taken in another order; that rounding is enough to flip ReLU
kinks within a few steps (see parity_tests/test_train_trajectory.py), so it is not a bitwise
question and is not tested here.
"""

import numpy as np

from train.loop import final_params
from train.testing import TINY_ARGS, launch_processes, run_train

ARGS = [*TINY_ARGS, "--max-steps", "4", "--checkpoint-every", "0"]


def leaves(tree, prefix=""):
    for k, v in sorted(tree.items()):
        if isinstance(v, dict):
            yield from leaves(v, f"{prefix}{k}/")
        else:
            yield prefix + k, np.asarray(v, np.float64)


def test_two_processes_match_one_process(tmp_path):
    single = run_train(*ARGS, "--output-dir", str(tmp_path / "one"), devices=2)
    assert single.returncode == 0, single.stderr[-3000:]

    procs = launch_processes(*ARGS, "--output-dir", str(tmp_path / "two"))
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (_, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err[-3000:]
    assert "2 device(s)" in outs[0][1]

    one, two = final_params(tmp_path / "one"), final_params(tmp_path / "two")
    assert one["step"] == two["step"] == 4
    a = dict(leaves({"params": one["params"], "batch_stats": one["batch_stats"]}))
    b = dict(leaves({"params": two["params"], "batch_stats": two["batch_stats"]}))
    assert a.keys() == b.keys()
    worst = max((np.max(np.abs(a[k] - b[k])) / max(1.0, np.max(np.abs(a[k]))), k) for k in a)
    # Same per-device programs; an all-reduce of two values is exact in any order.
    assert worst[0] <= 1e-6, worst
    moved = max(np.max(np.abs(a[k])) for k in a if k.endswith("fc/kernel"))
    assert moved > 0
