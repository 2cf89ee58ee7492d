"""Excitation layer (NNX): a grouped fully connected map on the squeezed vector, in float32.

The twin of `se_flax.layers.pointwise.Pointwise`, with the same kernel shapes: `excite="conv"`
stores `(1, ..., 1, C_in / g, C_out)` (timm's 1x1 `Conv`), `excite="linear"` `(C_in, C_out)`
(the article's `nn.Linear`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

LECUN_NORMAL = nnx.initializers.lecun_normal()


class Pointwise(nnx.Module):
    """Grouped fully connected layer on `(N, C_in)` → `(N, features)` in float32."""

    def __init__(self, in_features: int, features: int, excite: str = "conv", groups: int = 1,
                 use_bias: bool = True, spatial_rank: int = 2, *,
                 kernel_init: nnx.Initializer = LECUN_NORMAL,
                 rngs: nnx.Rngs) -> None:
        self.in_features, self.features, self.groups = in_features, features, groups
        if excite == "conv":
            shape = (1,) * spatial_rank + (in_features // groups, features)
        else:
            shape = (in_features, features)
        self.kernel = nnx.Param(kernel_init(rngs.params(), shape, jnp.float32))
        self.bias = nnx.Param(jnp.zeros((features,), jnp.float32)) if use_bias else None

    def __call__(self, v: jax.Array) -> jax.Array:
        """Apply the layer to a float32 `(N, C_in)` descriptor."""
        c_in, g = self.in_features, self.groups
        k = self.kernel[...].reshape(c_in // g, g, self.features // g)
        y = jnp.einsum("ngi,igo->ngo", v.reshape(v.shape[0], g, c_in // g), k)
        y = y.reshape(v.shape[0], self.features)
        return y if self.bias is None else y + self.bias[...]
