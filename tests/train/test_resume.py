"""Stop the training process mid-run (SIGTERM; SIGKILL for the streamed folder), `--resume`, and
finish with the uninterrupted state; a NaN loss stops the run with its step number and keeps the
last good checkpoint."""

import json
import signal
import subprocess
import time

import numpy as np
import pytest

from train.checkpoint import Checkpointer
from train.loop import final_params
from train.testing import (
    ROOT,
    TINY_ARGS,
    child_env,
    run_train,
    train_command,
    write_jpeg_folder,
)

ARGS = [*TINY_ARGS, "--max-steps", "40", "--checkpoint-every", "5", "--keep-checkpoints", "2"]


def flat(tree, prefix=""):
    out = {}
    items = tree.items() if isinstance(tree, dict) else enumerate(tree)
    for k, v in items:
        if isinstance(v, dict | list | tuple):
            out.update(flat(v, f"{prefix}{k}/"))
        else:
            out[prefix + k] = np.asarray(v)
    return out


def signal_at_checkpoint(args, output_dir, step, sig=signal.SIGKILL):
    """Start `python -m train ARGS`, send it `sig` as soon as checkpoint `step` exists."""
    child = subprocess.Popen(train_command(*args, "--output-dir", str(output_dir)), cwd=ROOT,
                             env=child_env(1), stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while not (output_dir / "checkpoints" / str(step)).exists():
        assert child.poll() is None, "the run ended before it could be signalled"
        assert time.time() < deadline, f"no checkpoint at step {step} within 300 s"
        time.sleep(0.02)
    child.send_signal(sig)
    _, err = child.communicate(timeout=300)
    return child.returncode, err


def saved_state(output_dir, step):
    """Every array of checkpoint `step` (parameters, statistics, optimiser), flattened."""
    ckpt = Checkpointer(output_dir / "checkpoints")
    state = ckpt.manager.restore(step)["state"]
    ckpt.close()
    return flat(state)


def saved_steps(output_dir):
    return sorted(int(p.name) for p in (output_dir / "checkpoints").iterdir() if p.name.isdigit())


def test_sigterm_saves_the_step_reached_and_resume_is_bit_identical(tmp_path):
    """SIGTERM mid-run: a checkpoint of the step reached (between the periodic ones), status 6,
    one line naming the step; `--resume` ends with the uninterrupted run's state, optimiser
    included."""
    straight, stopped = tmp_path / "straight", tmp_path / "stopped"
    proc = run_train(*ARGS, "--output-dir", str(straight))
    assert proc.returncode == 0, proc.stderr[-3000:]

    status, err = signal_at_checkpoint(ARGS, stopped, 10, signal.SIGTERM)
    assert status == 6, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    line = err.strip().splitlines()[-1]
    assert line.startswith("se-train: SIGTERM: stopped after step "), line
    step = int(line.split("stopped after step ")[1].split(";")[0])
    assert 10 <= step < 40 and max(saved_steps(stopped)) == step, (step, saved_steps(stopped))
    assert f"checkpoints/{step}; continue with --resume" in line

    proc = run_train(*ARGS, "--output-dir", str(stopped), "--resume")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"checkpoints/{step}" in proc.stdout.split("resumed from")[1].splitlines()[0]
    a, b = final_params(straight), final_params(stopped)
    assert a["step"] == b["step"] == 40
    fa, fb = flat(a), flat(b)
    assert fa.keys() == fb.keys()
    for key in fa:
        np.testing.assert_array_equal(fa[key], fb[key], err_msg=key, strict=True)
    sa, sb = saved_state(straight, 40), saved_state(stopped, 40)
    assert sa.keys() == sb.keys() and any("opt_state" in k for k in sa)
    for key in sa:
        np.testing.assert_array_equal(sa[key], sb[key], err_msg=key, strict=True)
    # the resumed run logged the steps after the stop, and only those
    steps = [json.loads(line)["step"] for line in (stopped / "metrics.jsonl").open()]
    assert steps[-1] == 40


def test_rerun_without_resume_refuses_to_mix_runs(tmp_path):
    (tmp_path / "checkpoints" / "5").mkdir(parents=True)
    (tmp_path / "checkpoints" / "5" / "commit_success.txt").write_text("ok")
    proc = run_train(*ARGS, "--output-dir", str(tmp_path))
    if proc.returncode == 0:
        pytest.fail("training silently continued in a directory with checkpoints")
    assert "pass --resume" in proc.stderr


def test_nan_loss_stops_with_the_step_and_keeps_the_last_good_checkpoint(tmp_path):
    proc = run_train(*TINY_ARGS, "--max-steps", "6", "--checkpoint-every", "1", "--lr", "1e30",
                     "--warmup-epochs", "0", "--output-dir", str(tmp_path))
    assert proc.returncode == 4, proc.stderr[-3000:]
    msg = proc.stderr.strip().splitlines()[-1]
    assert "Traceback" not in proc.stderr and "at step" in msg, msg
    bad_step = int(msg.split("at step ")[1].split(";")[0])
    saved = sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit())
    assert saved and max(saved) == bad_step - 1, (saved, msg)
    assert f"last good checkpoint is step {bad_step - 1}" in msg
    params = flat(final_params(tmp_path))
    assert all(np.isfinite(v).all() for k, v in params.items() if k != "step")


@pytest.mark.slow  # three runs with worker processes (~55 s on 2 cores)
def test_streamed_jpeg_folder_with_workers_resumes_bit_identically(tmp_path):
    """Random-resized crops decoded in a worker process: a killed and resumed run is exact (the
    uninterrupted run also writes a profiler trace, which must not change its numbers)."""
    data = write_jpeg_folder(tmp_path / "jpegs", classes=3, per_class=12, size=(30, 40))
    args = ["--dataset", f"folder:{data}", "--image-size", "16", "--crop", "random_resized",
            "--workers", "1", "--batch-size", "8", "--epochs", "5", "--max-steps", "12",
            "--checkpoint-every", "3", "--export", "false", "--tensorboard", "false",
            "--progress", "false", "--log-every", "3"]
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    proc = run_train(*args, "--output-dir", str(straight), "--profile-steps", "1:3")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "1 input worker(s) per host" in proc.stderr
    assert list((straight / "profile").rglob("*.xplane.pb")), "no profiler trace written"
    logged = [json.loads(line) for line in (straight / "metrics.jsonl").open()]
    train_rows = [r for r in logged if r["split"] == "train"]
    assert all(r["input_wait_sec"] >= 0 and r["input_images_per_sec"] > 0 for r in train_rows)

    status, err = signal_at_checkpoint(args, killed, 6)
    assert status == -signal.SIGKILL, err[-3000:]
    proc = run_train(*args, "--output-dir", str(killed), "--resume")
    assert proc.returncode == 0, proc.stderr[-3000:]
    fa, fb = flat(final_params(straight)), flat(final_params(killed))
    assert fa.keys() == fb.keys() and fa["step"] == 12
    for key in fa:
        np.testing.assert_array_equal(fa[key], fb[key], err_msg=key)
