"""LayerNorm (NNX) computing exactly what `flax.linen.LayerNorm(use_fast_variance=False)` computes.

`nnx.LayerNorm` is not that program: it first promotes the input, scale and bias to one dtype
(a bfloat16 model then rounds its float32 scale and bias to bfloat16) and reshapes the
statistics where Linen expands their dimensions. This module follows Linen's operations one by
one: statistics in float32 (or wider) over the last axis by the two-pass formula
`mean((x - mean(x))^2)`, `(x - mean) * (rsqrt(var + eps) * scale) + bias` with the float32
parameters, and the result in `dtype` (default: promoted from the input and the parameters).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx
from flax.nnx.nn.dtypes import canonicalize_dtype
from jax import lax


class LayerNorm(nnx.Module):
    """Layer normalisation over the last axis with float32 `scale` (ones) and `bias` (zeros)."""

    def __init__(self, num_features: int, *, epsilon: float = 1e-6, dtype: Any = None,
                 rngs: nnx.Rngs | None = None) -> None:
        del rngs  # constant initialisers
        self.epsilon, self.dtype = epsilon, dtype
        self.scale = nnx.Param(jnp.ones((num_features,), jnp.float32))
        self.bias = nnx.Param(jnp.zeros((num_features,), jnp.float32))

    def __call__(self, x: jax.Array) -> jax.Array:
        """Normalise `x` over its last axis."""
        axes = (x.ndim - 1,)
        xs = x.astype(jnp.promote_types(jnp.result_type(x) if self.dtype is None else self.dtype,
                                        jnp.float32))
        mean = xs.mean(axes)
        var = lax.square(xs - jnp.expand_dims(mean, axes)).mean(axes)
        feature_shape = [1] * (x.ndim - 1) + [x.shape[-1]]
        mean, var = jnp.expand_dims(mean, axes), jnp.expand_dims(var, axes)
        y = x - mean
        mul = lax.rsqrt(var + self.epsilon)
        scale = self.scale[...].reshape(feature_shape)
        mul *= scale
        y *= mul
        bias = self.bias[...].reshape(feature_shape)
        y += bias
        return jnp.asarray(y, canonicalize_dtype(x, scale, bias, dtype=self.dtype))
