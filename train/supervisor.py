"""Multi-process runs: a lost peer becomes one line and exit status 7, never a stack trace.

When a process of a `jax.distributed` run dies, the survivors learn it in one of two ways:
a collective with the dead process fails (a Python exception: `PeerLost`, raised by the step
loop), or JAX's coordination service reports the loss and its C++ client terminates the
process on the spot (a missed heartbeat, or the coordinator itself gone) — no Python code runs
then. So each process of a multi-process run is a small supervisor that starts the trainer as
its child, forwards SIGTERM/SIGINT to it, follows its progress through a pipe (one line per
step), and, when the trainer ends without one of `se-train`'s own exit statuses while its
output says the distributed runtime failed, prints what happened: which process, at which step,
and the newest complete checkpoint.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from collections import deque
from pathlib import Path
from types import FrameType

from train.lifeline import exit_with_parent

PROGRESS_FD = "SE_TRAIN_PROGRESS_FD"  # set by the supervisor in the trainer's environment
EXIT_LOST_PEER = 7
OWN_STATUSES = frozenset({0, 2, 3, 4, 5, 6, EXIT_LOST_PEER})
# What the distributed runtime prints when it stops a process because another one is gone.
RUNTIME_LOST = ("JAX distributed service detected fatal errors", "coordination service",
                "heartbeat")
# Collective failures that mean the other end of a connection is gone (gloo on CPU, NCCL, MPI).
TRANSPORT_LOST = re.compile(r"connection (reset|closed|refused)|by peer|broken pipe|"
                            r"remote process exited|socket closed|unavailable", re.IGNORECASE)


class PeerLost(RuntimeError):
    """A collective with the other processes failed: one of them is gone."""

    def __init__(self, step: int, cause: str) -> None:
        self.step, self.cause = step, cause
        super().__init__(f"a collective with the other processes failed after step {step}: "
                         f"{cause}")


def is_transport_failure(error: BaseException) -> bool:
    """Whether `error` (raised by a collective) says a peer process is unreachable."""
    return bool(TRANSPORT_LOST.search(str(error)))


def newest_complete_checkpoint(output_dir: str | Path) -> int | None:
    """Step of the newest finished checkpoint under `output_dir/checkpoints` (read from disk).

    Orbax writes a step into a temporary directory and renames it to the bare step number
    when every process has finished it, so only directories named by a number count.
    """
    directory = Path(output_dir) / "checkpoints"
    steps = [int(p.name) for p in directory.iterdir() if p.name.isdigit()] \
        if directory.is_dir() else []
    return max(steps, default=None)


def lost_line(process: int, processes: int, step: int | None, what: str,
              output_dir: str | Path) -> str:
    """The one line a survivor prints: what happened, where, and what to resume from."""
    newest = newest_complete_checkpoint(output_dir)
    at = "before its first step" if step is None else f"after step {step}"
    resume = (f"the last complete checkpoint is step {newest} in "
              f"{Path(output_dir) / 'checkpoints'}; restart every process with --resume"
              if newest is not None else "no checkpoint was written yet; restart the run")
    return f"se-train: process {process} of {processes} stopped {at}: {what}; {resume}"


def lost_peer_name(text: str, process: int, processes: int) -> str:
    """Which peer the runtime's message names (`task:N`), else the only other process."""
    if re.search(r"leader task|Failed to send RPC to coordination service", text):
        return "process 0 (the coordinator)"
    tasks = {int(t) for t in re.findall(r"task:(\d+)", text)} - {process}
    if len(tasks) == 1:
        return f"process {tasks.pop()}"
    return f"process {1 - process}" if processes == 2 else "another process"


class StepReporter:
    """The trainer's side of the progress pipe: writes each finished step (no-op unsupervised)."""

    def __init__(self) -> None:
        fd = os.environ.get(PROGRESS_FD)
        self.fd = int(fd) if fd else None
        if self.fd is not None:
            exit_with_parent(os.getppid())  # the supervisor was SIGKILLed: stop as well

    def __call__(self, step: int) -> None:
        """Report that `step` steps are done."""
        if self.fd is not None:
            try:
                os.write(self.fd, f"{step}\n".encode())
            except OSError:
                self.fd = None


def supervised() -> bool:
    """Whether this process is a trainer started by `supervise`."""
    return PROGRESS_FD in os.environ


def supervise(command: list[str], process: int, processes: int, output_dir: str) -> int:
    """Run the trainer `command` as a child; return its status, or 7 for a lost peer."""
    read_fd, write_fd = os.pipe()
    child = subprocess.Popen(command, stderr=subprocess.PIPE,
                             env={**os.environ, PROGRESS_FD: str(write_fd)},
                             pass_fds=(write_fd,))
    os.close(write_fd)
    last_step: list[int] = []
    tail: deque[str] = deque(maxlen=40)
    readers = [threading.Thread(target=_follow_steps, args=(read_fd, last_step), daemon=True),
               threading.Thread(target=_copy_stderr, args=(child, tail), daemon=True)]
    for t in readers:
        t.start()

    def forward(signum: int, frame: FrameType | None) -> None:
        del frame
        if child.poll() is None:
            child.send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        status = child.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    for t in readers:
        t.join(timeout=5)
    if status in OWN_STATUSES:
        return status
    text = "".join(tail)
    step = last_step[0] if last_step else None
    if any(marker in text for marker in RUNTIME_LOST):
        what = (f"the distributed runtime lost {lost_peer_name(text, process, processes)} "
                "(see the runtime's message above)")
    elif status < 0:
        what = f"its trainer was ended by {signal.Signals(-status).name}"
    else:
        return status  # an error of the trainer itself: its traceback is above
    print(lost_line(process, processes, step, what, output_dir), file=sys.stderr, flush=True)
    return EXIT_LOST_PEER


def _follow_steps(fd: int, last_step: list[int]) -> None:
    """Keep the newest step number written to the progress pipe."""
    with os.fdopen(fd, "rb") as pipe:
        for line in pipe:
            if line.strip().isdigit():
                last_step[:] = [int(line)]


def _copy_stderr(child: subprocess.Popen, tail: deque[str]) -> None:
    """Pass the trainer's stderr through, keeping its last lines."""
    assert child.stderr is not None
    for raw in child.stderr:
        line = raw.decode(errors="replace")
        tail.append(line)
        sys.stderr.write(line)
        sys.stderr.flush()
