"""Two `jax.distributed` processes on localhost: SIGTERM to one → both save the same step and exit
with status 6; SIGKILL of one (its whole session, like a lost host) → the survivor exits with
status 7 and one line within 60 s. `--resume` on both then ends bit-identical to an
uninterrupted two-process run, so no partial checkpoint was restored."""

import os
import re
import signal
import time

import numpy as np
import pytest

from train.checkpoint import Checkpointer
from train.supervisor import EXIT_LOST_PEER, newest_complete_checkpoint
from train.testing import TINY_ARGS, launch_processes

pytestmark = pytest.mark.slow  # several two-process runs (about 5 minutes on 2 cores)

ARGS = [*TINY_ARGS, "--log-every", "1", "--max-steps", "40", "--checkpoint-every", "10",
        "--keep-checkpoints", "10"]


def saved_state(output_dir, step):
    """Every array of checkpoint `step` (parameters, statistics, optimiser), flattened."""
    ckpt = Checkpointer(output_dir / "checkpoints")
    state = ckpt.manager.restore(step)["state"]
    ckpt.close()
    out = {}

    def walk(tree, prefix):
        items = tree.items() if isinstance(tree, dict) else enumerate(tree)
        for k, v in items:
            if isinstance(v, dict | list | tuple):
                walk(v, f"{prefix}{k}/")
            else:
                out[f"{prefix}{k}"] = np.asarray(v)

    walk(state, "")
    return out


def finish(procs, timeout=600):
    """`[(status, stderr), ...]` of `procs`, waiting for each."""
    errs = [p.communicate(timeout=timeout)[1] for p in procs]
    return [(p.returncode, err) for p, err in zip(procs, errs, strict=True)]


def run_to_end(output_dir, *extra):
    results = finish(launch_processes(*ARGS, "--output-dir", str(output_dir), *extra))
    for status, err in results:
        assert status == 0, err[-3000:]
    return results


def start_and_wait_for_checkpoint(output_dir, step=10):
    procs = launch_processes(*ARGS, "--output-dir", str(output_dir))
    deadline = time.time() + 300
    while not (output_dir / "checkpoints" / str(step)).exists():
        assert all(p.poll() is None for p in procs), finish(procs)
        assert time.time() < deadline, f"no checkpoint at step {step} within 300 s"
        time.sleep(0.02)
    return procs


def assert_same_final_state(a, b, step=40):
    sa, sb = saved_state(a, step), saved_state(b, step)
    assert sa.keys() == sb.keys() and any("opt_state" in k for k in sa)
    for key in sa:
        np.testing.assert_array_equal(sa[key], sb[key], err_msg=key, strict=True)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    out = tmp_path_factory.mktemp("uninterrupted")
    run_to_end(out)
    return out


def test_sigterm_to_one_process_saves_the_same_step_everywhere(tmp_path, uninterrupted):
    out = tmp_path / "run"
    procs = start_and_wait_for_checkpoint(out)
    procs[1].send_signal(signal.SIGTERM)
    results = finish(procs)
    steps = []
    for status, err in results:
        assert status == 6, err[-3000:]
        assert "Traceback" not in err, err[-3000:]
        line = err.strip().splitlines()[-1]
        match = re.fullmatch(r"se-train: SIGTERM: stopped after step (\d+); checkpoint saved in "
                             r"(\S+); continue with --resume", line)
        assert match, line
        steps.append(int(match[1]))
    assert steps[0] == steps[1] and 10 <= steps[0] < 40, steps
    assert newest_complete_checkpoint(out) == steps[0]

    run_to_end(out, "--resume")
    assert_same_final_state(uninterrupted, out)


@pytest.mark.parametrize("victim", [1, 0], ids=["worker", "coordinator"])
def test_sigkill_of_one_process_stops_the_other_with_one_line(tmp_path, uninterrupted,
                                                              victim):
    out = tmp_path / "run"
    procs = start_and_wait_for_checkpoint(out)
    survivor = 1 - victim
    os.killpg(procs[victim].pid, signal.SIGKILL)
    killed = time.time()
    _, err = procs[survivor].communicate(timeout=300)
    waited = time.time() - killed
    procs[victim].wait()
    assert procs[survivor].returncode == EXIT_LOST_PEER, err[-3000:]
    assert waited < 60, waited
    line = err.strip().splitlines()[-1]
    newest = newest_complete_checkpoint(out)
    assert newest is not None and newest >= 10
    match = re.fullmatch(rf"se-train: process {survivor} of 2 stopped after step (\d+): (.+); the "
                         rf"last complete checkpoint is step {newest} in \S+; restart every "
                         r"process with --resume", line)
    assert match, line
    assert int(match[1]) >= 10
    assert "Traceback" not in err, err[-3000:]
    print(f"survivor stopped {waited:.1f} s after the kill: {line}")

    run_to_end(out, "--resume")
    assert_same_final_state(uninterrupted, out)
