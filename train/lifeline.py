"""End a child process when the process that started it is gone.

A process killed by SIGKILL (preemption, the OOM killer, `kill -9`) cannot stop its children;
each child watches its parent instead and exits once it has been re-parented.
"""

from __future__ import annotations

import os
import threading
import time


def exit_with_parent(parent_pid: int, period: float = 1.0) -> None:
    """Start a daemon thread that ends this process once `parent_pid` is no longer its parent."""
    threading.Thread(target=_watch, args=(parent_pid, period), daemon=True,
                     name="exit-with-parent").start()


def _watch(parent_pid: int, period: float) -> None:
    while os.getppid() == parent_pid:
        time.sleep(period)
    os._exit(1)
