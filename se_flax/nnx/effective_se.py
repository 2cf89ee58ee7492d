"""Effective Squeeze-Excitation in NNX (Lee & Park, CenterMask, CVPR 2020; timm `EffectiveSE`).

The twin of `se_flax.EffectiveSE`: one full-width pointwise layer `fc` and a hard-sigmoid gate;
`add_maxpool` averages the mean- and max-pooled descriptors.
"""

from __future__ import annotations

from typing import Any

import jax
from flax import nnx

from se_flax.layers.functional import gate_fn, rescale, spatial_max, spatial_mean
from se_flax.nnx.intermediates import labelled, record
from se_flax.nnx.pointwise import Pointwise
from se_spec.attention import EXCITE_LAYERS, SPATIAL_DIMS, check_input
from se_spec.validation import check_choice, check_positive_int


class EffectiveSE(nnx.Module):
    """`x * hard_sigmoid(fc(mean(x)))`; records the gate `(N, C)`."""

    def __init__(self, channels: int, add_maxpool: bool = False, gate: str = "hard_sigmoid",
                 excite: str = "conv", spatial_dims: int | None = None, dtype: Any = None, *,
                 spatial_rank: int | None = None, path: str | None = None,
                 rngs: nnx.Rngs) -> None:
        label = labelled("EffectiveSE", path)
        check_positive_int(label, "channels", channels)
        check_choice(label, "excite", excite, EXCITE_LAYERS)
        if spatial_dims is not None:
            check_choice(label, "spatial_dims", spatial_dims, SPATIAL_DIMS)
        self.gate = gate_fn(label, gate)
        self.label, self.channels, self.spatial_dims = label, channels, spatial_dims
        self.add_maxpool, self.dtype = add_maxpool, dtype
        self.fc = Pointwise(channels, channels, excite, 1, True,
                            spatial_rank or spatial_dims or 2, rngs=rngs)

    def __call__(self, x: jax.Array, train: bool | None = None) -> jax.Array:
        """Rescale `x` channel-wise."""
        check_input(self.label, x.shape, self.channels, -1, self.spatial_dims)
        s = spatial_mean(x)
        if self.add_maxpool:
            s = 0.5 * s + 0.5 * spatial_max(x)
        s = self.gate(self.fc(s))
        record(self, "gate", s)
        return rescale(x, s)
