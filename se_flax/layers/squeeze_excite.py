"""Squeeze-and-Excitation (Hu, Shen & Sun, "Squeeze-and-Excitation Networks", CVPR 2018).

One rank-generic module for `(N, L, C)`, `(N, H, W, C)` and `(N, D, H, W, C)`: the article's
SE_Block, SE3D, DynamicSE, QFriendlySE, EfficientSE and MobileSE, and timm's `SEModule`, are
options of it (see `se_flax.variants`).

Squeeze (global mean) and excitation (two pointwise layers and the gate) run in float32 whatever
`dtype` the surrounding network computes in; only the final rescale runs in the input dtype.

`zero_init_last=True` zeroes the last excitation layer. With a sigmoid gate this starts every
gate at exactly 0.5 (a constant half-scaling, not "no attention"); with `residual_gate=True`
(`x + x * s`) it starts at 1.5x. With hard_sigmoid the same 0.5 holds.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax

from se_flax.layers.functional import activation, gate_fn, rescale, spatial_mean
from se_flax.layers.labels import module_label
from se_flax.layers.pointwise import Pointwise
from se_spec.attention import (
    EXCITE_LAYERS,
    SPATIAL_DIMS,
    check_groups,
    check_input,
    reduced_channels,
)
from se_spec.validation import check_choice


class SqueezeExcite(nn.Module):
    """Channel attention `x * gate(fc2(act(fc1(mean(x)))))`; records the gate `(N, C)`."""

    channels: int
    rd_ratio: float = 1 / 16
    rd_channels: int | None = None
    rd_policy: str = "divisible"
    rd_divisor: int = 8
    min_ratio: int = 8
    rd_round_limit: float = 0.0
    excite: str = "conv"
    bias: bool = True
    groups: int = 1
    act: str = "relu"
    gate: str = "sigmoid"
    residual_gate: bool = False
    zero_init_last: bool = False
    spatial_dims: int | None = None
    dtype: Any = None

    def reduced_width(self) -> int:
        """Bottleneck width after the configured reduction policy."""
        return reduced_channels(module_label(self), self.channels, self.rd_ratio,
                                self.rd_channels, self.rd_policy, self.rd_divisor,
                                self.min_ratio, self.rd_round_limit)

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        """Rescale `x` channel-wise; `train` is accepted for a uniform attention interface."""
        label = module_label(self)
        rd = self.reduced_width()
        check_choice(label, "excite", self.excite, EXCITE_LAYERS)
        check_groups(label, self.channels, rd, self.groups)
        if self.groups > 1 and self.excite != "conv":
            raise ValueError(f"{label}: groups={self.groups} needs excite='conv' (a grouped 1x1 "
                             "convolution); a Linear excitation has no groups")
        if self.spatial_dims is not None:
            check_choice(label, "spatial_dims", self.spatial_dims, SPATIAL_DIMS)
        act, gate = activation(label, self.act), gate_fn(label, self.gate)
        check_input(label, x.shape, self.channels, -1, self.spatial_dims)

        rank = x.ndim - 2
        last_init = nn.initializers.zeros if self.zero_init_last else nn.initializers.lecun_normal()
        s = spatial_mean(x)
        s = Pointwise(rd, self.excite, self.groups, self.bias, rank, name="fc1")(s)
        s = Pointwise(self.channels, self.excite, self.groups, self.bias, rank,
                      kernel_init=last_init, name="fc2")(act(s))
        s = gate(s)
        self.sow("intermediates", "gate", s)
        return rescale(x, s, self.residual_gate)
