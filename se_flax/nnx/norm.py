"""BatchNorm (NNX) whose running statistics mean exactly what PyTorch's mean.

The same computation as `se_flax.layers.norm.BatchNorm` (Ioffe & Szegedy, 2015): training
normalises with the biased batch variance (two-pass, float32) and stores the *unbiased* one in
`var`, as `torch.nn.BatchNorm*d` stores `running_var`; `momentum=0.9` is PyTorch's 0.1.
Statistics are synchronised over `axis_name` when given; `custom_vjp=True` takes training
gradients from `se_flax.layers.norm_vjp`.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx
from jax import lax

from se_flax.layers.functional import at_least_fp32
from se_flax.layers.norm_vjp import batch_norm_train


class BatchNorm(nnx.Module):
    """Batch normalisation over all axes but the last (channels-last), PyTorch-compatible.

    Starts in training mode, like `nnx.BatchNorm`; `model.eval()` sets `use_running_average`,
    and the `use_running_average` argument of a call overrides it.
    """

    def __init__(self, num_features: int, *, use_running_average: bool = False,
                 momentum: float = 0.9, epsilon: float = 1e-5, axis_name: str | None = None,
                 dtype: Any = None, scale_init: nnx.Initializer = nnx.initializers.ones,
                 custom_vjp: bool = False, rngs: nnx.Rngs | None = None) -> None:
        f32 = jnp.float32
        self.num_features = num_features
        self.use_running_average = use_running_average
        self.momentum, self.epsilon = momentum, epsilon
        self.axis_name, self.dtype, self.custom_vjp = axis_name, dtype, custom_vjp
        key = rngs.params() if rngs is not None else jax.random.key(0)  # constant initialisers
        self.scale = nnx.Param(scale_init(key, (num_features,), f32))
        self.bias = nnx.Param(jnp.zeros((num_features,), f32))
        self.mean = nnx.BatchStat(jnp.zeros((num_features,), f32))
        self.var = nnx.BatchStat(jnp.ones((num_features,), f32))

    def __call__(self, x: jax.Array, use_running_average: bool | None = None) -> jax.Array:
        """Normalise `x`; in training mode also update the running statistics."""
        use_ra = self.use_running_average if use_running_average is None else use_running_average
        xf = at_least_fp32(x)
        scale, bias = self.scale[...], self.bias[...]
        if use_ra:
            y = (xf - self.mean[...]) * (lax.rsqrt(self.var[...] + self.epsilon) * scale) + bias
        else:
            y, mean, var, count = batch_norm_train(xf, scale, bias, self.epsilon, self.axis_name,
                                                   self.custom_vjp)
            unbiased = var * (count / jnp.maximum(count - 1, 1))
            m = self.momentum
            self.mean[...] = m * self.mean[...] + (1.0 - m) * mean
            self.var[...] = m * self.var[...] + (1.0 - m) * unbiased
        return y.astype(self.dtype or x.dtype)
