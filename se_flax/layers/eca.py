"""Efficient Channel Attention (Wang et al., "ECA-Net", CVPR 2020; timm `EcaModule`).

A 1D convolution across the channel axis of the squeezed descriptor replaces the SE bottleneck.
The kernel size follows the paper: `k = |log2(C) + b| / γ` rounded to the nearest odd ≥ 3.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax

from se_flax.layers.functional import gate_fn, rescale, spatial_mean
from se_flax.layers.labels import module_label
from se_spec.attention import SPATIAL_DIMS, check_input, eca_kernel_size
from se_spec.validation import check_choice, check_positive_int


class ECA(nn.Module):
    """`x * gate(conv1d_over_channels(mean(x)))`; records the gate `(N, C)`."""

    channels: int
    kernel_size: int | None = None
    gamma: float = 2
    beta: float = 1
    gate: str = "sigmoid"
    spatial_dims: int | None = None
    dtype: Any = None

    def resolved_kernel_size(self) -> int:
        """The explicit kernel size, or the ECA-Net rule applied to `channels`."""
        label = module_label(self)
        check_positive_int(label, "channels", self.channels)
        if self.kernel_size is None:
            return eca_kernel_size(self.channels, self.gamma, self.beta)
        k = check_positive_int(label, "kernel_size", self.kernel_size)
        if k % 2 == 0:
            raise ValueError(f"{label}: kernel_size={k} is even; expected an odd size so the "
                             "channel convolution stays centred")
        return k

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        """Rescale `x` channel-wise."""
        label = module_label(self)
        k = self.resolved_kernel_size()
        if self.spatial_dims is not None:
            check_choice(label, "spatial_dims", self.spatial_dims, SPATIAL_DIMS)
        gate = gate_fn(label, self.gate)
        check_input(label, x.shape, self.channels, -1, self.spatial_dims)
        s = spatial_mean(x)[..., None]  # (N, C, 1): channels become the convolved axis
        pad = (k - 1) // 2
        s = nn.Conv(1, (k,), padding=[(pad, pad)], use_bias=False, name="conv")(s)[..., 0]
        s = gate(s)
        self.sow("intermediates", "gate", s)
        return rescale(x, s)
