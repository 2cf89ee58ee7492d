"""Per-executable XLA options for compiled train steps (`jax.jit(..., compiler_options=...)`).

On the CPU backend XLA's default scheduler orders independent operations for concurrency and
computes values as early as their operands allow, so a backward-pass value that depends only on
forward activations (a BatchNorm's rebuilt normalised input, for one) is computed during the
forward pass and held until it is used: a larger temporary buffer, which XLA maps afresh for
every execution and the kernel then faults in page by page. The memory-optimised scheduler
keeps such values short-lived: with the BatchNorm VJP of `se_flax.layers.norm_vjp` the
SE-ResNet-50 CPU train step (batch 32, CIFAR input) needs 1.04 GB of temporaries instead of
1.57 GB, and the two together take 12% off its time in a one-process A/B (the scheduler alone
2%; bench/BENCHMARKS.md). Scheduling changes no arithmetic.

`SE_FLAX_CPU_SCHEDULER=xla` in the environment keeps XLA's own choice. Other backends get no
options. The options apply where a step is compiled with `jax.jit`; `jax.pmap` takes none.
"""

from __future__ import annotations

import os

import jax

CPU_SCHEDULER_ENV = "SE_FLAX_CPU_SCHEDULER"
CPU_SCHEDULERS = {
    "memory": "CPU_SCHEDULER_TYPE_MEMORY_OPTIMIZED",
    "xla": None,  # XLA's default
}


def train_step_compiler_options() -> dict[str, str]:
    """XLA options for a jitted train step on the current default backend (may be empty)."""
    if jax.default_backend() != "cpu":
        return {}
    choice = os.environ.get(CPU_SCHEDULER_ENV, "").strip().lower() or "memory"
    if choice not in CPU_SCHEDULERS:
        raise ValueError(f"{CPU_SCHEDULER_ENV}={choice!r}: expected one of "
                         f"{sorted(CPU_SCHEDULERS)}")
    scheduler = CPU_SCHEDULERS[choice]
    return {} if scheduler is None else {"xla_cpu_scheduler_type": scheduler}
