"""Each benchmarked step in its own process, driven in turn from the parent.

JAX and PyTorch in one process disturb each other: when their steps alternate, each runtime's
idle worker threads, allocator and caches meet the other's. Measured on the 2-core CI machine
(bench/BENCHMARKS.md): the Flax step ran ~10% slower when a PyTorch step ran between its
steps in the same process than with PyTorch idle. A `StepWorker` builds one framework's steps
(`bench.steps.flax_steps` / `torch_steps`) in a fresh spawned process with its own environment
(e.g. `XLA_FLAGS`); the parent sends "run" and waits, so the steps
still alternate A B A B … and only one process works at a time.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import time
import traceback
from typing import Any

from bench.steps import Step


def _serve(conn: Any, framework: str, env: dict[str, str], threads: int,
           args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """Child process: build the steps, then run one per request until told to stop."""
    os.environ.update(env)
    try:
        from bench import steps as builders
        if framework == "torch":
            import torch
            torch.set_num_threads(threads)
        build = builders.flax_steps if framework == "flax" else builders.torch_steps
        steps = build(*args, **kwargs)
        conn.send(("ready", None))
    except Exception:  # report, then exit: the parent raises with this traceback
        conn.send(("error", traceback.format_exc()))
        return
    while True:
        request, mode = conn.recv()
        if request == "stop":
            return
        try:
            start = time.perf_counter()
            steps[mode]()
            conn.send(("done", time.perf_counter() - start))
        except Exception:
            conn.send(("error", traceback.format_exc()))
            return


class StepWorker:
    """One framework's `train`/`infer` steps, built and run in a separate process.

    `framework` is `"flax"` or `"torch"`; `args`/`kwargs` go to `bench.steps.flax_steps` or
    `torch_steps`; `env` is added to the child's environment before anything is imported.
    """

    def __init__(self, framework: str, *args: Any, env: dict[str, str] | None = None,
                 threads: int = 2, label: str = "", **kwargs: Any) -> None:
        if framework not in ("flax", "torch"):
            raise ValueError(f"framework must be 'flax' or 'torch', got {framework!r}")
        self.label = label or framework
        ctx = mp.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._process = ctx.Process(target=_serve, daemon=True,
                                    args=(child, framework, dict(env or {}), threads, args,
                                          kwargs))
        self._process.start()
        child.close()  # only the child holds its end now: if it dies, recv raises EOFError
        self._reply("ready")

    def _reply(self, expected: str) -> Any:
        try:
            status, value = self._conn.recv()
        except EOFError:
            raise RuntimeError(f"benchmark worker {self.label!r} died "
                               f"(exit code {self._process.exitcode})") from None
        if status == "error":
            raise RuntimeError(f"benchmark worker {self.label!r} failed:\n{value}")
        assert status == expected, (status, expected)
        return value

    def run(self, mode: str) -> float:
        """Run one `mode` step (`"train"` or `"infer"`); seconds measured inside the worker."""
        self._conn.send(("run", mode))
        return self._reply("done")

    def step(self, mode: str) -> Step:
        """A zero-argument callable running one `mode` step, for `bench.steps.alternate`."""
        def run_step() -> None:
            self.run(mode)

        return run_step

    def close(self) -> None:
        """Stop the worker process."""
        if self._process.is_alive():
            self._conn.send(("stop", None))
            self._process.join(timeout=30)
        if self._process.is_alive():
            self._process.kill()

    def __enter__(self) -> StepWorker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def close_all(workers: dict[Any, StepWorker] | list[StepWorker]) -> None:
    """Stop every worker (dict values or list items)."""
    for w in (workers.values() if isinstance(workers, dict) else workers):
        w.close()

