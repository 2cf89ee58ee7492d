"""Checkpoints survive SIGKILL during a save, and corrupt ones are detected, named and skipped.

Fast: a small state and `train.checkpoint.Checkpointer` directly; the end-to-end training runs
are in `test_reliability_train.py`.
"""

import random
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from train.checkpoint import Checkpointer, CorruptCheckpoint
from train.testing import ROOT, child_env


def make_state(step, size=128):
    rng = np.random.default_rng(step)  # random floats: incompressible, so a flip is not masked
    return {"step": np.int32(step),
            "params": {"w": rng.standard_normal((size, size)).astype(np.float32),
                       "b": np.full(7, step, np.float32)}}


def assert_state_equal(a, b):
    assert int(a["step"]) == int(b["step"])
    for k in a["params"]:
        np.testing.assert_array_equal(a["params"][k], b["params"][k], err_msg=k)


def largest_file(directory):
    return max((p for p in directory.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)


def flip_bit(path, where=0.5, bit=4):
    data = bytearray(path.read_bytes())
    data[int(len(data) * where)] ^= 1 << bit
    path.write_bytes(bytes(data))


def truncate(path, keep=0.5):
    path.write_bytes(path.read_bytes()[: int(path.stat().st_size * keep)])


@pytest.fixture
def three_steps(tmp_path):
    ckpt = Checkpointer(tmp_path / "checkpoints", keep=5)
    for step in (1, 2, 3):
        ckpt.save(step, make_state(step), {"step": step})
    yield ckpt
    ckpt.close()


def test_a_flipped_bit_is_detected_by_the_digest_where_orbax_alone_misses_it(three_steps):
    ckpt = three_steps
    flip_bit(largest_file(ckpt.directory / "3"))
    # Orbax itself has no checksum: it hands back different numbers without complaint ...
    raw = ckpt.manager.restore(3)["state"]["params"]["w"]
    assert not np.array_equal(raw, make_state(3)["params"]["w"])
    # ... so the digest written at save time is what catches it, naming the directory
    with pytest.raises(CorruptCheckpoint, match=r"checkpoints/3 is corrupt: .*SHA-256 digest"):
        ckpt.restore(make_state(0), 3)
    assert_state_equal(ckpt.restore(make_state(0), 2)[0], make_state(2))


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.parametrize("damage", ["truncate", "delete", "metadata"])
def test_unreadable_checkpoints_name_the_directory_and_the_problem(three_steps, damage):
    ckpt = three_steps
    step_dir = ckpt.directory / "3"
    if damage == "truncate":
        truncate(largest_file(step_dir / "state"))
    elif damage == "delete":
        largest_file(step_dir / "state").unlink()
    else:
        (step_dir / "meta" / "metadata").write_text('{"step": 3, "sha256": ')
    with pytest.raises(CorruptCheckpoint, match=r"checkpoints/3 is corrupt: ") as e:
        ckpt.restore(make_state(0), 3)
    assert "cannot be read" in str(e.value), str(e.value)


def test_resume_falls_back_to_the_newest_intact_checkpoint_and_says_so(three_steps):
    ckpt = three_steps
    flip_bit(largest_file(ckpt.directory / "3"))
    truncate(largest_file(ckpt.directory / "2" / "state"))
    said = []
    state, meta, step = ckpt.restore_newest_intact(make_state(0), said.append)
    assert step == 1 and meta["step"] == 1
    assert_state_equal(state, make_state(1))
    assert len(said) == 3, said
    assert "checkpoints/3 is corrupt" in said[0] and "falling back to step 2" in said[0]
    assert "checkpoints/2 is corrupt" in said[1] and "falling back to step 1" in said[1]
    assert said[2] == "resuming from step 1, the newest intact checkpoint"
    # the corrupt ones are kept for inspection, out of the way: the run can write 2 and 3 again
    assert ckpt.all_steps() == [1]
    assert len(list((ckpt.directory.parent / "checkpoints.corrupt").iterdir())) == 2
    ckpt.save(2, make_state(2), {"step": 2})
    assert_state_equal(ckpt.restore(make_state(0))[0], make_state(2))


def test_no_intact_checkpoint_raises_the_error(three_steps):
    ckpt = three_steps
    for step in (1, 2, 3):
        flip_bit(largest_file(ckpt.directory / str(step)))
    with pytest.raises(CorruptCheckpoint, match=r"checkpoints/1 is corrupt"):
        ckpt.restore_newest_intact(make_state(0), lambda m: None)


CHILD = textwrap.dedent("""
    import sys
    import numpy as np
    from train.checkpoint import Checkpointer
    ckpt = Checkpointer(sys.argv[1], keep=10)
    step = 0
    while True:
        step += 1
        rng = np.random.default_rng(step)
        size = 16 if step == 1 else 2048  # 16 MiB from step 2 on: saving takes a while
        state = {"step": np.int32(step), "params": {
            "w": rng.standard_normal((size, size)).astype(np.float32),
            "b": np.full(7, step, np.float32)}}
        print("saving", step, flush=True)
        ckpt.save(step, state, {"step": step})
""")


def test_sigkill_during_a_save_leaves_only_complete_checkpoints(tmp_path):
    """Kill the writer while Orbax writes step k (a random k, at a random moment of it)."""
    rng = random.Random()
    kill_step, delay = rng.randint(2, 3), rng.uniform(0.0, 0.05)
    print(f"killing during the save of step {kill_step}, {delay * 1e3:.0f} ms after it starts")
    directory = tmp_path / "checkpoints"
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(directory)], cwd=ROOT,
                             env=child_env(1), stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    try:
        while not any(p.name.startswith(f"{kill_step}.orbax-checkpoint-tmp")
                      for p in (directory.iterdir() if directory.exists() else [])):
            assert child.poll() is None, "the writer died on its own"
            assert time.time() < deadline, "no save started within 120 s"
            time.sleep(0.002)
        time.sleep(delay)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    left = sorted(p.name for p in directory.iterdir())
    assert any(".orbax-checkpoint-tmp" in name for name in left), \
        f"the save finished before the kill, nothing was proved: {left}"
    assert str(kill_step) not in left, left
    ckpt = Checkpointer(directory)
    assert ckpt.all_steps() == list(range(1, kill_step)), left
    template = make_state(0, 16 if kill_step == 2 else 2048)
    state, meta, step = ckpt.restore_newest_intact(template, pytest.fail)
    assert_state_equal(state, make_state(kill_step - 1, 16 if kill_step == 2 else 2048))
    assert step == meta["step"] == kill_step - 1
    # and the run can go on: the same step saves again over the half-written leftovers
    ckpt.save(kill_step, make_state(kill_step), {"step": kill_step})
    assert ckpt.latest_step() == kill_step
    ckpt.close()
