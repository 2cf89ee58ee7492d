"""Training-mode batch normalisation with a hand-written VJP that stores only its input.

Autodiff of `y = (x - mean) * rsqrt(var + eps) * scale + bias` keeps `x - mean` for the
backward pass, and XLA also kept `x` (the convolution output): two full-size arrays per
BatchNorm where PyTorch keeps one. This VJP stores `x`, the per-channel `mean` and
`rsqrt(var + eps)`, and rebuilds the normalised input in the backward fusions as
`x * inv - mean * inv` — not `x - mean`, which XLA's common-subexpression elimination would
merge with the forward pass's and store again.

The forward pass is the formula bit for bit; gradients are the formula's, rounded differently
(~1e-6 relative of autodiff). Under `axis_name` the statistics and the gradient sums span every
replica; the parameter gradients are each replica's own, as autodiff gives them. The batch
statistics carry no gradient. Forward mode (`jax.jvp`) is not supported by a `custom_vjp`:
`reference_batch_norm` is the same computation by plain autodiff. Which one a model uses is
`se_flax.implementation`'s choice (bench/BENCHMARKS.md has the measurements).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax


def _statistics(x: jax.Array, axis_name: str | None) -> tuple[jax.Array, jax.Array, int]:
    """Per-channel mean and biased variance (two-pass), over replicas too; element count."""
    axes = tuple(range(x.ndim - 1))
    count = x.size // x.shape[-1]
    mean = jnp.mean(x, axes)
    if axis_name is not None:
        mean = lax.pmean(mean, axis_name)
    var = jnp.mean(jnp.square(x - mean), axes)
    if axis_name is not None:
        var = lax.pmean(var, axis_name)
        count = count * lax.psum(1, axis_name)
    return mean, var, count


def reference_batch_norm(x: jax.Array, scale: jax.Array, bias: jax.Array, epsilon: float,
                         axis_name: str | None = None
                         ) -> tuple[jax.Array, jax.Array, jax.Array, int]:
    """`(y, mean, var, count)` with gradients by autodiff (the formula, differentiated by JAX)."""
    mean, var, count = _statistics(x, axis_name)
    y = (x - mean) * (lax.rsqrt(var + epsilon) * scale) + bias
    return y, mean, var, count


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4))
def _normalize(x: jax.Array, scale: jax.Array, bias: jax.Array, epsilon: float,
               axis_name: str | None) -> tuple[jax.Array, jax.Array, jax.Array]:
    y, mean, var, _ = reference_batch_norm(x, scale, bias, epsilon, axis_name)
    return y, mean, var


def _normalize_fwd(x: jax.Array, scale: jax.Array, bias: jax.Array, epsilon: float,
                   axis_name: str | None) -> tuple[tuple[jax.Array, ...], tuple[jax.Array, ...]]:
    y, mean, var, _ = reference_batch_norm(x, scale, bias, epsilon, axis_name)
    return (y, mean, var), (x, mean, lax.rsqrt(var + epsilon), scale)


def _normalize_bwd(epsilon: float, axis_name: str | None, residuals: tuple[jax.Array, ...],
                   cotangents: tuple[jax.Array, ...]) -> tuple[jax.Array, jax.Array, jax.Array]:
    del epsilon
    x, mean, inv, scale = residuals
    dy = cotangents[0]  # the statistics' cotangents are zero: `batch_norm_train` stops them
    axes = tuple(range(x.ndim - 1))
    count = x.size // x.shape[-1]
    x_hat = x * inv - mean * inv  # not `(x - mean) * inv`: see the module docstring (CSE)
    d_bias = jnp.sum(dy, axes)
    d_scale = jnp.sum(dy * x_hat, axes)
    sum_dy, sum_dy_xhat = d_bias, d_scale
    if axis_name is not None:
        sum_dy, sum_dy_xhat = lax.psum((d_bias, d_scale), axis_name)
        count = count * lax.psum(1, axis_name)
    dx = (scale * inv) * (dy - (sum_dy + x_hat * sum_dy_xhat) / count)
    return dx.astype(x.dtype), d_scale.astype(scale.dtype), d_bias.astype(scale.dtype)


_normalize.defvjp(_normalize_fwd, _normalize_bwd)


def batch_norm_train(x: jax.Array, scale: jax.Array, bias: jax.Array, epsilon: float,
                     axis_name: str | None = None, custom_vjp: bool = True
                     ) -> tuple[jax.Array, jax.Array, jax.Array, int]:
    """Normalise channels-last `x` with its batch statistics: `(y, mean, var, count)`.

    `x` is float32 (or wider); `scale` and `bias` share one dtype; `var` is the biased variance;
    `count` the number of elements per channel (over all replicas of `axis_name`). `mean` and
    `var` carry no gradient. `custom_vjp=False` differentiates `reference_batch_norm` instead.
    """
    if custom_vjp:
        y, mean, var = _normalize(x, scale, bias, epsilon, axis_name)
        count = x.size // x.shape[-1]
        if axis_name is not None:
            count = count * lax.psum(1, axis_name)
    else:
        y, mean, var, count = reference_batch_norm(x, scale, bias, epsilon, axis_name)
    return y, lax.stop_gradient(mean), lax.stop_gradient(var), count
