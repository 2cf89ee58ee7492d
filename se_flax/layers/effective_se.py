"""Effective Squeeze-Excitation (Lee & Park, "CenterMask", CVPR 2020; timm `EffectiveSEModule`).

One full-width pointwise layer (no bottleneck) and a hard-sigmoid gate. `add_maxpool` averages
the mean- and max-pooled descriptors, as timm does.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax

from se_flax.layers.functional import gate_fn, rescale, spatial_max, spatial_mean
from se_flax.layers.labels import module_label
from se_flax.layers.pointwise import Pointwise
from se_spec.attention import EXCITE_LAYERS, SPATIAL_DIMS, check_input
from se_spec.validation import check_choice, check_positive_int


class EffectiveSE(nn.Module):
    """`x * hard_sigmoid(fc(mean(x)))`; records the gate `(N, C)`."""

    channels: int
    add_maxpool: bool = False
    gate: str = "hard_sigmoid"
    excite: str = "conv"
    spatial_dims: int | None = None
    dtype: Any = None

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        """Rescale `x` channel-wise."""
        label = module_label(self)
        check_positive_int(label, "channels", self.channels)
        check_choice(label, "excite", self.excite, EXCITE_LAYERS)
        if self.spatial_dims is not None:
            check_choice(label, "spatial_dims", self.spatial_dims, SPATIAL_DIMS)
        gate = gate_fn(label, self.gate)
        check_input(label, x.shape, self.channels, -1, self.spatial_dims)
        s = spatial_mean(x)
        if self.add_maxpool:
            s = 0.5 * s + 0.5 * spatial_max(x)
        s = gate(Pointwise(self.channels, self.excite, 1, True, x.ndim - 2, name="fc")(s))
        self.sow("intermediates", "gate", s)
        return rescale(x, s)
