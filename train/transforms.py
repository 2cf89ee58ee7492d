"""Host-side image transforms: decoded images of any size → uint8 squares of one size.

Two crops, chosen by `ImageTransform.crop`:

- `"resize"`: the whole image resized to `size x size` (bilinear), for datasets whose images
  already share one shape or nearly so (digits, CIFAR, small folders). Evaluation does the same.
- `"random_resized"`: the ImageNet ("Inception") crop with torchvision's semantics. Training
  takes a random crop of 8-100 % of the area with an aspect ratio in [3/4, 4/3] (log-uniform),
  ten attempts then torchvision's central fallback (`sample_crop`), resized to `size x size`;
  evaluation resizes the shorter side to `eval_resize` (default `size * 256 / 224`, e.g.
  256 → 224) and takes the central `size x size` crop, with torchvision's rounding.

Resampling is PIL's antialiased bilinear, as torchvision applies to PIL images, so the eval
transform gives torchvision's pixels exactly. The horizontal flip and normalisation run on the
device (`train.augment`); the host only decodes, crops and resizes uint8 images.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from PIL import Image

CROPS = ("resize", "random_resized")
AREA_SCALE = (0.08, 1.0)
ASPECT_RATIO = (3.0 / 4.0, 4.0 / 3.0)
EVAL_CROP_FRACTION = 224 / 256  # the central crop is this share of the resized shorter side
ATTEMPTS = 10


def sample_crop(rng: np.random.Generator, height: int, width: int,
                scale: tuple[float, float] = AREA_SCALE,
                ratio: tuple[float, float] = ASPECT_RATIO) -> tuple[int, int, int, int]:
    """`(top, left, h, w)` of a random-resized crop, with torchvision's sampling rule.

    Up to ten draws of an area fraction, uniform in `scale`, and an aspect ratio w/h,
    log-uniform in `ratio`; the first whose rounded box fits is placed uniformly at random.
    Otherwise the fallback is the central crop of the whole image clamped to `ratio`.
    """
    area = height * width
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    for _ in range(ATTEMPTS):
        target = area * rng.uniform(scale[0], scale[1])
        aspect = math.exp(rng.uniform(log_lo, log_hi))
        w = int(round(math.sqrt(target * aspect)))
        h = int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            top = int(rng.integers(0, height - h + 1))
            left = int(rng.integers(0, width - w + 1))
            return top, left, h, w
    in_ratio = width / height
    if in_ratio < min(ratio):
        w, h = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        w, h = int(round(height * max(ratio))), height
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def shorter_side_size(height: int, width: int, short: int) -> tuple[int, int]:
    """`(h, w)` with the shorter side `short` and the aspect kept (torchvision's `Resize(int)`)."""
    if width <= height:
        return int(short * height / width), short
    return short, int(short * width / height)


def center_box(height: int, width: int, size: int) -> tuple[int, int]:
    """`(top, left)` of the central `size x size` crop (torchvision's `CenterCrop` rounding)."""
    return int(round((height - size) / 2.0)), int(round((width - size) / 2.0))


def to_array(image: Image.Image) -> np.ndarray:
    """uint8 `(H, W, C)` of a PIL image (greyscale gets a channel axis)."""
    a = np.asarray(image, np.uint8)
    return a[..., None] if a.ndim == 2 else a


def resized_crop(image: Image.Image, top: int, left: int, height: int, width: int,
                 size: int) -> Image.Image:
    """The box `(top, left, height, width)` of `image` resized to `size x size` (bilinear)."""
    from PIL import Image

    box = image.crop((left, top, left + width, top + height))
    return box.resize((size, size), Image.BILINEAR)


def resize_center_crop(image: Image.Image, short: int, size: int) -> Image.Image:
    """Shorter side resized to `short` (aspect kept), then the central `size x size` crop."""
    from PIL import Image

    width, height = image.size
    h, w = shorter_side_size(height, width, short)
    if (h, w) != (height, width):
        image = image.resize((w, h), Image.BILINEAR)
    top, left = center_box(h, w, size)
    return image.crop((left, top, left + size, top + size))


@dataclass(frozen=True)
class ImageTransform:
    """Decoded PIL image → uint8 `(size, size, C)`; `rng` given: training, else evaluation."""

    size: int | None  # None: keep the stored size (images must then share one shape)
    crop: str = "resize"
    eval_resize: int | None = None  # random_resized: shorter side before the central crop

    def __post_init__(self) -> None:
        if self.crop not in CROPS:
            raise ValueError(f"crop {self.crop!r} is not one of {', '.join(CROPS)}")
        if self.crop == "random_resized" and self.size is None:
            raise ValueError("the random_resized crop needs an output size (image_size)")

    @property
    def resize_to(self) -> int | None:
        """Shorter side of the evaluation resize (`random_resized` only)."""
        if self.crop != "random_resized":
            return None
        return self.eval_resize or int(round(self.size / EVAL_CROP_FRACTION))

    def __call__(self, image: Image.Image, rng: np.random.Generator | None = None
                 ) -> np.ndarray:
        """Crop and resize one image; `rng` draws the training crop (None: evaluation)."""
        from PIL import Image

        if self.size is None:
            return to_array(image)
        out = (self.size, self.size)
        if self.crop == "resize":
            if image.size != out:
                image = image.resize(out, Image.BILINEAR)
            return to_array(image)
        if rng is not None:
            width, height = image.size
            return to_array(resized_crop(image, *sample_crop(rng, height, width), self.size))
        return to_array(resize_center_crop(image, self.resize_to, self.size))
