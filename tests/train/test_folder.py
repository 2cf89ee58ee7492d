"""The streaming image folder: JPEGs of varying sizes and modes, corrupt files, bounded memory."""

import tracemalloc

import numpy as np
import pytest
from PIL import Image

from train.data import load_dataset
from train.folder import ImageError, PathIndex
from train.pipeline import train_batches


def write_jpegs(root, count, rng, classes=("ant", "bee")):
    """`count` JPEGs per class with varying sizes and modes (RGB, greyscale, CMYK, palette)."""
    for c in classes:
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            h, w = int(rng.integers(20, 60)), int(rng.integers(20, 60))
            im = Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
            mode = ("RGB", "L", "CMYK", "P")[i % 4]
            im = im.convert(mode)
            if mode == "P":
                im.save(root / c / f"{i:04d}.png")
            else:
                im.save(root / c / f"{i:04d}.jpg", quality=90)


def test_varying_sizes_and_modes_stream_to_one_rgb_shape(tmp_path):
    write_jpegs(tmp_path, 8, np.random.default_rng(0))
    ds = load_dataset(f"folder:{tmp_path}", image_size=16, crop="random_resized",
                      eval_fraction=0.25)
    assert ds.image_shape == (16, 16, 3) and (len(ds.train), len(ds.eval)) == (12, 4)
    x, y = ds.train.get(np.arange(12), step=3)
    assert x.shape == (12, 16, 16, 3) and x.dtype == np.uint8 and set(y.tolist()) == {0, 1}
    np.testing.assert_array_equal(x, ds.train.get(np.arange(12), step=3)[0])  # (seed, step)
    assert not np.array_equal(x, ds.train.get(np.arange(12), step=4)[0])  # new crops per step
    ev = ds.eval.get(np.arange(4))[0]
    np.testing.assert_array_equal(ev, ds.eval.get(np.arange(4))[0])


def test_greyscale_folder_stays_single_channel(tmp_path):
    rng = np.random.default_rng(1)
    (tmp_path / "a").mkdir()
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (10, 12), dtype=np.uint8)).save(
            tmp_path / "a" / f"{i}.jpg")
    ds = load_dataset(f"folder:{tmp_path}", image_size=8, eval_fraction=0.34)
    assert ds.image_shape == (8, 8, 1)
    assert ds.train.get(np.arange(2))[0].shape == (2, 8, 8, 1)


def test_corrupt_file_is_reported_with_its_path(tmp_path):
    write_jpegs(tmp_path, 4, np.random.default_rng(2))
    (tmp_path / "bee" / "0002.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    ds = load_dataset(f"folder:{tmp_path}", image_size=16, eval_fraction=0.25)
    every = np.arange(len(ds.train))
    with pytest.raises(ImageError, match=r"cannot decode image .*bee/0002\.jpg.*class 'bee'"):
        ds.train.get(every, step=0)
    # the same error, path included, comes back from a worker process and stops the loader
    with pytest.raises(ImageError, match=r"bee/0002\.jpg"):
        for _ in train_batches(ds.train, 0, 4, len(ds.train), 0, workers=1):
            pass


def test_path_index_round_trip():
    paths = ["a/1.jpg", "b/é.jpg", "c/sub/x.png"]
    index = PathIndex.from_paths(paths)
    assert [index[i] for i in range(3)] == paths and len(index) == 3
    assert [index.take(np.array([2, 0]))[i] for i in range(2)] == [paths[2], paths[0]]


def _loader_peak_bytes(root) -> int:
    """Peak Python-heap bytes of opening a folder and reading two training batches."""
    tracemalloc.start()
    try:
        ds = load_dataset(f"folder:{root}", image_size=32, eval_fraction=0.1)
        for _ in train_batches(ds.train, 0, 2, 8, 0):
            pass
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_loader_memory_does_not_grow_with_the_number_of_images(tmp_path):
    rng = np.random.default_rng(3)
    small, large = tmp_path / "small", tmp_path / "large"
    for root, count in ((small, 25), (large, 200)):
        for c in ("a", "b"):
            (root / c).mkdir(parents=True)
            for i in range(count):
                Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(
                    root / c / f"{i:04d}.jpg")
    _loader_peak_bytes(small)  # warm imports and caches
    extra_images = 2 * (200 - 25)
    growth = _loader_peak_bytes(large) - _loader_peak_bytes(small)
    # Holding the decoded images would cost 32*32*3 = 3,072 bytes each (537 kB here); the path
    # index and the listing cost well under 1 kB per image.
    assert growth < 1_000 * extra_images, f"{growth} bytes for {extra_images} more images"
