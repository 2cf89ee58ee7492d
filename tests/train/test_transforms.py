"""Host transforms against torchvision: crop statistics and exact evaluation pixels.

The references in `tests/data/torchvision_transforms.npz` were produced by torchvision
(`python -m parity_tests.torchvision_reference`); `parity_tests/test_torchvision_transforms.py`
repeats the comparison live where torchvision is installed.
"""

import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from train.transforms import (
    ImageTransform,
    resize_center_crop,
    resized_crop,
    sample_crop,
)

REFERENCE = np.load(Path(__file__).parents[1] / "data" / "torchvision_transforms.npz")
SIZES = ((375, 500), (500, 375), (64, 64), (40, 400))
# Two-sample Kolmogorov-Smirnov bound for 4,000 vs 4,000 draws at alpha = 0.001.
KS_BOUND = 1.95 * math.sqrt(2 / 4000)


def crop_features(crops: np.ndarray, height: int, width: int) -> dict[str, np.ndarray]:
    top, left, h, w = (crops[:, i].astype(np.float64) for i in range(4))
    return {"area": h * w / (height * width), "log_aspect": np.log(w / h),
            "centre_y": (top + h / 2) / height, "centre_x": (left + w / 2) / width}


def ks_distance(a: np.ndarray, b: np.ndarray) -> float:
    grid = np.union1d(a, b)
    cdf = lambda x: np.searchsorted(np.sort(x), grid, side="right") / len(x)  # noqa: E731
    return float(np.max(np.abs(cdf(a) - cdf(b))))


def fallback_share(crops: np.ndarray, height: int, width: int) -> float:
    """Share of crops that are torchvision's central fallback box for this image."""
    in_ratio = width / height
    if in_ratio > 4 / 3:
        h, w = height, int(round(height * 4 / 3))
    elif in_ratio < 3 / 4:
        h, w = int(round(width * 4 / 3)), width
    else:
        h, w = height, width
    box = np.array([(height - h) // 2, (width - w) // 2, h, w])
    return float(np.mean(np.all(crops == box, axis=1)))


def our_crops(height, width, sampler=sample_crop, seed=0, count=4000):
    rng = np.random.default_rng(seed)
    return np.asarray([sampler(rng, height, width) for _ in range(count)])


@pytest.mark.parametrize("height,width", SIZES)
def test_crop_parameters_follow_torchvision_distribution(height, width):
    ours = our_crops(height, width)
    theirs = REFERENCE[f"crops_{height}x{width}"]
    assert np.all(ours[:, 2] >= 1) and np.all(ours[:, 0] + ours[:, 2] <= height)
    assert np.all(ours[:, 3] >= 1) and np.all(ours[:, 1] + ours[:, 3] <= width)
    a, b = crop_features(ours, height, width), crop_features(theirs, height, width)
    distances = {k: ks_distance(a[k], b[k]) for k in a}
    assert max(distances.values()) < KS_BOUND, distances
    p_ours, p_theirs = fallback_share(ours, height, width), fallback_share(theirs, height, width)
    pooled = (p_ours + p_theirs) / 2
    assert abs(p_ours - p_theirs) <= 4 * math.sqrt(2 * pooled * (1 - pooled) / 4000) + 1e-9


def test_the_distribution_check_catches_a_wrong_sampler():
    def uniform_ratio(rng, height, width):  # aspect ratio uniform, not log-uniform
        for _ in range(10):
            target = height * width * rng.uniform(0.08, 1.0)
            aspect = rng.uniform(3 / 4, 4 / 3)
            w, h = int(round(math.sqrt(target * aspect))), int(round(math.sqrt(target / aspect)))
            if 0 < w <= width and 0 < h <= height:
                top, left = rng.integers(0, height - h + 1), rng.integers(0, width - w + 1)
                return int(top), int(left), h, w
        return 0, 0, height, width

    wrong = crop_features(our_crops(375, 500, uniform_ratio), 375, 500)
    reference = crop_features(REFERENCE["crops_375x500"], 375, 500)
    assert ks_distance(wrong["log_aspect"], reference["log_aspect"]) > KS_BOUND


def reference_images():
    return [REFERENCE[f"image_{k}"] for k in range(5)]


@pytest.mark.parametrize("short", [36, 37])
def test_eval_transform_matches_torchvision_pixels(short):
    transform = ImageTransform(32, "random_resized", eval_resize=short)
    for k, image in enumerate(reference_images()):
        expected = REFERENCE[f"eval_{k}_{short}"]
        np.testing.assert_array_equal(np.asarray(resize_center_crop(
            Image.fromarray(image), short, 32)), expected)
        np.testing.assert_array_equal(transform(Image.fromarray(image)), expected)


def test_resized_crop_matches_torchvision_pixels():
    boxes = ((0, 0, 50, 70), (3, 7, 20, 31), (10, 2, 33, 17), (1, 1, 8, 8))
    compared = 0
    for k, image in enumerate(reference_images()):
        for c, box in enumerate(boxes):
            key = f"crop_{k}_{c}"
            if key in REFERENCE:
                got = np.asarray(resized_crop(Image.fromarray(image), *box, 16))
                np.testing.assert_array_equal(got, REFERENCE[key])
                compared += 1
    assert compared >= 12


def test_training_crop_is_drawn_from_the_rng_and_sized():
    image = Image.fromarray(reference_images()[3])
    transform = ImageTransform(24, "random_resized")
    a = transform(image, np.random.default_rng([0, 5, 7]))
    assert a.shape == (24, 24, 3) and a.dtype == np.uint8
    np.testing.assert_array_equal(a, transform(image, np.random.default_rng([0, 5, 7])))
    assert not np.array_equal(a, transform(image, np.random.default_rng([0, 6, 7])))
    assert transform.resize_to == 27  # 24 * 256 / 224, rounded


def test_bad_transform_options_name_the_problem():
    with pytest.raises(ValueError, match="crop 'centre' is not one of resize, random_resized"):
        ImageTransform(32, "centre")
    with pytest.raises(ValueError, match="needs an output size"):
        ImageTransform(None, "random_resized")
