"""Two drivers for the one per-device step of `train.step`: `jax.pmap` and `jit(shard_map)`.

* `PmapDriver` — `jax.pmap(step, axis_name="batch", donate_argnums=0)` over this process's
  devices; the state carries a leading device axis, batches are reshaped to
  `(local devices, per-device batch, ...)`. pmap is in maintenance mode since JAX 0.8.
* `ShardMapDriver` (default) — `jax.jit(jax.shard_map(step, mesh, in_specs=(P(), P("batch"),
  P("batch")), out_specs=P()), donate_argnums=0)` over a 1-D `Mesh` of all devices of all
  processes: the state is one replicated global array per leaf, the batch one global array
  sharded along `batch` and assembled from each process's slice.

Both see identical per-device inputs and run identical per-device programs, so the same seed and
data give the same parameters. `check_vma=False`: the step averages its own gradients with
`lax.pmean` exactly as under pmap (with replication checking on, JAX would instead insert the
sum of gradients over devices when differentiating with respect to replicated parameters).
Multi-host: call `jax.distributed.initialize` first; `jax.devices()` then spans all processes.
The jitted train step gets the XLA options of the run's implementation choice
(`se_flax.implementation.Implementation.compiler_options`, e.g. XLA's memory-optimised scheduler
on CPU); `jax.pmap` takes no compiler options.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from train.step import AXIS

Batch = tuple[np.ndarray, ...]


def check_batch_size(global_batch: int, num_devices: int, process_count: int = 1) -> int:
    """Per-device batch size; a ValueError before anything is compiled if it does not divide."""
    if global_batch % num_devices:
        raise ValueError(f"batch_size={global_batch} is not divisible by the {num_devices} "
                         f"devices; expected a multiple of {num_devices} (e.g. "
                         f"{max(num_devices, global_batch // num_devices * num_devices)})")
    if global_batch % process_count:
        raise ValueError(f"batch_size={global_batch} is not divisible by the {process_count} "
                         "processes")
    return global_batch // num_devices


def _first_local(x: Any) -> np.ndarray:
    """One copy of a replicated array, on the host, in memory of its own.

    A copy, not `np.asarray`: on CPU that can be a view of the device buffer, which the next
    step (donating its state argument) overwrites in place.
    """
    return np.array(x.addressable_shards[0].data if isinstance(x, jax.Array) else x)


class ShardMapDriver:
    """`jax.jit(jax.shard_map(...))` over a 1-D mesh with axis `batch` (all global devices)."""

    name = "shard_map"

    def __init__(self, train_step: Callable, eval_step: Callable,
                 devices: list[Any] | None = None,
                 compiler_options: dict[str, str] | None = None) -> None:
        devices = list(devices or jax.devices())
        self.mesh = Mesh(np.asarray(devices), (AXIS,))
        self.num_devices = len(devices)
        self.replicated = NamedSharding(self.mesh, P())
        self.sharded = NamedSharding(self.mesh, P(AXIS))
        self.train_step = jax.jit(
            jax.shard_map(train_step, mesh=self.mesh, in_specs=(P(), P(AXIS), P(AXIS)),
                          out_specs=(P(), P()), check_vma=False), donate_argnums=(0,),
            compiler_options=compiler_options or None)
        self.eval_step = jax.jit(
            jax.shard_map(eval_step, mesh=self.mesh, in_specs=(P(), P(AXIS), P(AXIS), P(AXIS)),
                          out_specs=P(), check_vma=False))

    def replicate(self, tree: Any) -> Any:
        """Host pytree (identical on every process) → replicated global arrays."""
        def put(x: Any) -> jax.Array:
            x = np.asarray(x) if not isinstance(x, jax.Array) or x.is_fully_addressable else x
            return jax.make_array_from_callback(np.shape(x), self.replicated,
                                                lambda idx: np.asarray(x)[idx])
        return jax.tree.map(put, tree)

    def unreplicate(self, tree: Any) -> Any:
        """Replicated state → NumPy pytree (one copy)."""
        return jax.tree.map(_first_local, tree)

    def shard(self, batch: Batch) -> tuple[jax.Array, ...]:
        """Slice of the global batch held by this process → global arrays sharded along `batch`."""
        return tuple(jax.make_array_from_process_local_data(self.sharded, np.asarray(a))
                     for a in batch)

    def metrics(self, m: Any) -> dict[str, float]:
        """Device metrics → Python floats."""
        return {k: float(_first_local(v)) for k, v in m.items()}


class PmapDriver:
    """`jax.pmap` over this process's devices (collectives span all processes)."""

    name = "pmap"

    def __init__(self, train_step: Callable, eval_step: Callable,
                 devices: list[Any] | None = None,
                 compiler_options: dict[str, str] | None = None) -> None:
        del compiler_options  # jax.pmap takes none
        self.local_devices = list(devices or jax.local_devices())
        self.num_devices = len(self.local_devices) * (1 if devices else jax.process_count())
        self.local = NamedSharding(Mesh(np.asarray(self.local_devices), (AXIS,)), P(AXIS))
        self.train_step = jax.pmap(train_step, axis_name=AXIS, devices=devices,
                                   donate_argnums=(0,))
        self.eval_step = jax.pmap(eval_step, axis_name=AXIS, devices=devices)

    def replicate(self, tree: Any) -> Any:
        """Host pytree → one copy per local device (leading device axis)."""
        n = len(self.local_devices)
        return jax.tree.map(lambda x: jax.device_put(
            np.broadcast_to(np.asarray(x), (n, *np.shape(x))), self.local), tree)

    def unreplicate(self, tree: Any) -> Any:
        """Replicated state → NumPy pytree (the first local device's copy)."""
        return jax.tree.map(lambda x: _first_local(x)[0], tree)

    def shard(self, batch: Batch) -> tuple[jax.Array, ...]:
        """Batch of this process → `(local devices, per-device batch, ...)` on the devices."""
        n = len(self.local_devices)
        return tuple(jax.device_put(np.asarray(a).reshape(n, -1, *a.shape[1:]), self.local)
                     for a in batch)

    def metrics(self, m: Any) -> dict[str, float]:
        """Device metrics (identical on every device) → Python floats."""
        return {k: float(_first_local(v).reshape(-1)[0])
                for k, v in m.items()}


DRIVERS = {"shard_map": ShardMapDriver, "pmap": PmapDriver}


def make_driver(name: str, train_step: Callable, eval_step: Callable,
                devices: list[Any] | None = None,
                compiler_options: dict[str, str] | None = None) -> ShardMapDriver | PmapDriver:
    """The driver called `name` (`shard_map` or `pmap`) around the two per-device steps.

    `compiler_options` go to `jax.jit` of the train step (`shard_map` only).
    """
    if name not in DRIVERS:
        raise ValueError(f"parallel={name!r} is not supported; expected one of "
                         f"{', '.join(map(repr, DRIVERS))}")
    return DRIVERS[name](train_step, eval_step, devices, compiler_options)
