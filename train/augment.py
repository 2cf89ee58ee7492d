"""On-device augmentation and normalisation, traced into the compiled train step.

The host feeds uint8 batches; here each image gets a pad-`p` random crop (zero padding, as
torchvision's `RandomCrop(size, padding=p)`), an optional horizontal flip, and per-channel
normalisation `(x / 255 - mean) / std`. Randomness is keyed by the example's position in the
*global* batch (`fold_in(key, index)`), so the augmented batch is the same whatever the number of
devices or processes it is split over.
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
    """uint8 `(N, H, W, C)` → `(x / 255 - mean) / std` in `dtype`, computed in float32.

    Computed as `(x - shift) * scale` with host-side constants: one subtraction and one
    multiplication, which any framework rounds identically (XLA rewrites a division by a
    constant into a multiplication by its reciprocal, which changes the last bit).
    """
    shift, scale = normalize_constants(mean, std)
    x = (images.astype(jnp.float32) - jnp.asarray(shift)) * jnp.asarray(scale)
    return x.astype(dtype)


def _augment_one(key: jax.Array, image: jax.Array, padding: int, flip: bool) -> jax.Array:
    k_crop, k_flip = jax.random.split(key)
    if padding:
        padded = jnp.pad(image, ((padding, padding), (padding, padding), (0, 0)))
        dy, dx = jax.random.randint(k_crop, (2,), 0, 2 * padding + 1)
        image = lax.dynamic_slice(padded, (dy, dx, 0), image.shape)
    if flip:
        image = jnp.where(jax.random.bernoulli(k_flip), image[:, ::-1, :], image)
    return image


def augment(images: jax.Array, key: jax.Array, example_ids: jax.Array, padding: int,
            flip: bool) -> jax.Array:
    """Random crop and flip of uint8 images; example `i` uses `fold_in(key, example_ids[i])`."""
    if not padding and not flip:
        return images
    keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(example_ids)
    return jax.vmap(lambda k, im: _augment_one(k, im, padding, flip))(keys, images)
