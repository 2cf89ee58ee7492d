"""Orbax checkpoints of the train state: atomic, keep the last k, resume to the same result.

Each checkpoint is a step directory written by `orbax.checkpoint.CheckpointManager`: Orbax
writes into a temporary directory and renames it when complete, so a process killed while saving
leaves the previous checkpoints intact and the half-written one is ignored. Saved: the train
state (step, params, batch_stats, optimiser state, loss scale) as a plain state dict, and the
run's configuration as JSON. Batch order and augmentation are functions of `(seed, step)` only,
so a restored run continues exactly as the uninterrupted one would.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import flax.serialization
import numpy as np
import orbax.checkpoint as ocp


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
        restored = self.manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(target), meta=ocp.args.JsonRestore()))
        state = flax.serialization.from_state_dict(template, _to_numpy(restored["state"]))
        return state, dict(restored["meta"])

    def close(self) -> None:
        """Finish pending writes and release the manager."""
        self.manager.wait_until_finished()
        self.manager.close()


def _to_numpy(tree: Any) -> Any:
    import jax

    return jax.tree.map(np.asarray, tree)
