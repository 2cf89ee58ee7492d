"""Step metrics on their way to the logs: batched host syncs, NaN/Inf checks, float16 skips.

The compiled step returns its metrics as device arrays; `StepMetrics` keeps them pending and
reads them back every few steps (one host sync per flush, not per step). Each flush checks them:
a non-finite loss or gradient norm raises `NonFiniteLoss` naming the step (so no checkpoint is
written after it), a step that float16 loss scaling skipped is counted and reported instead.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from train.checkpoint import Checkpointer
from train.metrics import MetricLogger, Progress
from train.pipeline import InputClock


class NonFiniteLoss(RuntimeError):
    """The training loss (or the gradient norm) became NaN or infinite."""

    def __init__(self, step: int, loss: float, last_checkpoint: int | None, directory: Path,
                 what: str = "loss"):
        self.step, self.loss, self.last_checkpoint, self.what = step, loss, last_checkpoint, what
        kept = (f"the last good checkpoint is step {last_checkpoint} in {directory}"
                if last_checkpoint is not None else "no checkpoint had been written yet")
        super().__init__(f"{what} is {loss} at step {step}; stopped. {kept}. Lower lr, raise "
                         "warmup_epochs or use float32, then resume with --resume")


def check_finite(step: int, values: dict[str, float], last_checkpoint: int | None,
                 directory: Path) -> bool:
    """True if step `step` (1-based) was skipped by float16 loss scaling; raise on NaN/Inf.

    A step that loss scaling skipped did not change the parameters, so its non-finite loss or
    gradients are expected; otherwise a non-finite loss or gradient norm stops the run.
    """
    if values.get("skipped", 0.0) > 0:
        return True
    for key, what in (("loss", "loss"), ("grad_norm", "gradient norm")):
        if key in values and not math.isfinite(values[key]):
            raise NonFiniteLoss(step, values[key], last_checkpoint, directory, what)
    return False


class StepMetrics:
    """Pending train-step metrics, flushed to the logger and the progress bar."""

    def __init__(self, read: Any, logger: MetricLogger, progress: Progress,
                 checkpoints: Checkpointer, batch_size: int, report_skipped: bool,
                 lead: bool, input_clock: InputClock | None = None) -> None:
        self.read = read  # device metrics → {name: float} (the driver's `metrics`)
        self.logger, self.progress, self.checkpoints = logger, progress, checkpoints
        self.batch_size, self.report_skipped, self.lead = batch_size, report_skipped, lead
        self.input = input_clock or InputClock(0)
        self.pending: list[tuple[int, Any]] = []
        self.last: dict[str, float] = {}
        self.skipped = 0
        self._clock = time.time()

    def add(self, step: int, metrics: Any) -> None:
        """Keep the metrics of step `step` (0-based) until the next flush."""
        self.pending.append((step, metrics))

    def restart_clock(self) -> None:
        """Start timing images/sec afresh (after an evaluation, which must not count)."""
        self._clock = time.time()
        self.input.read(1.0)  # and the input wait with it

    def flush(self, step_done: int) -> None:
        """Read back, check and log every pending step; `step_done` is the last one + 1."""
        if not self.pending:
            return
        pending, self.pending = self.pending, []
        rows = []
        for step, m in pending:
            values = self.read(m)
            if check_finite(step + 1, values, self.checkpoints.latest_step(),
                            self.checkpoints.directory):
                self.skipped += 1
                if self.lead:
                    self.progress.write(f"step {step + 1}: float16 gradients overflowed; update "
                                        f"skipped, loss scale now {values.get('loss_scale')}")
            else:
                rows.append(values)
        now = time.time()
        interval = max(now - self._clock, 1e-9)
        ips = len(pending) * self.batch_size / interval
        self._clock = now
        if rows:
            self.last = {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}
        extra = {"skipped_steps": self.skipped} if self.report_skipped else {}
        feed = self.input.read(interval)
        self.logger.log(step_done, "train", {**self.last, **extra, "images_per_sec": ips,
                                             **feed})
        bar = {"loss": f"{self.last.get('loss', float('nan')):.4f}", "img_s": f"{ips:.0f}",
               "wait": f"{100 * feed['input_wait_fraction']:.0f}%"}
        if "input_images_per_sec" in feed:
            bar["input_img_s"] = f"{feed['input_images_per_sec']:.0f}"
        self.progress.update(len(pending), **bar)

    def close(self) -> None:
        """Close the progress bar and the logger."""
        self.progress.close()
        self.logger.close()
