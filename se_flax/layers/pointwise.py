"""Excitation layer: a (grouped) fully connected map applied to the squeezed vector.

A 1x1 convolution on a 1x1 map and a Dense layer are the same math; only the kernel shape
differs. `excite="conv"` stores the kernel as Flax's conv layout `(1, ..., 1, C_in / g, C_out)`
(it loads timm's `Conv2d` weights), `excite="linear"` as Dense's `(C_in, C_out)` (the article's
`nn.Linear`). Both compute in float32.
"""

from __future__ import annotations

from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

Initializer = Callable[..., jax.Array]


class Pointwise(nn.Module):
    """Grouped fully connected layer on `(N, C_in)` → `(N, features)` in float32."""

    features: int
    excite: str = "conv"
    groups: int = 1
    use_bias: bool = True
    spatial_rank: int = 2
    kernel_init: Initializer = nn.initializers.lecun_normal()
    bias_init: Initializer = nn.initializers.zeros

    @nn.compact
    def __call__(self, v: jax.Array) -> jax.Array:
        """Apply the layer to a float32 `(N, C_in)` descriptor."""
        c_in, g = v.shape[-1], self.groups
        if self.excite == "conv":
            shape = (1,) * self.spatial_rank + (c_in // g, self.features)
        else:
            shape = (c_in, self.features)
        kernel = self.param("kernel", self.kernel_init, shape, jnp.float32)
        k = kernel.reshape(c_in // g, g, self.features // g)  # out channel o is in group o // (O/g)
        y = jnp.einsum("ngi,igo->ngo", v.reshape(v.shape[0], g, c_in // g), k)
        y = y.reshape(v.shape[0], self.features)
        if self.use_bias:
            y = y + self.param("bias", self.bias_init, (self.features,), jnp.float32)
        return y
