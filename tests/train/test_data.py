import io

import numpy as np
import pytest
from PIL import Image

from train.data import DatasetUnavailable, batch_indices, load_dataset, steps_per_epoch
from train.folder import ImageError
from train.pipeline import eval_batches, train_batches

tfds = pytest.importorskip("tensorflow_datasets")


def test_digits_is_embedded_and_fixed():
    ds = load_dataset("digits")
    assert (len(ds.train), len(ds.eval), ds.num_classes, ds.image_shape) == \
        (1438, 359, 10, (8, 8, 1))
    x, y = ds.train.get(np.arange(5))
    assert x.dtype == np.uint8 and x.shape == (5, 8, 8, 1) and x.max() <= 255
    assert y.dtype == np.int32
    again = load_dataset("digits", seed=7)
    np.testing.assert_array_equal(again.eval.get(np.arange(359))[1], ds.eval.get(
        np.arange(359))[1])


def test_batch_order_is_a_function_of_seed_and_step():
    a = batch_indices(30, 100, 8, seed=3)
    np.testing.assert_array_equal(a, batch_indices(30, 100, 8, seed=3))
    assert steps_per_epoch(100, 8) == 12
    epoch = np.concatenate([batch_indices(s, 100, 8, 3) for s in range(12)])
    assert len(set(epoch)) == 96  # no repeats within an epoch
    assert not np.array_equal(batch_indices(0, 100, 8, 3), batch_indices(12, 100, 8, 3))


def test_processes_take_disjoint_slices_of_the_global_batch():
    ds = load_dataset("digits")
    whole = [b.labels for b in train_batches(ds.train, 5, 7, 16, 0)]
    parts = [[b.labels for b in train_batches(ds.train, 5, 7, 16, 0, p, 2)] for p in range(2)]
    for s in range(2):
        np.testing.assert_array_equal(np.concatenate([parts[0][s], parts[1][s]]), whole[s])


def test_eval_batches_pad_and_mask():
    ds = load_dataset("digits")
    batches = list(eval_batches(ds.eval, 100))
    assert len(batches) == 4
    images, labels, mask = batches[-1]
    assert images.shape == (100, 8, 8, 1) and mask.sum() == 59
    assert images[mask == 0].max() == 0


def write_png(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def test_image_folder_with_and_without_splits(tmp_path):
    rng = np.random.default_rng(0)
    for cls in ("cat", "dog", "eel"):
        for i in range(5):
            write_png(tmp_path / "flat" / cls / f"{i}.png",
                      rng.integers(0, 255, (12, 10, 3), dtype=np.uint8))
            write_png(tmp_path / "split" / "train" / cls / f"{i}.png",
                      rng.integers(0, 255, (12, 10), dtype=np.uint8))
        write_png(tmp_path / "split" / "test" / cls / "0.png",
                  rng.integers(0, 255, (12, 10), dtype=np.uint8))
    flat = load_dataset(f"folder:{tmp_path / 'flat'}", eval_fraction=0.2)
    assert (flat.num_classes, flat.image_shape, len(flat.train), len(flat.eval)) == \
        (3, (12, 10, 3), 12, 3)
    split = load_dataset(f"folder:{tmp_path / 'split'}", image_size=8)
    assert (split.image_shape, len(split.train), len(split.eval)) == ((8, 8, 1), 15, 3)
    assert sorted(split.eval.get(np.arange(3))[1].tolist()) == [0, 1, 2]


def test_image_folder_errors(tmp_path):
    with pytest.raises(DatasetUnavailable, match="does not exist"):
        load_dataset(f"folder:{tmp_path / 'nope'}")
    (tmp_path / "empty" / "a").mkdir(parents=True)
    with pytest.raises(DatasetUnavailable, match="no images"):
        load_dataset(f"folder:{tmp_path / 'empty'}")
    write_png(tmp_path / "mixed" / "a" / "0.png", np.zeros((4, 4, 3), np.uint8))
    write_png(tmp_path / "mixed" / "b" / "0.png", np.zeros((5, 4, 3), np.uint8))
    with pytest.raises(DatasetUnavailable, match="set image_size"):
        load_dataset(f"folder:{tmp_path / 'mixed'}")
    for i in range(2 * 64):  # sizes are checked on a sample at open time, the rest on read
        write_png(tmp_path / "late" / "a" / f"{i:03d}.png", np.zeros((4, 4, 3), np.uint8))
    write_png(tmp_path / "late" / "a" / "000x.png", np.zeros((6, 4, 3), np.uint8))
    late = load_dataset(f"folder:{tmp_path / 'late'}", eval_fraction=0.5)
    source = late.train if any(late.train.paths[i].endswith("000x.png")
                               for i in range(len(late.train))) else late.eval
    bad = [i for i in range(len(source)) if source.paths[i].endswith("000x.png")][0]
    with pytest.raises(ImageError, match=r"000x\.png has shape \(6, 4, 3\).*set image_size"):
        source.get(np.array([bad]))


def test_tfds_cifar10_through_mock_data():
    with tfds.testing.mock_data(num_examples=12):
        ds = load_dataset("cifar10")
        x, y = ds.train.get(np.array([0, 3, 5]))
    assert (ds.num_classes, ds.image_shape, len(ds.train)) == (10, (32, 32, 3), 12)
    assert x.shape == (3, 32, 32, 3) and x.dtype == np.uint8 and y.dtype == np.int32


def test_tfds_imagenet2012_of_varying_sizes_through_mock_data():
    with tfds.testing.mock_data(num_examples=10):
        ds = load_dataset("imagenet2012", eval_split="validation", image_size=32,
                          crop="random_resized", seed=3)
        sizes = {ds.train.source[i]["image"].shape for i in range(10)}
        x, y = ds.train.get(np.arange(6), step=2)
        again = ds.train.get(np.arange(6), step=2)[0]
        other = ds.train.get(np.arange(6), step=3)[0]
        ev = ds.eval.get(np.arange(4))[0]
    assert len(sizes) > 1  # the mock images vary in size, as ImageNet's do
    assert (ds.num_classes, ds.image_shape) == (1000, (32, 32, 3))
    assert x.shape == (6, 32, 32, 3) and ev.shape == (4, 32, 32, 3) and y.dtype == np.int32
    np.testing.assert_array_equal(x, again)
    assert not np.array_equal(x, other)


class TinyImages(tfds.core.GeneratorBasedBuilder):
    """A 3-class dataset prepared for real (array_record files) without TensorFlow."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
        return tfds.core.DatasetInfo(builder=self, supervised_keys=("image", "label"),
                                     features=tfds.features.FeaturesDict({
                                         "image": tfds.features.Image(shape=(6, 6, 3)),
                                         "label": tfds.features.ClassLabel(num_classes=3)}))

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples(9), "test": self._generate_examples(4)}

    def _generate_examples(self, n):
        rng = np.random.default_rng(n)
        for i in range(n):
            buf = io.BytesIO()  # PNG bytes: encoding arrays would need TensorFlow
            Image.fromarray(rng.integers(0, 255, (6, 6, 3), dtype=np.uint8)).save(buf, "PNG")
            yield i, {"image": buf.getvalue(), "label": i % 3}


def test_tfds_prepared_on_disk_loads_by_name(tmp_path):
    TinyImages(data_dir=str(tmp_path), file_format="array_record").download_and_prepare()
    assert list((tmp_path / "tiny_images" / "1.0.0").glob("*.array_record*"))
    ds = load_dataset("tiny_images", data_dir=str(tmp_path))
    assert (ds.num_classes, ds.image_shape, len(ds.train), len(ds.eval)) == (3, (6, 6, 3), 9, 4)
    assert sorted(ds.train.get(np.arange(9))[1].tolist()) == [0, 0, 0, 1, 1, 1, 2, 2, 2]


def test_tfds_not_prepared_says_how_to_prepare(tmp_path):
    with pytest.raises(DatasetUnavailable) as e:
        load_dataset("cifar10", data_dir=str(tmp_path))
    msg = str(e.value)
    assert "not prepared" in msg and "tfds build cifar10 --file_format=array_record" in msg
    with pytest.raises(DatasetUnavailable, match="not available"):
        load_dataset("no_such_dataset_xyz", data_dir=str(tmp_path))
