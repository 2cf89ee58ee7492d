"""Input: uint8 image batches on the host, in a deterministic order that resumes exactly.

Sources: `digits` (scikit-learn's 8x8 handwritten digits, shipped inside the package: no
network), `folder:/path` (one sub-folder per class, PNG/JPEG/..., optional `train/` and
`test/`|`val/` splits) and any TensorFlow Datasets image-classification dataset by name, read
through TFDS's random-access `data_source` (array_record files; TensorFlow is not needed).
TFDS video-classification datasets (a `video` feature `(T, H, W, C)` and a class label, e.g.
`ucf101`) give clips of `frames` frames, `frame_stride` apart, resized on the host so the short
side is `image_size` and centre-cropped to a square: uint8 `(n, frames, size, size, C)`.

The host only decodes and batches uint8 images; augmentation and normalisation run on the device
(`train.augment`). Order: the global batch of step `s` is a fixed function of `(seed, s)`, and
each process takes its contiguous slice of it, so a resumed run sees exactly the same batches;
the start frame of each training clip is a fixed function of `(seed, step, example index)` too.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")


class DatasetUnavailable(RuntimeError):
    """The dataset cannot be read here; the message says how to prepare it."""


class Source(Protocol):
    """Random access to `(images uint8 (n, H, W, C), labels int32 (n,))`."""

    def __len__(self) -> int:
        """Number of examples."""

    def get(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The examples at `indices`."""


@dataclass
class ArraySource:
    """Examples held in memory."""

    images: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)

    def get(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The examples at `indices`."""
        return self.images[indices], self.labels[indices]


@dataclass
class TFDSSource:
    """A TFDS random-access data source; images are decoded on access."""

    source: Any
    image_key: str
    label_key: str

    def __len__(self) -> int:
        return len(self.source)

    def get(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The examples at `indices`."""
        items = [self.source[int(i)] for i in indices]
        images = np.stack([np.asarray(x[self.image_key], np.uint8) for x in items])
        if images.ndim == 3:
            images = images[..., None]
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
                 frame_stride: int = 2) -> Dataset:
    """Open `digits`, `folder:/path` or a TFDS dataset (images or videos) by name."""
    if name == "digits":
        return digits_dataset(eval_fraction, seed)
    if name.startswith("folder:"):
        return folder_dataset(Path(name[len("folder:"):]), image_size, eval_fraction, seed)
    return tfds_dataset(name.removeprefix("tfds:"), data_dir, train_split, eval_split,
                        image_size=image_size, frames=frames, frame_stride=frame_stride,
                        seed=seed)


def _split(n: int, eval_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A fixed, class-agnostic train/eval split of `range(n)`."""
    perm = np.random.default_rng(seed).permutation(n)
    n_eval = max(1, int(round(n * eval_fraction)))
    return np.sort(perm[n_eval:]), np.sort(perm[:n_eval])


def digits_dataset(eval_fraction: float = 0.2, seed: int = 0) -> Dataset:
    """scikit-learn's 1,797 handwritten digits (8x8, 17 grey levels), as uint8 `(8, 8, 1)`.

    The split is fixed (permutation seed 1234, independent of the run's seed): 1,438 train and
    359 test images with the default `eval_fraction=0.2`.
    """
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise DatasetUnavailable("dataset 'digits' needs scikit-learn, which ships it: "
                                 "pip install scikit-learn (or the 'train' extra)") from None
    del seed  # the split stays the same whatever seed the run uses
    d = load_digits()
    images = np.round(d.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
    labels = d.target.astype(np.int32)
    tr, ev = _split(len(labels), eval_fraction, 1234)
    return Dataset("digits", ArraySource(images[tr], labels[tr]),
                   ArraySource(images[ev], labels[ev]), 10, (8, 8, 1))


def _class_dirs(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def _read_folder(root: Path, classes: list[str], size: tuple[int, int] | None,
                 mode: str | None) -> tuple[np.ndarray, np.ndarray]:
    from PIL import Image

    images, labels = [], []
    for label, cls in enumerate(classes):
        folder = root / cls
        if not folder.is_dir():
            continue
        for f in sorted(folder.rglob("*")):
            if f.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            with Image.open(f) as im:
                im = im.convert(mode) if mode else im
                if size is not None and im.size != (size[1], size[0]):
                    im = im.resize((size[1], size[0]), Image.BILINEAR)
                a = np.asarray(im, np.uint8)
            images.append(a[..., None] if a.ndim == 2 else a)
            labels.append(label)
    if not images:
        raise DatasetUnavailable(f"no images ({', '.join(IMAGE_SUFFIXES)}) under {root}; "
                                 "expected one sub-folder of images per class")
    shapes = {a.shape for a in images}
    if len(shapes) > 1:
        raise DatasetUnavailable(f"images under {root} have different sizes {sorted(shapes)[:4]}"
                                 "; set image_size to resize them to one square size")
    return np.stack(images), np.asarray(labels, np.int32)


def folder_dataset(root: Path, image_size: int | None = None, eval_fraction: float = 0.2,
                   seed: int = 0) -> Dataset:
    """Images in `root/<class>/*.png` (or `root/train/<class>/…` with `root/test|val/…`).

    Images are converted to RGB unless every image is greyscale (then 1 channel). Without a
    test/val folder, a fixed `eval_fraction` of the images is held out for evaluation.
    """
    if not root.is_dir():
        raise DatasetUnavailable(f"image folder {root} does not exist; expected a folder with "
                                 "one sub-folder of images per class (folder:/path/to/images)")
    size = (image_size, image_size) if image_size else None
    eval_root = next((root / s for s in ("test", "val", "validation") if (root / s).is_dir()),
                     None)
    train_root = root / "train" if (root / "train").is_dir() and eval_root else root
    classes = [p.name for p in _class_dirs(train_root)]
    if not classes:
        raise DatasetUnavailable(f"image folder {train_root} has no class sub-folders; expected "
                                 "root/<class name>/<image files>")
    mode = _folder_mode(train_root, classes)
    images, labels = _read_folder(train_root, classes, size, mode)
    if eval_root is not None:
        ev_images, ev_labels = _read_folder(eval_root, classes, images.shape[1:3], mode)
        train, ev = ArraySource(images, labels), ArraySource(ev_images, ev_labels)
    else:
        tr, evi = _split(len(labels), eval_fraction, seed)
        train = ArraySource(images[tr], labels[tr])
        ev = ArraySource(images[evi], labels[evi])
    return Dataset(f"folder:{root}", train, ev, len(classes), tuple(images.shape[1:]))


def _folder_mode(root: Path, classes: list[str]) -> str:
    """'L' when the images are all greyscale, else 'RGB'."""
    from PIL import Image

    for cls in classes:
        for f in sorted((root / cls).rglob("*")):
            if f.suffix.lower() in IMAGE_SUFFIXES:
                with Image.open(f) as im:
                    if im.mode not in ("L", "1", "I;16", "I"):
                        return "RGB"
    return "L"


def _prepare_hint(name: str, data_dir: str | None) -> str:
    where = f" --data_dir={data_dir}" if data_dir else ""
    return (f"To prepare it, on a machine with internet access run\n"
            f"    pip install tensorflow-cpu tensorflow-datasets\n"
            f"    tfds build {name} --file_format=array_record{where}\n"
            f"then copy the data directory here and pass --data-dir (TFDS's default is "
            f"~/tensorflow_datasets). Reading needs no TensorFlow.")


def _video_feature_without_tensorflow() -> None:
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
                 frames: int = 16, frame_stride: int = 2, seed: int = 0) -> Dataset:
    """A TFDS image- or video-classification dataset prepared as array_record (no download)."""
    try:
        import tensorflow_datasets as tfds
    except ImportError:
        raise DatasetUnavailable(f"dataset {name!r} is read with tensorflow-datasets: pip "
                                 "install tensorflow-datasets (or the 'train' extra)") from None
    _video_feature_without_tensorflow()
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
    train = TFDSSource(sources[0], image_key, label_key)
    ev = TFDSSource(sources[1], image_key, label_key)
    if any(d is None for d in shape):
        shape = train.get(np.array([0]))[0].shape[1:]
    shape = tuple(shape) if len(shape) == 3 else (*shape, 1)
    return Dataset(name, train, ev, num_classes, shape)


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


def train_batches(source: Source, start_step: int, end_step: int, global_batch: int, seed: int,
                  process_index: int = 0, process_count: int = 1
                  ) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """`(step, images, labels)` of this process's slice of each global batch.

    Video sources also get the step, which draws the start frame of each training clip.
    """
    local = global_batch // process_count
    for step in range(start_step, end_step):
        idx = batch_indices(step, len(source), global_batch, seed)
        mine = idx[process_index * local:(process_index + 1) * local]
        images, labels = source.get(mine, step=step) if isinstance(source, TFDSVideoSource) \
            else source.get(mine)
        yield step, images, labels


def eval_batches(source: Source, global_batch: int, process_index: int = 0,
                 process_count: int = 1) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """`(images, labels, mask)` over the whole source in order; the last batch is zero-padded."""
    n, local = len(source), global_batch // process_count
    for start in range(0, n, global_batch):
        idx = np.arange(start, start + global_batch)[process_index * local:
                                                    (process_index + 1) * local]
        valid = idx < n
        images, labels = source.get(np.where(valid, idx, n - 1))
        keep = valid.reshape(-1, *[1] * (images.ndim - 1))
        images = np.where(keep, images, 0).astype(np.uint8)
        yield images, np.where(valid, labels, 0).astype(np.int32), valid.astype(np.float32)


def prefetch(it: Iterator[Any], put: Callable[[Any], Any], depth: int = 2) -> Iterator[Any]:
    """Run `it` and `put` (host → device transfer) in a background thread, `depth` ahead."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    done = object()
    stop = threading.Event()

    def worker() -> None:
        try:
            for item in it:
                if stop.is_set():
                    return
                q.put(put(item))
            q.put(done)
        except BaseException as e:  # surfaced in the consumer
            q.put(e)

    thread = threading.Thread(target=worker, daemon=True)
    thread.start()
    try:
        while True:
            item = q.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while thread.is_alive():  # unblock a worker waiting on a full queue
            try:
                q.get(timeout=0.1)
            except queue.Empty:
                pass
