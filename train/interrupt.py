"""SIGTERM / SIGINT become a checkpoint: every process stops at the same step and saves it.

A scheduler preempts a job with SIGTERM (then SIGKILL a little later); a user presses Ctrl-C
(SIGINT). `Interruption` turns either into a request that the step loop polls once per step
(`reached(step)`): it answers True at the step where the run should save and stop.

- One process: the first SIGTERM or SIGINT sets the request; the loop saves the step it has
  just finished. A second SIGINT stops at once (`KeyboardInterrupt`), for a user who does not
  want to wait.
- Several processes (`jax.distributed`): the processes must agree on the step, or their
  checkpoints would disagree. JAX's preemption service does that: `jax.distributed.initialize`
  installs a SIGTERM handler that notifies the coordination service, which picks the step after
  the furthest one any process has reached; `multihost_utils.reached_preemption_sync_point`
  answers True at that step on every process. SIGINT is forwarded to that service as a SIGTERM
  of this process. A signal that arrives before the service exists (while JAX starts) is
  remembered and forwarded once it does.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from types import FrameType
from typing import Any

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Interruption:
    """The stop request of this run; `arm()` before `jax.distributed.initialize`."""

    def __init__(self) -> None:
        self.received: str | None = None  # name of the first signal
        self.distributed = False
        self._previous: dict[int, Any] = {}

    def arm(self) -> None:
        """Catch SIGTERM and SIGINT from now on (no-op outside the main thread)."""
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)

    def distributed_ready(self) -> None:
        """Hand SIGTERM to JAX's preemption service (call after `jax.distributed.initialize`).

        The service's handler replaced ours at the C level when it was created; a signal
        caught before that is sent again, now to the service.
        """
        self.distributed = True
        if self.received is not None:
            os.kill(os.getpid(), signal.SIGTERM)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        del frame
        name = signal.Signals(signum).name
        if self.distributed:  # only SIGINT still reaches Python; SIGTERM is the service's
            if self.received is None:
                self.received = name
                _say(f"{name} received: all processes will save a checkpoint at a common "
                     "step, then stop")
                os.kill(os.getpid(), signal.SIGTERM)
            return
        if self.received is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        if self.received is None:
            self.received = name
            _say(f"{name} received: saving a checkpoint after the current step, then "
                 "stopping" + (" (Ctrl-C again stops at once)" if signum == signal.SIGINT
                               else ""))

    def reached(self, step: int) -> bool:
        """Whether the run saves and stops after `step` (call once per step, on every process)."""
        if self.distributed:
            from jax.experimental import multihost_utils

            if multihost_utils.reached_preemption_sync_point(step):
                self.received = self.received or "SIGTERM"
                return True
            return False
        return self.received is not None

    def disarm(self) -> None:
        """Give SIGINT (and, for one process, SIGTERM) back to their previous handlers."""
        for sig, previous in self._previous.items():
            if sig == signal.SIGTERM and self.distributed:
                continue  # the preemption service's handler stays until the process exits
            signal.signal(sig, previous)
        self._previous.clear()


def _say(message: str) -> None:
    print(f"se-train: {message}", file=sys.stderr, flush=True)
