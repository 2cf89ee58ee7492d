"""On-device augmentation and normalisation, traced into the compiled train step.

The host feeds uint8 batches; here each image gets a pad-`p` random crop (zero padding, as
torchvision's `RandomCrop(size, padding=p)`), an optional horizontal flip, and per-channel
normalisation `(x / 255 - mean) / std`. Randomness is keyed by the example's position in the
*global* batch (`fold_in(key, index)`), so the augmented batch is the same whatever the number of
devices or processes it is split over. A video clip `(T, H, W, C)` is one example: its frames share
the crop offset and the flip.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax


def normalize_constants(mean: Sequence[float], std: Sequence[float]
                        ) -> tuple[np.ndarray, np.ndarray]:
    """`(shift, scale)` in float32 with `(x / 255 - mean) / std == (x - shift) * scale`."""
    mean64, std64 = np.asarray(mean, np.float64), np.asarray(std, np.float64)
    return (255.0 * mean64).astype(np.float32), (1.0 / (255.0 * std64)).astype(np.float32)


def normalize(images: jax.Array, mean: Sequence[float], std: Sequence[float],
              dtype: jnp.dtype = jnp.float32) -> jax.Array:
    """uint8 `(N, [T,] H, W, C)` → `(x / 255 - mean) / std` in `dtype`, computed in float32.

    Computed as `(x - shift) * scale` with host-side constants: one subtraction and one
    multiplication, which any framework rounds identically (XLA rewrites a division by a
    constant into a multiplication by its reciprocal, which changes the last bit).
    """
    shift, scale = normalize_constants(mean, std)
    x = (images.astype(jnp.float32) - jnp.asarray(shift)) * jnp.asarray(scale)
    return x.astype(dtype)


def _augment_one(key: jax.Array, image: jax.Array, padding: int, flip: bool) -> jax.Array:
    """One image `(H, W, C)` or clip `(T, H, W, C)`; a clip's frames get the same crop/flip."""
    k_crop, k_flip = jax.random.split(key)
    lead = image.ndim - 3  # leading time axis of a clip
    if padding:
        padded = jnp.pad(image, ((0, 0),) * lead + ((padding, padding), (padding, padding),
                                                    (0, 0)))
        dy, dx = jax.random.randint(k_crop, (2,), 0, 2 * padding + 1)
        zero = jnp.zeros((), dy.dtype)
        image = lax.dynamic_slice(padded, (zero,) * lead + (dy, dx, zero), image.shape)
    if flip:
        image = jnp.where(jax.random.bernoulli(k_flip), jnp.flip(image, axis=-2), image)
    return image


def augment(images: jax.Array, key: jax.Array, example_ids: jax.Array, padding: int,
            flip: bool) -> jax.Array:
    """Random crop and flip of uint8 images `(N, H, W, C)` or clips `(N, T, H, W, C)`.

    Example `i` uses `fold_in(key, example_ids[i])`.
    """
    if not padding and not flip:
        return images
    keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(example_ids)
    return jax.vmap(lambda k, im: _augment_one(k, im, padding, flip))(keys, images)
