"""Input: uint8 image batches on the host, in a deterministic order that resumes exactly.

Sources: `digits` (scikit-learn's 8x8 handwritten digits, shipped inside the package: no
network), `folder:/path` (one sub-folder per class, PNG/JPEG/..., optional `train/` and
`test/`|`val/` splits; paths indexed, images decoded on access: `train.folder`) and any
TensorFlow Datasets image-classification dataset by name, read through TFDS's random-access
`data_source` (array_record files; TensorFlow is not needed). Images are cropped and resized on
access by `train.transforms` (whole-image resize, or ImageNet's random-resized crop).
TFDS video-classification datasets (a `video` feature `(T, H, W, C)` and a class label, e.g.
`ucf101`) give clips of `frames` frames, `frame_stride` apart, resized on the host so the short
side is `image_size` and centre-cropped to a square: uint8 `(n, frames, size, size, C)`.

The host only decodes, crops and batches uint8 images; the flip, the pad-and-crop and the
normalisation run on the device (`train.augment`); `train.pipeline` runs the sources in workers.
Order: the global batch of step `s` is a fixed function of `(seed, s)`, and
each process takes its contiguous slice of it, so a resumed run sees exactly the same batches;
the start frame of each training clip is a fixed function of `(seed, step, example index)` too.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from train.folder import (
    EVAL_FOLDERS,
    IMAGE_SUFFIXES,
    MODE_SAMPLE,
    FolderSource,
    PathIndex,
    class_folders,
    first_shape,
    folder_mode,
    list_images,
)
from train.transforms import ImageTransform


class DatasetUnavailable(RuntimeError):
    """The dataset cannot be read here; the message says how to prepare it."""


class Source(Protocol):
    """Random access to `(images uint8 (n, H, W, C), labels int32 (n,))`.

    `step` is the training step asking (random crops and clip starts are drawn from
    `(seed, step, index)`); `None` asks for the evaluation form.
    """

    def __len__(self) -> int:
        """Number of examples."""

    def get(self, indices: np.ndarray, step: int | None = None
            ) -> tuple[np.ndarray, np.ndarray]:
        """The examples at `indices`."""


@dataclass
class ArraySource:
    """Examples held in memory."""

    images: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)

    def get(self, indices: np.ndarray, step: int | None = None
            ) -> tuple[np.ndarray, np.ndarray]:
        """The examples at `indices` (stored images need no per-step transform)."""
        return self.images[indices], self.labels[indices]


@dataclass
class TFDSSource:
    """A TFDS random-access data source; images are decoded (and transformed) on access."""

    source: Any
    image_key: str
    label_key: str
    transform: ImageTransform = ImageTransform(None)
    seed: int = 0

    def __len__(self) -> int:
        return len(self.source)

    def _image(self, item: dict[str, Any], index: int, step: int | None) -> np.ndarray:
        from PIL import Image

        image = np.asarray(item[self.image_key], np.uint8)
        image = image[..., None] if image.ndim == 2 else image
        if self.transform.size is None:
            return image
        rng = None if step is None else np.random.default_rng([self.seed, step, index])
        pil = Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)
        out = self.transform(pil, rng)
        return out[..., None] if out.ndim == 2 else out

    def get(self, indices: np.ndarray, step: int | None = None
            ) -> tuple[np.ndarray, np.ndarray]:
        """The examples at `indices`."""
        items = [self.source[int(i)] for i in indices]
        images = np.stack([self._image(x, int(i), step) for x, i in zip(items, indices,
                                                                       strict=True)])
        return images, np.asarray([x[self.label_key] for x in items], np.int32)


@dataclass
class TFDSVideoSource:
    """A TFDS data source of videos, sampled into fixed-size uint8 clips on access.

    A clip is `frames` frames `stride` apart (frame indices wrap around in videos shorter
    than the clip span). Training clips (`get(indices, step=s)`) start at a frame drawn from
    `(seed, s, index)`; evaluation clips (`step=None`) are the centred span. Each frame is
    resized (bilinear) so its short side is `size`, then centre-cropped to `size x size`.
    """

    source: Any
    video_key: str
    label_key: str
    frames: int
    stride: int
    size: int | None  # None: keep the stored (square) frame size
    seed: int = 0

    def __len__(self) -> int:
        return len(self.source)

    def _frame_indices(self, length: int, index: int, step: int | None) -> np.ndarray:
        span = (self.frames - 1) * self.stride + 1
        room = max(length - span, 0)
        start = room // 2 if step is None else \
            int(np.random.default_rng([self.seed, step, index]).integers(0, room + 1))
        return (start + self.stride * np.arange(self.frames)) % length

    def _resize(self, clip: np.ndarray) -> np.ndarray:
        from PIL import Image

        t, h, w, c = clip.shape
        if self.size is None or (h, w) == (self.size, self.size):
            return clip
        scale = self.size / min(h, w)
        rh, rw = max(self.size, round(h * scale)), max(self.size, round(w * scale))
        top, left = (rh - self.size) // 2, (rw - self.size) // 2
        out = np.empty((t, self.size, self.size, c), np.uint8)
        for i, frame in enumerate(clip):
            im = Image.fromarray(frame[..., 0] if c == 1 else frame)
            im = im.resize((rw, rh), Image.BILINEAR)
            a = np.asarray(im, np.uint8)[top:top + self.size, left:left + self.size]
            out[i] = a[..., None] if a.ndim == 2 else a
        return out

    def get(self, indices: np.ndarray, step: int | None = None
            ) -> tuple[np.ndarray, np.ndarray]:
        """Clips `(n, frames, size, size, C)` and labels of the examples at `indices`."""
        clips, labels = [], []
        for i in indices:
            item = self.source[int(i)]
            video = np.asarray(item[self.video_key], np.uint8)
            video = video[..., None] if video.ndim == 3 else video
            clip = video[self._frame_indices(len(video), int(i), step)]
            clips.append(self._resize(clip))
            labels.append(item[self.label_key])
        return np.stack(clips), np.asarray(labels, np.int32)


@dataclass
class Dataset:
    """A train and an eval source with their shape and class count."""

    name: str
    train: Source
    eval: Source
    num_classes: int
    image_shape: tuple[int, ...]  # (H, W, C), or (T, H, W, C) for video clips

    @property
    def is_video(self) -> bool:
        """True when examples are clips `(T, H, W, C)`."""
        return len(self.image_shape) == 4


def load_dataset(name: str, *, data_dir: str | None = None, train_split: str = "train",
                 eval_split: str = "test", image_size: int | None = None,
                 eval_fraction: float = 0.2, seed: int = 0, frames: int = 16,
                 frame_stride: int = 2, crop: str = "resize",
                 eval_resize: int | None = None) -> Dataset:
    """Open `digits`, `folder:/path` or a TFDS dataset (images or videos) by name.

    `crop` and `eval_resize` choose the host transform of images (`train.transforms`).
    """
    if name == "digits":
        return digits_dataset(eval_fraction, seed, image_size)
    if name.startswith("folder:"):
        return folder_dataset(Path(name[len("folder:"):]), image_size, eval_fraction, seed,
                              crop, eval_resize)
    return tfds_dataset(name.removeprefix("tfds:"), data_dir, train_split, eval_split,
                        image_size=image_size, frames=frames, frame_stride=frame_stride,
                        seed=seed, crop=crop, eval_resize=eval_resize)


def _split(n: int, eval_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A fixed, class-agnostic train/eval split of `range(n)`."""
    perm = np.random.default_rng(seed).permutation(n)
    n_eval = max(1, int(round(n * eval_fraction)))
    return np.sort(perm[n_eval:]), np.sort(perm[:n_eval])


def digits_dataset(eval_fraction: float = 0.2, seed: int = 0,
                   image_size: int | None = None) -> Dataset:
    """scikit-learn's 1,797 handwritten digits (8x8, 17 grey levels), as uint8 `(8, 8, 1)`.

    The split is fixed (permutation seed 1234, independent of the run's seed): 1,438 train and
    359 test images with the default `eval_fraction=0.2`. With `image_size` every image is
    resized (bilinear) to `image_size` a side once, on loading.
    """
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise DatasetUnavailable("dataset 'digits' needs scikit-learn, which ships it: "
                                 "pip install scikit-learn (or the 'train' extra)") from None
    del seed  # the split stays the same whatever seed the run uses
    d = load_digits()
    images = np.round(d.images * (255.0 / 16.0)).astype(np.uint8)
    if image_size is not None and image_size != images.shape[1]:
        from PIL import Image

        images = np.stack([np.asarray(Image.fromarray(im).resize((image_size, image_size),
                                                                 Image.BILINEAR))
                           for im in images])
    images = images[..., None]
    labels = d.target.astype(np.int32)
    tr, ev = _split(len(labels), eval_fraction, 1234)
    return Dataset("digits", ArraySource(images[tr], labels[tr]),
                   ArraySource(images[ev], labels[ev]), 10, images.shape[1:])


def folder_dataset(root: Path, image_size: int | None = None, eval_fraction: float = 0.2,
                   seed: int = 0, crop: str = "resize", eval_resize: int | None = None
                   ) -> Dataset:
    """Images in `root/<class>/…` (or `root/train/<class>/…` with `root/val|test/…`), streamed.

    Only the paths are read here (`train.folder`); images are decoded and transformed when a
    batch asks for them. Without a val/test folder a fixed `eval_fraction` is held out.
    """
    if not root.is_dir():
        raise DatasetUnavailable(f"image folder {root} does not exist; expected a folder with "
                                 "one sub-folder of images per class (folder:/path/to/images)")
    eval_root = next((root / s for s in EVAL_FOLDERS if (root / s).is_dir()), None)
    train_root = root / "train" if (root / "train").is_dir() and eval_root else root
    classes = class_folders(train_root)
    if not classes:
        raise DatasetUnavailable(f"image folder {train_root} has no class sub-folders; expected "
                                 "root/<class name>/<image files>")
    paths, labels = list_images(train_root, classes)
    if not paths:
        raise DatasetUnavailable(f"no images ({', '.join(IMAGE_SUFFIXES)}) under {train_root}; "
                                 "expected one sub-folder of images per class")
    transform = ImageTransform(image_size, crop, eval_resize)
    mode = folder_mode(train_root, paths)
    shape = first_shape(train_root, paths, mode, transform)
    if image_size is None:
        _check_sample_sizes(train_root, paths, shape)

    def source(base: Path, chosen: list[str], chosen_labels: np.ndarray) -> FolderSource:
        return FolderSource(str(base), PathIndex.from_paths(chosen), chosen_labels,
                            tuple(classes), transform, mode, shape, seed)

    if eval_root is not None:
        ev_paths, ev_labels = list_images(eval_root, classes)
        if not ev_paths:
            raise DatasetUnavailable(f"no images under {eval_root} in the training classes "
                                     f"({', '.join(classes[:5])}, ...)")
        train, ev = source(train_root, paths, labels), source(eval_root, ev_paths, ev_labels)
    else:
        tr, evi = _split(len(labels), eval_fraction, seed)
        train = source(train_root, [paths[i] for i in tr], labels[tr])
        ev = source(train_root, [paths[i] for i in evi], labels[evi])
    return Dataset(f"folder:{root}", train, ev, len(classes), shape)


def _check_sample_sizes(root: Path, paths: list[str], shape: tuple[int, ...]) -> None:
    """Without image_size every image must have one size: check a sample now, the rest on read."""
    from PIL import Image

    picks = np.unique(np.linspace(0, len(paths) - 1, min(len(paths), MODE_SAMPLE)).astype(int))
    sizes = set()
    for i in picks:
        try:
            with Image.open(root / paths[i]) as im:
                sizes.add((im.size[1], im.size[0]))
        except Exception:  # reported with its path when read
            continue
    if len(sizes) > 1:
        raise DatasetUnavailable(f"images under {root} have different sizes {sorted(sizes)[:4]}"
                                 "; set image_size to resize them to one square size")


def _prepare_hint(name: str, data_dir: str | None) -> str:
    where = f" --data_dir={data_dir}" if data_dir else ""
    return (f"To prepare it, on a machine with internet access run\n"
            f"    pip install tensorflow-cpu tensorflow-datasets\n"
            f"    tfds build {name} --file_format=array_record{where}\n"
            f"then copy the data directory here and pass --data-dir (TFDS's default is "
            f"~/tensorflow_datasets). Reading needs no TensorFlow.")


def video_feature_without_tensorflow() -> None:
    """Let TFDS build `tfds.features.Video` when TensorFlow is not installed.

    TFDS 4.9's `Video.__init__` converts its dtype with `tf.dtypes.as_dtype` although decoding
    through `data_source` never touches TensorFlow (frames are decoded with PIL). Without
    TensorFlow, give that module a stand-in whose `dtypes.as_dtype` is `np.dtype`; nothing else
    in the read path uses it. With TensorFlow installed this does nothing.
    """
    import importlib.util
    import types

    if importlib.util.find_spec("tensorflow") is not None:
        return
    try:
        from tensorflow_datasets.core.features import video_feature
    except ImportError:
        return
    if not isinstance(getattr(video_feature, "tf", None), types.SimpleNamespace):
        video_feature.tf = types.SimpleNamespace(dtypes=types.SimpleNamespace(as_dtype=np.dtype))


def tfds_dataset(name: str, data_dir: str | None, train_split: str = "train",
                 eval_split: str = "test", *, image_size: int | None = None,
                 frames: int = 16, frame_stride: int = 2, seed: int = 0,
                 crop: str = "resize", eval_resize: int | None = None) -> Dataset:
    """A TFDS image- or video-classification dataset prepared as array_record (no download)."""
    try:
        import tensorflow_datasets as tfds
    except ImportError:
        raise DatasetUnavailable(f"dataset {name!r} is read with tensorflow-datasets: pip "
                                 "install tensorflow-datasets (or the 'train' extra)") from None
    video_feature_without_tensorflow()
    try:
        import tensorflow_datasets.video  # noqa: F401  (registers ucf101 and other video sets)
    except ImportError:
        pass
    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except Exception as e:  # unknown names, unreadable directories
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DatasetUnavailable(f"TFDS dataset {name!r} is not available: {first}. Use a TFDS "
                                 "name (e.g. cifar10), 'digits', or folder:/path") from None
    info = builder.info
    features = info.features
    keys = info.supervised_keys or (("video" if "video" in features else "image"), "label")
    image_key, label_key = keys[0], keys[1]
    if image_key not in features or label_key not in features or \
            not hasattr(features[label_key], "num_classes"):
        raise DatasetUnavailable(f"TFDS dataset {name!r} is not an image- or video-"
                                 f"classification dataset (supervised keys {keys}); expected an "
                                 "image or a video and a class label")
    try:
        sources = [tfds.data_source(name, split=s, data_dir=data_dir, download=False)
                   for s in (train_split, eval_split)]
    except Exception as e:
        prepared = (Path(str(builder.data_path)) / "dataset_info.json").exists()
        fmt = getattr(info, "file_format", None)
        if prepared and "array_record" not in str(fmt).lower() and "parquet" not in str(fmt):
            raise DatasetUnavailable(
                f"TFDS dataset {name!r} at {builder.data_path} is prepared as {fmt}, which has "
                f"no random access. Prepare it again as array_record.\n"
                f"{_prepare_hint(name, data_dir)}") from None
        if prepared:
            raise DatasetUnavailable(f"TFDS dataset {name!r}: {type(e).__name__}: {e}") from None
        raise DatasetUnavailable(f"TFDS dataset {name!r} is not prepared at "
                                 f"{builder.data_path} (this machine has no network).\n"
                                 f"{_prepare_hint(name, data_dir)}") from None
    num_classes = int(features[label_key].num_classes)
    if isinstance(features[image_key], tfds.features.Video):
        frame = tuple(features[image_key].shape[1:])  # (H, W, C); H, W may be None
        if image_size is None and (None in frame[:2] or frame[0] != frame[1]):
            raise DatasetUnavailable(f"TFDS dataset {name!r} has frames of size {frame[:2]}; "
                                     "set image_size to resize them to one square size")
        size = image_size or frame[0]
        train_v, eval_v = (TFDSVideoSource(src, image_key, label_key, frames, frame_stride,
                                           image_size, seed) for src in sources)
        return Dataset(name, train_v, eval_v, num_classes, (frames, size, size, frame[2] or 3))
    shape = features[image_key].shape
    transform = ImageTransform(image_size, crop, eval_resize)
    if image_size is None and crop == "resize" and any(d is None for d in shape[:2]):
        raise DatasetUnavailable(f"TFDS dataset {name!r} has images of varying size "
                                 f"{shape}; set image_size to resize them to one square size")
    train = TFDSSource(sources[0], image_key, label_key, transform, seed)
    ev = TFDSSource(sources[1], image_key, label_key, transform, seed)
    channels = shape[2] if len(shape) == 3 and shape[2] else 1 if len(shape) == 2 else 3
    size = (image_size, image_size) if image_size else tuple(shape[:2])
    return Dataset(name, train, ev, num_classes, (*size, channels))


def channel_stats(source: Source, max_examples: int = 10_000, seed: int = 0
                  ) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of pixel values in [0, 1] over (a sample of) `source`.

    Works for images `(n, H, W, C)` and clips `(n, T, H, W, C)` alike.
    """
    n = len(source)
    idx = np.arange(n) if n <= max_examples else \
        np.sort(np.random.default_rng(seed).choice(n, max_examples, replace=False))
    total = total_sq = count = 0.0
    for start in range(0, len(idx), 1024):
        x = source.get(idx[start:start + 1024])[0].astype(np.float64) / 255.0
        axes = tuple(range(x.ndim - 1))
        total = total + x.sum(axis=axes)
        total_sq = total_sq + np.square(x).sum(axis=axes)
        count += x.size // x.shape[-1]
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - np.square(mean), 1e-12))
    return [float(m) for m in mean], [float(s) for s in std]


def steps_per_epoch(n_train: int, global_batch: int) -> int:
    """Full batches per epoch (the remainder is dropped; each epoch reshuffles)."""
    return n_train // global_batch


def batch_indices(step: int, n_train: int, global_batch: int, seed: int) -> np.ndarray:
    """Indices of the global batch of `step`: epoch `step // steps_per_epoch`, reshuffled."""
    spe = steps_per_epoch(n_train, global_batch)
    epoch, i = divmod(step, spe)
    perm = np.random.default_rng([seed, epoch]).permutation(n_train)
    return perm[i * global_batch:(i + 1) * global_batch]
