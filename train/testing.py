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

import numpy as np

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


def launch_processes(*args: str, processes: int = 2) -> list[subprocess.Popen]:
    """Start `processes` `python -m train ARGS` processes of one localhost `jax.distributed` run.

    One CPU device each; each in its own session (so a test can kill one whole "host");
    stdout and stderr captured as text.
    """
    port = free_port()
    return [subprocess.Popen(
        train_command(*args, "--coordinator-address", f"127.0.0.1:{port}", "--num-processes",
                      str(processes), "--process-id", str(i)),
        cwd=ROOT, env=child_env(1), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True) for i in range(processes)]


def free_port() -> int:
    """A free TCP port on localhost."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_jpeg_folder(root: str | Path, classes: int = 4, per_class: int = 25,
                      size: tuple[int, int] = (375, 500), jitter: float = 0.2,
                      val_per_class: int = 0, seed: int = 0) -> Path:
    """Write an ImageNet-like folder of JPEGs: `root/[train/]<class>/*.JPEG`, sizes varying.

    Each image is `size` (H, W) scaled by up to `±jitter`, randomly portrait or landscape, with
    smooth colour gradients plus noise (so it compresses and decodes like a photograph, not
    like white noise). With `val_per_class > 0` the images go to `train/` and `val/`.
    """
    from PIL import Image

    rng = np.random.default_rng(seed)
    root = Path(root)
    splits = {"train": per_class, "val": val_per_class} if val_per_class else {"": per_class}
    for split, count in splits.items():
        for c in range(classes):
            folder = root / split / f"n{c:08d}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                scale = 1 + rng.uniform(-jitter, jitter)
                h, w = (round(size[0] * scale), round(size[1] * scale))
                if rng.random() < 0.25:
                    h, w = w, h
                yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
                phase = rng.uniform(0, 6, 3)
                image = np.stack([128 + 90 * np.sin(xx / (20 + 9 * k) + phase[k])
                                  * np.cos(yy / (15 + 7 * k)) for k in range(3)], -1)
                image += rng.normal(0, 12, image.shape)
                Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(
                    folder / f"{split or 'img'}_{c}_{i:05d}.JPEG", quality=90)
    return root
