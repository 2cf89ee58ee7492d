"""Efficient Channel Attention in NNX (Wang et al., ECA-Net, CVPR 2020): `se_flax.ECA`'s twin.

A 1D convolution `conv` across the channel axis of the squeezed descriptor; kernel size from
the channel count by the paper's rule (`se_spec.attention.eca_kernel_size`) unless given.
"""

from __future__ import annotations

from typing import Any

import jax
from flax import nnx

from se_flax.layers.functional import gate_fn, rescale, spatial_mean
from se_flax.nnx.intermediates import labelled, record
from se_spec.attention import SPATIAL_DIMS, check_input, eca_kernel_size
from se_spec.validation import check_choice, check_positive_int


class ECA(nnx.Module):
    """`x * gate(conv1d_over_channels(mean(x)))`; records the gate `(N, C)`."""

    def __init__(self, channels: int, kernel_size: int | None = None, gamma: float = 2,
                 beta: float = 1, gate: str = "sigmoid", spatial_dims: int | None = None,
                 dtype: Any = None, *, spatial_rank: int | None = None, path: str | None = None,
                 rngs: nnx.Rngs) -> None:
        del spatial_rank  # the kernel does not depend on the input's rank
        label = labelled("ECA", path)
        check_positive_int(label, "channels", channels)
        if kernel_size is None:
            k = eca_kernel_size(channels, gamma, beta)
        else:
            k = check_positive_int(label, "kernel_size", kernel_size)
            if k % 2 == 0:
                raise ValueError(f"{label}: kernel_size={k} is even; expected an odd size so "
                                 "the channel convolution stays centred")
        if spatial_dims is not None:
            check_choice(label, "spatial_dims", spatial_dims, SPATIAL_DIMS)
        self.gate = gate_fn(label, gate)
        self.label, self.channels, self.spatial_dims = label, channels, spatial_dims
        self.dtype = dtype
        self.kernel_size = k
        pad = (k - 1) // 2
        self.conv = nnx.Conv(1, 1, (k,), padding=[(pad, pad)], use_bias=False, rngs=rngs)

    def __call__(self, x: jax.Array, train: bool | None = None) -> jax.Array:
        """Rescale `x` channel-wise."""
        check_input(self.label, x.shape, self.channels, -1, self.spatial_dims)
        s = self.gate(self.conv(spatial_mean(x)[..., None])[..., 0])
        record(self, "gate", s)
        return rescale(x, s)
