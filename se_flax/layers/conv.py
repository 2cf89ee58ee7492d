"""Convolution for `nn.Conv(conv_general_dilated=...)`: small cases as matrix products.

Two rewrites of `lax.conv_general_dilated`, each the same math as a different program for XLA:

* `pointwise`: a 1x1 convolution (any stride, no padding, no dilation, one group) is a strided
  slice and a matrix product over the channel axis, with its own VJP: `dx = dy @ W^T` and
  `dW = x^T @ dy`, the latter on `(rows, C)` matrices so that XLA runs one product with a
  transposed operand instead of copying `x` transposed. XLA's CPU backend lowers the weight
  gradient of a 1x1 convolution to a convolution whose window is the whole feature map.
* `small_map`: a stride-1 convolution over a map of at most `SMALL_MAP` pixels a side is one
  product over gathered patches (XLA's CPU backend swaps the operands of such a convolution,
  the kernel being larger than the map). Gradients come from autodiff of pad, slices and the
  product, so forward mode works.

Every other convolution goes to `lax.conv_general_dilated` unchanged, and parameters keep
Flax's conv layout, so checkpoints and conversion are unaffected. The pointwise path supports
reverse-mode differentiation (`grad`, `vjp`, also nested) but not forward mode (`jvp`), as for
any `jax.custom_vjp`. Which model uses which is `se_flax.implementation`'s choice; the
measurements behind it are in bench/BENCHMARKS.md.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

SMALL_MAP = 2  # largest input side (pixels) that goes to the patch product


def _channels_last(dimension_numbers: Any, ndim: int) -> bool:
    """True for Flax's layout: input/output `(N, *spatial, C)`, kernel `(*spatial, I, O)`."""
    dn = lax.conv_dimension_numbers((1,) * ndim, (1,) * ndim, dimension_numbers)
    spatial = tuple(range(1, ndim - 1))
    return (dn.lhs_spec == (0, ndim - 1, *spatial) and dn.out_spec == dn.lhs_spec
            and dn.rhs_spec == (ndim - 1, ndim - 2, *range(ndim - 2)))


def _is_pointwise(rhs: jax.Array, padding: Any, lhs_dilation: Sequence[int] | None,
                  rhs_dilation: Sequence[int] | None, feature_group_count: int,
                  batch_group_count: int) -> bool:
    """True for a 1x1 kernel with no padding, no dilation and a single group."""
    if isinstance(padding, str):
        no_pad = padding.upper() in ("VALID", "SAME", "SAME_LOWER")  # all pad 0 for 1x1
    else:
        no_pad = all(tuple(p) == (0, 0) for p in padding)
    return (all(k == 1 for k in rhs.shape[:-2]) and no_pad
            and all(d == 1 for d in (lhs_dilation or ()))
            and all(d == 1 for d in (rhs_dilation or ()))
            and feature_group_count == 1 and batch_group_count == 1)


def _is_small_map(lhs: jax.Array, rhs: jax.Array, window_strides: Sequence[int], padding: Any,
                  lhs_dilation: Sequence[int] | None, rhs_dilation: Sequence[int] | None,
                  feature_group_count: int, batch_group_count: int) -> bool:
    """True for a stride-1, undilated, single-group convolution of a map <= `SMALL_MAP` a side."""
    return (not isinstance(padding, str)
            and all(len(p) == 2 and min(p) >= 0 for p in padding)
            and all(s == 1 for s in window_strides)
            and all(d == 1 for d in (lhs_dilation or ()))
            and all(d == 1 for d in (rhs_dilation or ()))
            and feature_group_count == 1 and batch_group_count == 1
            and all(n <= SMALL_MAP for n in lhs.shape[1:-1])
            and any(k > 1 for k in rhs.shape[:-2]))


def _patch_product(x: jax.Array, kernel: jax.Array, padding: Sequence[Sequence[int]],
                   precision: Any) -> jax.Array:
    """Stride-1 convolution as one product: every window tap's slice side by side on channels."""
    window = kernel.shape[:-2]
    xp = jnp.pad(x, ((0, 0), *(tuple(p) for p in padding), (0, 0)))
    out = [xp.shape[1 + i] - k + 1 for i, k in enumerate(window)]
    taps = [xp[(slice(None), *(slice(o, o + n) for o, n in zip(offset, out, strict=True)))]
            for offset in itertools.product(*(range(k) for k in window))]
    # Tap-major, then input channel: the row order of the kernel reshaped to (taps * C_in, C_out).
    patches = jnp.concatenate(taps, axis=-1)
    flat = kernel.reshape(-1, kernel.shape[-1])
    return lax.dot_general(patches, flat, (((x.ndim - 1,), (0,)), ((), ())),
                           precision=precision)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _matmul_channels(x: jax.Array, kernel: jax.Array, precision: Any) -> jax.Array:
    """`x @ kernel` over the last axis of `x` (any leading shape), `kernel` `(C_in, C_out)`."""
    return lax.dot_general(x, kernel, (((x.ndim - 1,), (0,)), ((), ())), precision=precision)


def _matmul_channels_fwd(x: jax.Array, kernel: jax.Array,
                         precision: Any) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
    return _matmul_channels(x, kernel, precision), (x, kernel)


def _matmul_channels_bwd(precision: Any, residuals: tuple[jax.Array, jax.Array],
                         dy: jax.Array) -> tuple[jax.Array, jax.Array]:
    x, kernel = residuals
    dx = lax.dot_general(dy, kernel, (((dy.ndim - 1,), (1,)), ((), ())), precision=precision)
    # As 2-D `(rows, C)` matrices: a dot contracting the leading axis of both operands is one
    # matrix product with a transposed operand. Contracting several leading axes of the
    # N-D arrays instead makes XLA transpose `x` first, fused into whatever produced it.
    x_rows = x.reshape(-1, x.shape[-1])
    dy_rows = dy.reshape(-1, dy.shape[-1])
    dw = lax.dot_general(x_rows, dy_rows, (((0,), (0,)), ((), ())), precision=precision)
    return dx.astype(x.dtype), dw.astype(kernel.dtype)


_matmul_channels.defvjp(_matmul_channels_fwd, _matmul_channels_bwd)


def conv_general_dilated(lhs: jax.Array, rhs: jax.Array, window_strides: Sequence[int],
                         padding: Any, lhs_dilation: Sequence[int] | None = None,
                         rhs_dilation: Sequence[int] | None = None,
                         dimension_numbers: Any = None, feature_group_count: int = 1,
                         batch_group_count: int = 1, precision: Any = None,
                         preferred_element_type: Any = None, *, pointwise: bool = True,
                         small_map: bool = True) -> jax.Array:
    """`lax.conv_general_dilated`, with the `pointwise` and `small_map` rewrites where they fit."""
    if ((pointwise or small_map) and preferred_element_type is None
            and dimension_numbers is not None and lhs.ndim >= 3
            and _channels_last(dimension_numbers, lhs.ndim)):
        if pointwise and _is_pointwise(rhs, padding, lhs_dilation, rhs_dilation,
                                       feature_group_count, batch_group_count):
            if any(s != 1 for s in window_strides):
                lhs = lhs[(slice(None), *(slice(None, None, s) for s in window_strides))]
            return _matmul_channels(lhs, rhs.reshape(rhs.shape[-2:]), precision)
        if small_map and _is_small_map(lhs, rhs, window_strides, padding, lhs_dilation,
                                       rhs_dilation, feature_group_count, batch_group_count):
            return _patch_product(lhs, rhs, padding, precision)
    return lax.conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation,
                                    rhs_dilation, dimension_numbers, feature_group_count,
                                    batch_group_count, precision, preferred_element_type)
