"""Helpers for the training tests: run `python -m train` in a subprocess with N CPU devices.

The device count of a JAX process is fixed when JAX starts, so multi-device and multi-process
checks run in child processes (`XLA_FLAGS=--xla_force_host_platform_device_count=N`). Children
share a persistent compilation cache in the system temp directory, so the second run of the same
configuration skips XLA compilation.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CACHE_DIR = Path(tempfile.gettempdir()) / "se_flax_train_jax_cache"
# A short run of the default model on the digits data: 1,438 images, batch 16.
TINY_ARGS = ["--epochs", "1", "--batch-size", "16", "--export", "false", "--tensorboard",
             "false", "--progress", "false", "--log-every", "5"]


def child_env(devices: int = 1, **extra: str) -> dict[str, str]:
    """Environment for a child JAX process on `devices` CPU devices."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    env["JAX_PLATFORMS"] = "cpu"
    env["JAX_COMPILATION_CACHE_DIR"] = str(CACHE_DIR)
    env.update(extra)
    return env


def train_command(*args: str) -> list[str]:
    """`python -m train ARGS` with this interpreter."""
    return [sys.executable, "-m", "train", *args]


def run_train(*args: str, devices: int = 1, timeout: float = 600
              ) -> subprocess.CompletedProcess:
    """Run `python -m train ARGS` to completion; stdout and stderr captured as text."""
    return subprocess.run(train_command(*args), cwd=ROOT, env=child_env(devices),
                          capture_output=True, text=True, timeout=timeout)


def free_port() -> int:
    """A free TCP port on localhost."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
