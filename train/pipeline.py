"""The host input pipeline: Grain datasets of whole batches, built in worker processes.

A training run is `grain.MapDataset.range(start, end)` mapped by `TrainBatch`: element `s` is
this process's slice of the global batch of step `s`, read and transformed by the source
(decoding, random-resized crops, clip sampling). Because each element is a pure function of
`(seed, s)`, a resumed run restarts the range at its step and sees the same batches, and any
number of processes or workers gives the same global batch; the loader needs no iterator state.

With `workers > 0`, Grain's `mp_prefetch` runs the mapping in that many processes (each takes
every `workers`-th step, and the main process reads them back in order through shared memory);
with `workers = 0` it runs in threads of the main process, which suits in-memory sources.
Grain is used instead of hand-written multiprocessing because it already solves what a loader
for many hosts needs: ordered, deterministic output whatever the worker count, per-worker
buffers in shared memory, worker errors re-raised in the main process with their traceback, and
clean shutdown.

Each batch carries the seconds its worker spent producing it, so the loop can report both the
time the step waited for input and the rate the host pipeline sustains (`InputClock`).
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from train.data import ArraySource, Source, batch_indices, video_feature_without_tensorflow
from train.lifeline import exit_with_parent

PREFETCH_PER_WORKER = 2  # batches each worker keeps ready
MAX_AUTO_WORKERS = 8
EVAL_BATCHES_PER_WORKER = 4


class HostBatch(NamedTuple):
    """One process's slice of a global batch, with the seconds it took to produce."""

    step: int
    images: np.ndarray
    labels: np.ndarray
    seconds: float


@dataclass(frozen=True)
class TrainBatch:
    """Step → this process's slice of the step's global batch (picklable for workers)."""

    source: Source
    global_batch: int
    seed: int
    process_index: int = 0
    process_count: int = 1

    def __call__(self, step: int) -> dict[str, Any]:
        """The batch of `step` with the seconds it took."""
        start = time.perf_counter()
        step = int(step)
        local = self.global_batch // self.process_count
        idx = batch_indices(step, len(self.source), self.global_batch, self.seed)
        mine = idx[self.process_index * local:(self.process_index + 1) * local]
        images, labels = self.source.get(mine, step=step)
        return {"step": np.int64(step), "images": images, "labels": labels,
                "seconds": np.float64(time.perf_counter() - start)}


@dataclass(frozen=True)
class EvalBatch:
    """Batch number → `(images, labels, mask)`: the source in order, the last batch padded."""

    source: Source
    global_batch: int
    process_index: int = 0
    process_count: int = 1

    def __call__(self, number: int) -> dict[str, Any]:
        """Evaluation batch `number` with its mask and the seconds it took."""
        start = time.perf_counter()
        n, local = len(self.source), self.global_batch // self.process_count
        first = int(number) * self.global_batch + self.process_index * local
        idx = np.arange(first, first + local)
        valid = idx < n
        images, labels = self.source.get(np.where(valid, idx, n - 1))
        keep = valid.reshape(-1, *[1] * (images.ndim - 1))
        return {"images": np.where(keep, images, 0).astype(np.uint8),
                "labels": np.where(valid, labels, 0).astype(np.int32),
                "mask": valid.astype(np.float32),
                "seconds": np.float64(time.perf_counter() - start)}


def default_workers(source: Source) -> int:
    """0 for sources held in memory, else one worker per CPU core (at most 8)."""
    if isinstance(source, ArraySource):
        return 0
    return max(1, min(MAX_AUTO_WORKERS, os.cpu_count() or 1))


@dataclass(frozen=True)
class WorkerInit:
    """Run in each worker before the dataset is unpickled.

    Prepares what reading TFDS needs there, and ends the worker when the trainer that started
    it is gone: a trainer killed by a signal (preemption, `kill -9`) cannot stop its workers.
    """

    trainer_pid: int

    def __call__(self, index: int, count: int) -> None:
        """Set up worker `index` of `count`."""
        del index, count
        video_feature_without_tensorflow()
        exit_with_parent(self.trainer_pid)


def _iterate(fn: TrainBatch | EvalBatch, start: int, stop: int, workers: int,
             threads: int) -> Iterator[dict[str, Any]]:
    """Grain iterator over `fn(start) … fn(stop - 1)` in order; closes its workers at the end."""
    import grain
    from absl import flags

    if not flags.FLAGS.is_parsed():  # Grain reads its absl flags; a program may not parse them
        flags.FLAGS.mark_as_parsed()
    ds = grain.MapDataset.range(start, stop).map(fn)
    if workers > 0:
        per_worker = grain.ReadOptions(num_threads=1, prefetch_buffer_size=1)
        it = iter(ds.to_iter_dataset(per_worker).mp_prefetch(grain.MultiprocessingOptions(
            num_workers=workers, per_worker_buffer_size=PREFETCH_PER_WORKER),
            worker_init_fn=WorkerInit(os.getpid())))
    else:
        threads = max(threads, 1)
        it = iter(ds.to_iter_dataset(grain.ReadOptions(num_threads=threads,
                                                       prefetch_buffer_size=2 * threads)))
    try:
        yield from it
    finally:
        close = getattr(it, "close", None)
        if close is not None:
            close()


def _own(array: np.ndarray) -> np.ndarray:
    """A private copy of a batch array, so the worker's shared-memory block is freed at once."""
    return np.array(array, copy=True)


def train_batches(source: Source, start_step: int, end_step: int, global_batch: int, seed: int,
                  process_index: int = 0, process_count: int = 1, workers: int = 0,
                  threads: int = 2) -> Iterator[HostBatch]:
    """The slice of each step's global batch (in `[start_step, end_step)`) for this process."""
    fn = TrainBatch(source, global_batch, seed, process_index, process_count)
    for b in _iterate(fn, start_step, end_step, workers, threads):
        yield HostBatch(int(b["step"]), _own(b["images"]), _own(b["labels"]),
                        float(b["seconds"]))


def eval_batches(source: Source, global_batch: int, process_index: int = 0,
                 process_count: int = 1, workers: int = 0, threads: int = 2
                 ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """`(images, labels, mask)` over the whole source in order; the last batch is zero-padded.

    Worker processes are started only for at least `EVAL_BATCHES_PER_WORKER` batches each;
    a smaller evaluation set is read by threads (starting a worker takes seconds).
    """
    fn = EvalBatch(source, global_batch, process_index, process_count)
    count = -(-len(source) // global_batch)
    workers = min(workers, count // EVAL_BATCHES_PER_WORKER)
    for b in _iterate(fn, 0, count, workers, threads):
        yield _own(b["images"]), _own(b["labels"]), _own(b["mask"])


class InputClock:
    """Input-side timings of a logging interval: the loop's wait and the host pipeline's rate.

    `wait` is the time the training loop spent blocked on the next batch; `produced` the
    images the host pipeline made and `busy` the seconds its workers spent making them, so
    `images_per_sec = workers * produced / busy` is the rate this host's pipeline sustains
    (its capacity, not the rate the chips happened to consume).
    """

    def __init__(self, workers: int) -> None:
        self.parallel = max(workers, 1)
        self.wait = self.busy = 0.0
        self.produced = 0

    def waited(self, seconds: float) -> None:
        """The loop waited `seconds` for a batch."""
        self.wait += seconds

    def made(self, images: int, seconds: float) -> None:
        """A worker made a batch of `images` in `seconds`."""
        self.produced += images
        self.busy += seconds

    def read(self, interval: float) -> dict[str, float]:
        """Metrics of the interval of `interval` seconds, then start a new interval."""
        values = {"input_wait_fraction": self.wait / max(interval, 1e-9),
                  "input_wait_sec": self.wait}
        if self.busy > 0:
            values["input_images_per_sec"] = self.parallel * self.produced / self.busy
        self.wait = self.busy = 0.0
        self.produced = 0
        return values


def prefetch(it: Iterator[Any], put: Callable[[Any], Any], depth: int = 2) -> Iterator[Any]:
    """Run `it` and `put` (host → device transfer) in a background thread, `depth` ahead."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    done = object()
    stop = threading.Event()

    def worker() -> None:
        try:
            for item in it:
                if stop.is_set():
                    return
                q.put(put(item))
            q.put(done)
        except BaseException as e:  # surfaced in the consumer
            q.put(e)

    thread = threading.Thread(target=worker, daemon=True)
    thread.start()
    try:
        while True:
            item = q.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while thread.is_alive():  # unblock a worker waiting on a full queue
            try:
                q.get(timeout=0.1)
            except queue.Empty:
                pass
