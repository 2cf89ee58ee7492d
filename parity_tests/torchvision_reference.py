"""Write `tests/data/torchvision_transforms.npz`: torchvision's crops and transformed pixels.

The JAX-side tests (`tests/train/test_transforms.py`) compare the host transforms of
`train.transforms` with these references without needing torchvision; the live comparison is
`parity_tests/test_torchvision_transforms.py`. Regenerate with
`python -m parity_tests.torchvision_reference` (needs torch and torchvision).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

OUTPUT = Path(__file__).resolve().parents[1] / "tests" / "data" / "torchvision_transforms.npz"
CROP_IMAGE_SIZES = ((375, 500), (500, 375), (64, 64), (40, 400))  # (H, W); the last falls back
CROP_SAMPLES = 4000
EVAL_IMAGE_SIZES = ((50, 70), (70, 50), (36, 36), (45, 90), (41, 61))
EVAL_RESIZES = (36, 37)  # 37 - 32 = 5: the central crop's half-pixel offset rounds to even
EVAL_SIZE = 32
RESIZED_CROPS = ((0, 0, 50, 70), (3, 7, 20, 31), (10, 2, 33, 17), (1, 1, 8, 8))
RESIZED_CROP_SIZE = 16


def reference_images() -> list[np.ndarray]:
    """Smooth-plus-noise uint8 RGB images of the sizes in `EVAL_IMAGE_SIZES`."""
    rng = np.random.default_rng(20261203)
    images = []
    for h, w in EVAL_IMAGE_SIZES:
        yy, xx = np.mgrid[0:h, 0:w]
        smooth = np.stack([127 + 100 * np.sin(xx / 7 + c) * np.cos(yy / 5 - c) for c in range(3)],
                          -1)
        images.append(np.clip(smooth + rng.normal(0, 20, (h, w, 3)), 0, 255).astype(np.uint8))
    return images


def torchvision_crops(height: int, width: int, count: int, seed: int = 0) -> np.ndarray:
    """`(count, 4)` of `(top, left, h, w)` from `RandomResizedCrop.get_params`."""
    import torch
    from PIL import Image
    from torchvision.transforms import RandomResizedCrop

    torch.manual_seed(seed)
    image = Image.new("RGB", (width, height))
    return np.asarray([RandomResizedCrop.get_params(image, [0.08, 1.0], [3 / 4, 4 / 3])
                       for _ in range(count)], np.int16)


def torchvision_pixels(images: list[np.ndarray]) -> dict[str, np.ndarray]:
    """Torchvision's eval transform and resized crops of `images` (PIL inputs)."""
    from PIL import Image
    from torchvision.transforms import CenterCrop, Compose, Resize
    from torchvision.transforms import functional as F

    out: dict[str, np.ndarray] = {}
    for k, a in enumerate(images):
        pil = Image.fromarray(a)
        for short in EVAL_RESIZES:
            tf = Compose([Resize(short), CenterCrop(EVAL_SIZE)])
            out[f"eval_{k}_{short}"] = np.asarray(tf(pil), np.uint8)
        for c, (top, left, h, w) in enumerate(RESIZED_CROPS):
            if top + h <= a.shape[0] and left + w <= a.shape[1]:
                crop = F.resized_crop(pil, top, left, h, w, [RESIZED_CROP_SIZE] * 2,
                                      F.InterpolationMode.BILINEAR, antialias=True)
                out[f"crop_{k}_{c}"] = np.asarray(crop, np.uint8)
    return out


def reference() -> dict[str, Any]:
    """Every array the npz holds."""
    images = reference_images()
    arrays = {f"image_{k}": a for k, a in enumerate(images)}
    for h, w in CROP_IMAGE_SIZES:
        arrays[f"crops_{h}x{w}"] = torchvision_crops(h, w, CROP_SAMPLES)
    arrays.update(torchvision_pixels(images))
    return arrays


def main() -> None:
    """Write the reference file."""
    import torchvision

    arrays = reference()
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(OUTPUT, torchvision_version=np.asarray(torchvision.__version__),
                        **arrays)
    print(f"wrote {OUTPUT} ({OUTPUT.stat().st_size} bytes, torchvision "
          f"{torchvision.__version__})")


if __name__ == "__main__":
    main()
