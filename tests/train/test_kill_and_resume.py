"""End to end: SIGKILL during a checkpoint save, a corrupt newest checkpoint, `--resume` — the
run finishes bit-identical to an uninterrupted one; two fresh runs agree bit for bit (CPU).

Three short subprocess runs of the digits config (about a minute and a half on 2 cores).
"""

import random
import signal
import subprocess
import time

import numpy as np
import pytest

from train.checkpoint import Checkpointer
from train.loop import final_params
from train.testing import ROOT, TINY_ARGS, child_env, run_train, train_command

ARGS = [*TINY_ARGS, "--max-steps", "8", "--checkpoint-every", "2", "--keep-checkpoints", "4"]


def flat(tree, prefix=""):
    out = {}
    items = tree.items() if isinstance(tree, dict) else enumerate(tree)
    for k, v in items:
        if isinstance(v, dict | list | tuple):
            out.update(flat(v, f"{prefix}{k}/"))
        else:
            out[f"{prefix}{k}"] = np.asarray(v)
    return out


def saved_state(output_dir, step):
    ckpt = Checkpointer(output_dir / "checkpoints")
    state = ckpt.manager.restore(step)["state"]
    ckpt.close()
    return flat(state)


def assert_bit_identical(a, b):
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key, strict=True)


def flip_bit(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x08
    path.write_bytes(bytes(data))


@pytest.mark.slow  # three runs (~40-60 s on 2 cores); SIGTERM + resume is in test_resume.py
def test_kill_during_save_corrupt_newest_then_resume_is_bit_identical(tmp_path):
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    proc = run_train(*ARGS, "--output-dir", str(straight))
    assert proc.returncode == 0, proc.stderr[-3000:]

    # SIGKILL the second run while Orbax writes step 6 (at a random moment of the save)
    delay = random.uniform(0.0, 0.02)
    child = subprocess.Popen(train_command(*ARGS, "--output-dir", str(killed)), cwd=ROOT,
                             env=child_env(1), stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    ckdir, deadline = killed / "checkpoints", time.time() + 300
    try:
        while not (ckdir.exists() and any(p.name.startswith("6.orbax-checkpoint-tmp")
                                          for p in ckdir.iterdir())):
            assert child.poll() is None, "the run ended before it could be killed"
            assert time.time() < deadline, "no save of step 6 within 300 s"
            time.sleep(0.002)
        time.sleep(delay)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    left = sorted(p.name for p in ckdir.iterdir())
    print(f"killed {delay * 1e3:.0f} ms into the save of step 6; left on disk: {left}")
    assert "8" not in left, left

    # determinism: two fresh processes wrote bit-identical states at step 2 and 4
    for step in (2, 4):
        assert_bit_identical(saved_state(straight, step), saved_state(killed, step))

    # now also flip one bit in the newest complete checkpoint (step 4)
    flip_bit(max((p for p in (ckdir / "4").rglob("*") if p.is_file()),
                 key=lambda p: p.stat().st_size))
    proc = run_train(*ARGS, "--output-dir", str(killed), "--resume")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "checkpoints/4 is corrupt" in proc.stderr and "falling back to step 2" in proc.stderr, \
        proc.stderr[-3000:]
    assert "resumed from" in proc.stdout and proc.stdout.split("resumed from")[1].split()[0] \
        .endswith("checkpoints/2"), proc.stdout
    a, b = final_params(straight), final_params(killed)
    assert a["step"] == b["step"] == 8
    assert_bit_identical(flat(a), flat(b))
    assert_bit_identical(saved_state(straight, 8), saved_state(killed, 8))  # optimiser too
