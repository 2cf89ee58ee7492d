"""Host transforms against live torchvision (skipped where torchvision is not installed).

`tests/train/test_transforms.py` runs the same comparisons everywhere against the stored
references; here they are recomputed with the installed torchvision, with more samples.
"""

import math

import numpy as np
import pytest
from PIL import Image

from parity_tests.torchvision_reference import (
    CROP_IMAGE_SIZES,
    EVAL_RESIZES,
    EVAL_SIZE,
    OUTPUT,
    RESIZED_CROP_SIZE,
    RESIZED_CROPS,
    reference_images,
    torchvision_crops,
    torchvision_pixels,
)
from train.transforms import ImageTransform, resized_crop, sample_crop

pytest.importorskip("torchvision")
SAMPLES = 20_000
KS_BOUND = 1.95 * math.sqrt(2 / SAMPLES)  # two-sample Kolmogorov-Smirnov, alpha = 0.001


def ks_distance(a, b):
    grid = np.union1d(a, b)
    return float(np.max(np.abs(np.searchsorted(np.sort(a), grid, side="right") / len(a)
                               - np.searchsorted(np.sort(b), grid, side="right") / len(b))))


@pytest.mark.parametrize("height,width", CROP_IMAGE_SIZES)
def test_crop_sampler_matches_torchvision_get_params(height, width):
    theirs = torchvision_crops(height, width, SAMPLES, seed=1).astype(np.float64)
    rng = np.random.default_rng(1)
    ours = np.asarray([sample_crop(rng, height, width) for _ in range(SAMPLES)], np.float64)
    for name, f in {"area": lambda c: c[:, 2] * c[:, 3], "log_aspect":
                    lambda c: np.log(c[:, 3] / c[:, 2]), "top": lambda c: c[:, 0],
                    "left": lambda c: c[:, 1]}.items():
        assert ks_distance(f(ours), f(theirs)) < KS_BOUND, name


def test_eval_and_resized_crops_equal_torchvision_pixels():
    images = reference_images()
    expected = torchvision_pixels(images)
    stored = np.load(OUTPUT)
    for key, value in expected.items():
        np.testing.assert_array_equal(stored[key], value)  # the stored reference is current
        k, rest = int(key.split("_")[1]), key.split("_")[2]
        pil = Image.fromarray(images[k])
        if key.startswith("eval"):
            got = ImageTransform(EVAL_SIZE, "random_resized", eval_resize=int(rest))(pil)
        else:
            got = np.asarray(resized_crop(pil, *RESIZED_CROPS[int(rest)], RESIZED_CROP_SIZE))
        np.testing.assert_array_equal(got, value)
    assert len([k for k in expected if k.startswith("eval")]) == len(images) * len(EVAL_RESIZES)
