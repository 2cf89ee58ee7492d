"""A fusion boundary XLA's CPU backend keeps: a value computed once and stored, not recomputed.

XLA's CPU fusion copies a chain of cheap element-wise operations into every consumer rather
than storing its result. In a ResNet the residual stream is such a chain: block `k` returns
`relu(bn3(conv3(.)) * gate + x_{k-1})`, and `x_{k-1}` is itself the previous block's chain. Its
consumers — the next block's 1x1 convolution (after a reshape), its residual addition, and the
ReLU masks of the backward pass — each got a copy of the whole chain back to the stage's first
block, so a fusion in stage 3 of SE-ResNet-50 read 41 arrays (every earlier block's conv3
output and statistics) to compute one block output: work quadratic in the number of blocks.

`lax.optimization_barrier` does not help: the CPU compiler removes it before fusion. XLA does
not copy an *expensive* operation (a floating-point division) into several consumers, so
`fusion_boundary` divides by a 1 that XLA cannot fold at compile time (`(v == v) + (v != v)`
for each element `v` of the input: 1 for every float, NaN included). Division by 1 is exact
in IEEE arithmetic, so the value is bit for bit the input — except subnormals, which XLA's CPU
runtime flushes to zero in every arithmetic operation, including the residual addition that
produces a block output (so a block output holds none). The derivative is the identity (a
`custom_jvp`): gradients and forward-mode tangents pass unchanged and without a division.

Models apply it only where `se_flax.implementation` says so (the CPU backend by default): GPU
and TPU fuse with other heuristics, and TPU division is not guaranteed exact.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax


@jax.custom_jvp
def _divide_by_runtime_one(x: jax.Array) -> jax.Array:
    """`x / 1`, with each 1 computed from the element it divides, at run time."""
    v = lax.stop_gradient(x)
    one = (v == v).astype(x.dtype) + (v != v).astype(x.dtype)
    return x / one


@_divide_by_runtime_one.defjvp
def _divide_by_runtime_one_jvp(primals: tuple[jax.Array],
                               tangents: tuple[jax.Array]) -> tuple[jax.Array, jax.Array]:
    (x,), (dx,) = primals, tangents
    return _divide_by_runtime_one(x), dx


def fusion_boundary(x: jax.Array) -> jax.Array:
    """`x` unchanged (bit for bit), stored once instead of recomputed by each consumer on CPU.

    A no-op for integer or empty arrays.
    """
    if x.size == 0 or not jnp.issubdtype(x.dtype, jnp.floating):
        return x
    return _divide_by_runtime_one(x)
