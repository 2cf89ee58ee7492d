"""The Grain input pipeline: the same batches whatever the workers, resume point or processes."""

import numpy as np
import pytest
from PIL import Image

from train.data import load_dataset
from train.pipeline import InputClock, default_workers, eval_batches, train_batches


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("jpegs")
    rng = np.random.default_rng(0)
    for c in ("a", "b", "c"):
        (root / c).mkdir()
        for i in range(12):
            h, w = rng.integers(24, 48, 2)
            Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(
                root / c / f"{i}.jpg")
    return load_dataset(f"folder:{root}", image_size=16, crop="random_resized",
                        eval_fraction=0.25)


def collect(batches):
    return [(b.step, b.images, b.labels) for b in batches]


def test_workers_do_not_change_the_batches(folder):
    threads = collect(train_batches(folder.train, 0, 6, 8, seed=5, workers=0))
    procs = collect(train_batches(folder.train, 0, 6, 8, seed=5, workers=2))
    assert [s for s, _, _ in procs] == list(range(6))
    for (_, xa, ya), (_, xb, yb) in zip(threads, procs, strict=True):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)


def test_a_resumed_loader_continues_with_the_same_batches(folder):
    whole = collect(train_batches(folder.train, 0, 6, 8, seed=5))
    resumed = collect(train_batches(folder.train, 4, 6, 8, seed=5))
    for (sa, xa, _), (sb, xb, _) in zip(whole[4:], resumed, strict=True):
        assert sa == sb
        np.testing.assert_array_equal(xa, xb)


def test_processes_split_each_global_batch(folder):
    whole = collect(train_batches(folder.train, 2, 4, 8, seed=1))
    halves = [collect(train_batches(folder.train, 2, 4, 8, 1, p, 2)) for p in (0, 1)]
    for s in range(2):
        np.testing.assert_array_equal(
            np.concatenate([halves[0][s][1], halves[1][s][1]]), whole[s][1])


def test_eval_batches_cover_the_source_once(folder):
    batches = list(eval_batches(folder.eval, 4))
    images = np.concatenate([b[0] for b in batches])
    mask = np.concatenate([b[2] for b in batches])
    assert mask.sum() == len(folder.eval) == 9 and len(images) == 12
    np.testing.assert_array_equal(images[:9], folder.eval.get(np.arange(9))[0])


def test_default_workers_by_source(folder):
    assert default_workers(load_dataset("digits").train) == 0
    assert default_workers(folder.train) >= 1


def test_input_clock_reports_wait_and_capacity():
    clock = InputClock(workers=4)
    clock.waited(0.5)
    clock.made(64, 2.0)
    clock.made(64, 2.0)
    values = clock.read(interval=2.0)
    assert values["input_wait_fraction"] == pytest.approx(0.25)
    assert values["input_images_per_sec"] == pytest.approx(4 * 128 / 4.0)
    assert clock.read(1.0)["input_wait_sec"] == 0.0


LOADER_FOREVER = """
import sys
from train.data import load_dataset
from train.pipeline import train_batches
if __name__ == "__main__":
    ds = load_dataset("folder:" + sys.argv[1], image_size=16, crop="random_resized")
    for b in train_batches(ds.train, 0, 10**6, 4, 0, workers=1):
        print("batch", flush=True)
"""


def test_workers_end_when_the_trainer_is_killed(tmp_path):
    """A trainer killed by SIGKILL (preemption) cannot stop its workers: they stop themselves."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from train.testing import ROOT, write_jpeg_folder

    data = write_jpeg_folder(tmp_path / "jpegs", classes=2, per_class=6, size=(20, 30))
    script = tmp_path / "loader.py"
    script.write_text(LOADER_FOREVER)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    trainer = subprocess.Popen([sys.executable, str(script), str(data)], stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, env=env, text=True)
    assert trainer.stdout.readline().strip() == "batch"  # the worker is running
    workers = [pid for pid in subprocess.run(["pgrep", "-P", str(trainer.pid)],
                                             capture_output=True, text=True).stdout.split()
               if "spawn_main" in open(f"/proc/{pid}/cmdline").read()]
    assert workers, "no worker process found"
    trainer.send_signal(signal.SIGKILL)
    trainer.wait()
    deadline = time.time() + 10
    while time.time() < deadline and any(os.path.exists(f"/proc/{p}") for p in workers):
        time.sleep(0.2)
    alive = [p for p in workers if os.path.exists(f"/proc/{p}")]
    for p in alive:
        os.kill(int(p), signal.SIGKILL)
    assert not alive, f"workers {alive} outlived their trainer"
