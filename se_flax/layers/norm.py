"""BatchNorm whose running statistics mean exactly what PyTorch's mean.

Ioffe & Szegedy, "Batch Normalization", 2015. In training both frameworks normalise with the
*biased* batch variance, but `torch.nn.BatchNorm*d` stores the *unbiased* variance `n / (n - 1)`
in `running_var`, while `flax.linen.BatchNorm` stores the biased one. This module stores the
unbiased one, so `batch_stats["var"]` is PyTorch's `running_var` bit for bit in meaning and
conversion is a copy. Statistics are computed in float32 with the two-pass formula
`mean((x - mean)^2)` (not `E[x^2] - E[x]^2`, which cancels catastrophically), synchronised over
`axis_name` when given. `momentum=0.9` here is PyTorch's `momentum=0.1`. With
`custom_vjp=True` training-mode gradients come from a hand-written VJP that stores less
(`se_flax.layers.norm_vjp`; no forward-mode differentiation); the default is plain autodiff.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from se_flax.layers.functional import at_least_fp32
from se_flax.layers.norm_vjp import batch_norm_train


class BatchNorm(nn.Module):
    """Batch normalisation over all axes but the last (channels-last), PyTorch-compatible."""

    use_running_average: bool | None = None
    momentum: float = 0.9
    epsilon: float = 1e-5
    axis_name: str | None = None
    dtype: Any = None
    scale_init: Any = nn.initializers.ones
    custom_vjp: bool = False  # training gradients by `norm_vjp.batch_norm_train`

    @nn.compact
    def __call__(self, x: jax.Array, use_running_average: bool | None = None) -> jax.Array:
        """Normalise `x`; in training mode also update the running statistics."""
        use_ra = nn.merge_param("use_running_average", self.use_running_average,
                                use_running_average)
        features = x.shape[-1]
        f32 = jnp.float32
        ra_mean = self.variable("batch_stats", "mean", lambda: jnp.zeros((features,), f32))
        ra_var = self.variable("batch_stats", "var", lambda: jnp.ones((features,), f32))
        scale = self.param("scale", self.scale_init, (features,), f32)
        bias = self.param("bias", nn.initializers.zeros, (features,), f32)
        xf = at_least_fp32(x)
        if use_ra:
            mean, var = ra_mean.value, ra_var.value
            y = (xf - mean) * (lax.rsqrt(var + self.epsilon) * scale) + bias
        else:
            axis_name = None if self.is_initializing() else self.axis_name  # init runs unmapped
            y, mean, var, count = batch_norm_train(xf, scale, bias, self.epsilon, axis_name,
                                                   self.custom_vjp)
            if not self.is_initializing():
                unbiased = var * (count / jnp.maximum(count - 1, 1))
                m = self.momentum
                ra_mean.value = m * ra_mean.value + (1.0 - m) * mean
                ra_var.value = m * ra_var.value + (1.0 - m) * unbiased
        return y.astype(self.dtype or x.dtype)
