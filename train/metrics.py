"""Metric sinks: a JSONL log, TensorBoard event files and a progress bar.

`metrics.jsonl` gets one JSON object per line: `{"step", "split": "train"|"eval", ...values}`.
TensorBoard scalars are written with tensorboardX (no TensorFlow needed) under `tensorboard/`
as `train/loss`, `eval/accuracy`, .... Only process 0 writes.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any


class MetricLogger:
    """Write metrics to `<dir>/metrics.jsonl` and `<dir>/tensorboard/`."""

    def __init__(self, directory: str | Path, *, enabled: bool = True,
                 tensorboard: bool = True) -> None:
        self.enabled = enabled
        self.directory = Path(directory)
        self.writer = None
        self._jsonl = None
        if not enabled:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        self._jsonl = open(self.directory / "metrics.jsonl", "a")  # noqa: SIM115
        if tensorboard:
            try:
                from tensorboardX import SummaryWriter
            except ImportError:
                print("tensorboardX is not installed: no TensorBoard events (pip install "
                      "tensorboardX, or the 'train' extra)", file=sys.stderr)
            else:
                self.writer = SummaryWriter(str(self.directory / "tensorboard"))

    def log(self, step: int, split: str, values: dict[str, float]) -> None:
        """Record `values` of `split` at `step`."""
        if not self.enabled:
            return
        record = {"step": step, "split": split, "time": round(time.time(), 3), **values}
        self._jsonl.write(json.dumps(record) + "\n")
        self._jsonl.flush()
        if self.writer is not None:
            for k, v in values.items():
                self.writer.add_scalar(f"{split}/{k}", v, step)
            self.writer.flush()

    def close(self) -> None:
        """Flush and close the files."""
        if self._jsonl is not None:
            self._jsonl.close()
            self._jsonl = None
        if self.writer is not None:
            self.writer.close()
            self.writer = None


class Progress:
    """A tqdm bar over steps showing loss and images/sec (a no-op when disabled)."""

    def __init__(self, total: int, initial: int, enabled: bool) -> None:
        self.bar = None
        if enabled:
            try:
                from tqdm.auto import tqdm
            except ImportError:
                return
            self.bar = tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True,
                            file=sys.stderr)

    def update(self, n: int, **postfix: Any) -> None:
        """Advance `n` steps and show `postfix`."""
        if self.bar is not None:
            self.bar.set_postfix(postfix, refresh=False)
            self.bar.update(n)

    def write(self, line: str) -> None:
        """Print a line above the bar."""
        if self.bar is not None:
            self.bar.write(line, file=sys.stderr)
        else:
            print(line, file=sys.stderr)

    def close(self) -> None:
        """Close the bar."""
        if self.bar is not None:
            self.bar.close()
