"""Benchmark workers: a step runs in its own process and failures come back with the cause."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from bench.steps import batch_arrays  # noqa: E402
from bench.workers import StepWorker  # noqa: E402


def test_worker_runs_steps_in_another_process():
    x, y = batch_arrays(2, 16, 10)
    with StepWorker("torch", "resnet18", x, y, threads=1, num_classes=10, stem="cifar") as w:
        assert w._process.pid is not None and w._process.is_alive()
        seconds = [w.run("train"), w.run("infer")]
    assert all(s > 0 for s in seconds)
    assert not w._process.is_alive()


def test_worker_build_failure_names_the_cause():
    x, y = batch_arrays(2, 16, 10)
    with pytest.raises(RuntimeError, match="worker 'broken' failed:(.|\n)*no_such_model"):
        StepWorker("torch", "no_such_model", x, y, threads=1, label="broken")


def test_worker_rejects_unknown_framework():
    with pytest.raises(ValueError, match="framework must be 'flax' or 'torch', got 'tf'"):
        StepWorker("tf")
