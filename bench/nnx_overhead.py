"""Per-call cost of NNX's stateful `nnx.jit` outside the compiled program, per model size.

A function that computes nothing (`return 0`) is called with the model and an `nnx.Optimizer`
three ways: `nnx.jit` on the objects (the module graph is walked in Python on every call),
`nnx.cached_partial` of it (the walk cached, the state still gathered), and `jax.jit` on the
arrays of one `nnx.split` (the training program's `--api nnx`). The time per call is the
dispatch overhead a real step pays on top of its computation.

    python bench/nnx_overhead.py --models se_resnet18,se_resnet50,se_resnet152
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def per_call(fn: Callable[[], object], calls: int) -> float:
    """Mean seconds per call of `fn` after one warm-up call (compile)."""
    fn().block_until_ready()
    start = time.perf_counter()
    for _ in range(calls):
        fn().block_until_ready()
    return (time.perf_counter() - start) / calls


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="se_resnet18,se_resnet50,se_resnet152")
    p.add_argument("--calls", type=int, default=50)
    args = p.parse_args()

    import jax
    import jax.numpy as jnp
    import optax
    from flax import nnx

    import se_flax.nnx as snnx

    print(f"{'model':<16} {'arrays':>6} {'nnx.jit':>10} {'cached_partial':>15} {'jax.jit':>9}"
          "  (ms per call of a function that computes nothing)")
    for name in args.models.split(","):
        model = snnx.create_model(name, num_classes=10, stem="cifar")
        optimizer = nnx.Optimizer(model, optax.sgd(0.01, momentum=0.9), wrt=nnx.Param)

        @nnx.jit
        def nothing(model: nnx.Module, optimizer: nnx.Optimizer) -> jax.Array:
            return jnp.zeros(())

        _, state = nnx.split((model, optimizer))
        on_arrays = jax.jit(lambda state: jnp.zeros(()))
        cached = nnx.cached_partial(nothing, model, optimizer)
        times = [per_call(functools.partial(nothing, model, optimizer), args.calls),
                 per_call(cached, args.calls),
                 per_call(functools.partial(on_arrays, state), args.calls)]
        print(f"{name:<16} {len(jax.tree.leaves(state)):>6} {times[0] * 1e3:>10.2f} "
              f"{times[1] * 1e3:>15.2f} {times[2] * 1e3:>9.2f}", flush=True)


if __name__ == "__main__":
    main()
