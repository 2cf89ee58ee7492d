"""Orbax checkpoints of the train state: atomic, keep the last k, resume to the same result.

Each checkpoint is a step directory written by `orbax.checkpoint.CheckpointManager`: Orbax
writes into a temporary directory and renames it when complete, so a process killed while saving
leaves the previous checkpoints intact and the half-written one is ignored. Saved: the train
state (step, params, batch_stats, optimiser state, loss scale) as a plain state dict, and the
run's configuration as JSON. Batch order and augmentation are functions of `(seed, step)` only,
so a restored run continues exactly as the uninterrupted one would.

Integrity: Orbax stores no checksums, so a bit flipped on disk could restore silently wrong
numbers. Each save therefore records a SHA-256 digest of the state's arrays (paths, dtypes,
shapes, bytes) and of the metadata in the metadata itself; `restore` recomputes it and raises
`CorruptCheckpoint` (naming the step directory and what is wrong) on a mismatch or on any read
error (truncated or missing files). `restore_newest_intact` walks back from the newest step to
the newest intact one and moves the corrupt ones aside (to `<directory>.corrupt/`), so the
resumed run can write those steps again.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from pathlib import Path
from typing import Any

import flax.serialization
import numpy as np
import orbax.checkpoint as ocp

DIGEST_KEY = "sha256"


class CorruptCheckpoint(RuntimeError):
    """A checkpoint on disk cannot be read, or its contents do not match the saved digest."""

    def __init__(self, path: Path, reason: str) -> None:
        self.path, self.reason = path, reason
        super().__init__(f"checkpoint {path} is corrupt: {reason}")


def state_digest(tree: Any, meta: dict[str, Any]) -> str:
    """SHA-256 over every array of `tree` (path, dtype, shape, bytes) and the JSON of `meta`."""
    import jax

    h = hashlib.sha256()
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    for path, leaf in sorted(leaves, key=lambda kv: jax.tree_util.keystr(kv[0])):
        a = np.ascontiguousarray(np.asarray(leaf))
        h.update(f"{jax.tree_util.keystr(path)}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    rest = {k: v for k, v in meta.items() if k != DIGEST_KEY}
    h.update(json.dumps(rest, sort_keys=True).encode())
    return h.hexdigest()


class Checkpointer:
    """Save/restore `TrainState`s under `directory`, keeping the newest `keep`."""

    def __init__(self, directory: str | Path, keep: int = 3) -> None:
        self.directory = Path(directory).absolute()
        options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True,
                                               enable_async_checkpointing=False)
        self.manager = ocp.CheckpointManager(self.directory, options=options)

    def latest_step(self) -> int | None:
        """Step of the newest complete checkpoint, or None."""
        return self.manager.latest_step()

    def all_steps(self) -> list[int]:
        """Steps of all complete checkpoints, oldest first."""
        return sorted(self.manager.all_steps())

    def save(self, step: int, state: Any, meta: dict[str, Any]) -> None:
        """Save a host (NumPy) state at `step`, with JSON metadata; blocks until written."""
        tree = flax.serialization.to_state_dict(state)
        meta = {**meta, DIGEST_KEY: state_digest(tree, meta)}
        self.manager.save(step, args=ocp.args.Composite(
            state=ocp.args.StandardSave(tree), meta=ocp.args.JsonSave(meta)), force=True)
        self.manager.wait_until_finished()

    def restore(self, template: Any, step: int | None = None) -> tuple[Any, dict[str, Any]]:
        """`(state, meta)` of checkpoint `step` (default: the newest), shaped like `template`."""
        step = self.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no checkpoint in {self.directory}")
        target = flax.serialization.to_state_dict(template)
        target = _to_numpy(target)
        path = self.directory / str(step)
        try:
            restored = self.manager.restore(step, args=ocp.args.Composite(
                state=ocp.args.StandardRestore(target), meta=ocp.args.JsonRestore()))
        except Exception as e:  # Orbax/TensorStore raise many types for unreadable files
            first = str(e).strip().splitlines()[0][:300] if str(e).strip() else ""
            raise CorruptCheckpoint(path, f"cannot be read ({type(e).__name__}: {first})"
                                    ) from e
        meta = restored["meta"]
        if not isinstance(meta, dict):
            raise CorruptCheckpoint(path, "its metadata is not a JSON object")
        meta = dict(meta)
        tree = _to_numpy(restored["state"])
        if DIGEST_KEY in meta:  # checkpoints written before digests existed are not checked
            if state_digest(tree, meta) != meta[DIGEST_KEY]:
                raise CorruptCheckpoint(path, "its contents do not match the SHA-256 digest "
                                        "recorded when it was saved (a flipped or overwritten "
                                        "byte)")
        state = flax.serialization.from_state_dict(template, tree)
        return state, meta

    def restore_newest_intact(self, template: Any, warn: Any = print
                              ) -> tuple[Any, dict[str, Any], int]:
        """`(state, meta, step)` of the newest checkpoint that restores and verifies.

        Corrupt newer checkpoints are reported through `warn` (one line each, naming the
        directory and the problem) and moved to `<directory>.corrupt/<step>-<time>`.
        Raises `CorruptCheckpoint` (of the oldest one) if none is intact, FileNotFoundError if
        there is none at all.
        """
        steps = self.all_steps()
        if not steps:
            raise FileNotFoundError(f"no checkpoint in {self.directory}")
        error: CorruptCheckpoint | None = None
        for step in reversed(steps):
            try:
                state, meta = self.restore(template, step)
            except CorruptCheckpoint as e:
                error = e
                older = [s for s in steps if s < step]
                then = (f"falling back to step {older[-1]}" if older
                        else "no older checkpoint is left")
                moved = self._set_aside(step)
                warn(f"warning: {e}; {then}. Moved it to {moved}")
                continue
            if error is not None:
                warn(f"resuming from step {step}, the newest intact checkpoint")
            return state, meta, step
        assert error is not None
        raise error

    def _set_aside(self, step: int) -> Path:
        target = self.directory.parent / f"{self.directory.name}.corrupt" / \
            f"{step}-{time.strftime('%Y%m%d-%H%M%S')}"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(self.directory / str(step)), str(target))
        self.manager.reload()
        return target

    def close(self) -> None:
        """Finish pending writes and release the manager."""
        self.manager.wait_until_finished()
        self.manager.close()


def _to_numpy(tree: Any) -> Any:
    import jax

    return jax.tree.map(np.asarray, tree)
