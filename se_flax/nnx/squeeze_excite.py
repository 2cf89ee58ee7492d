"""Squeeze-and-Excitation in NNX (Hu, Shen & Sun, CVPR 2018): `se_flax.SqueezeExcite`'s twin.

Same options, same validation (from `se_spec.attention`), same variable names and shapes
(`fc1`, `fc2`), same float32 squeeze and gate. See `se_flax.layers.squeeze_excite` for what
`zero_init_last` and `residual_gate` really do.
"""

from __future__ import annotations

from typing import Any

import jax
from flax import nnx

from se_flax.layers.functional import activation, gate_fn, rescale, spatial_mean
from se_flax.nnx.intermediates import labelled, record
from se_flax.nnx.pointwise import Pointwise
from se_spec.attention import (
    EXCITE_LAYERS,
    SPATIAL_DIMS,
    check_groups,
    check_input,
    reduced_channels,
)
from se_spec.validation import check_choice


class SqueezeExcite(nnx.Module):
    """Channel attention `x * gate(fc2(act(fc1(mean(x)))))`; records the gate `(N, C)`.

    `spatial_rank` (1-3) fixes the shape of conv-layout kernels before any input is seen; it
    defaults to `spatial_dims`, else 2. `path` names the module in error messages.
    """

    def __init__(self, channels: int, rd_ratio: float = 1 / 16, rd_channels: int | None = None,
                 rd_policy: str = "divisible", rd_divisor: int = 8, min_ratio: int = 8,
                 rd_round_limit: float = 0.0, excite: str = "conv", bias: bool = True,
                 groups: int = 1, act: str = "relu",
                 gate: str = "sigmoid", residual_gate: bool = False,
                 zero_init_last: bool = False, spatial_dims: int | None = None,
                 dtype: Any = None, *, spatial_rank: int | None = None, path: str | None = None,
                 rngs: nnx.Rngs) -> None:
        label = labelled("SqueezeExcite", path)
        rd = reduced_channels(label, channels, rd_ratio, rd_channels, rd_policy, rd_divisor,
                              min_ratio, rd_round_limit)
        check_choice(label, "excite", excite, EXCITE_LAYERS)
        check_groups(label, channels, rd, groups)
        if groups > 1 and excite != "conv":
            raise ValueError(f"{label}: groups={groups} needs excite='conv' (a grouped 1x1 "
                             "convolution); a Linear excitation has no groups")
        if spatial_dims is not None:
            check_choice(label, "spatial_dims", spatial_dims, SPATIAL_DIMS)
        self.act, self.gate = activation(label, act), gate_fn(label, gate)
        self.label, self.channels, self.rd_channels = label, channels, rd
        self.spatial_dims, self.residual_gate, self.dtype = spatial_dims, residual_gate, dtype
        rank = spatial_rank or spatial_dims or 2
        last_init = (nnx.initializers.zeros if zero_init_last
                     else nnx.initializers.lecun_normal())
        self.fc1 = Pointwise(channels, rd, excite, groups, bias, rank, rngs=rngs)
        self.fc2 = Pointwise(rd, channels, excite, groups, bias, rank, kernel_init=last_init,
                             rngs=rngs)

    def reduced_width(self) -> int:
        """Bottleneck width after the configured reduction policy."""
        return self.rd_channels

    def __call__(self, x: jax.Array, train: bool | None = None) -> jax.Array:
        """Rescale `x` channel-wise; `train` is accepted for a uniform attention interface."""
        check_input(self.label, x.shape, self.channels, -1, self.spatial_dims)
        s = self.gate(self.fc2(self.act(self.fc1(spatial_mean(x)))))
        record(self, "gate", s)
        return rescale(x, s, self.residual_gate)
