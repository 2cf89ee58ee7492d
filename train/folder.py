"""Image folders read as a stream: paths indexed once, images decoded on access.

Layout: `root/<class>/<images>` (a fixed share held out for evaluation) or `root/train/<class>/…`
with `root/val/<class>/…` (or `test/`, `validation/`). Any file PIL opens with a suffix in
`IMAGE_SUFFIXES` counts, in sub-folders of a class folder too. Memory holds the path index (one
byte string of relative paths and their offsets, about 60 bytes per image for ImageNet), never
the images, so a folder of any size opens in the time it takes to list it.

Images are converted to RGB (CMYK, palette and greyscale JPEGs included, as torchvision's
`ImageFolder` loader does) unless every image of an evenly spaced sample of 64 is greyscale;
then the dataset is greyscale and a colour image met later is an error. A file that cannot be
decoded stops the run with an `ImageError` naming its path: training on a silently shortened
batch would change what a resumed or multi-process run sees.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from train.transforms import ImageTransform

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
EVAL_FOLDERS = ("val", "test", "validation")
GREY_MODES = ("L", "1", "I;16", "I", "LA")
MODE_SAMPLE = 64


class ImageError(RuntimeError):
    """An image file cannot be decoded or does not fit the dataset; the message names it."""


@dataclass(frozen=True)
class PathIndex:
    """Relative paths packed into one UTF-8 byte array with offsets (compact, fast to pickle)."""

    blob: np.ndarray  # uint8
    offsets: np.ndarray  # int64, len(paths) + 1

    @classmethod
    def from_paths(cls, paths: list[str]) -> PathIndex:
        """Pack `paths`."""
        encoded = [p.encode() for p in paths]
        offsets = np.zeros(len(encoded) + 1, np.int64)
        np.cumsum([len(e) for e in encoded], out=offsets[1:])
        blob = np.frombuffer(b"".join(encoded), np.uint8) if encoded else np.zeros(0, np.uint8)
        return cls(blob, offsets)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i: int) -> str:
        return self.blob[self.offsets[i]:self.offsets[i + 1]].tobytes().decode()

    def take(self, indices: np.ndarray) -> PathIndex:
        """The paths at `indices`, packed anew."""
        return PathIndex.from_paths([self[int(i)] for i in indices])


def class_folders(root: Path) -> list[str]:
    """Sorted names of the class sub-folders of `root` (hidden folders skipped)."""
    return sorted(e.name for e in os.scandir(root) if e.is_dir() and not e.name.startswith("."))


def list_images(root: Path, classes: list[str]) -> tuple[list[str], np.ndarray]:
    """Relative paths (sorted within each class) and labels of the images under `root`."""
    paths, labels = [], []
    for label, cls in enumerate(classes):
        folder = root / cls
        if not folder.is_dir():
            continue
        found = []
        for directory, subdirs, files in os.walk(folder):
            subdirs[:] = [d for d in subdirs if not d.startswith(".")]
            rel = os.path.relpath(directory, root)
            found += [os.path.join(rel, f) for f in files
                      if os.path.splitext(f)[1].lower() in IMAGE_SUFFIXES]
        found.sort()
        paths += found
        labels += [label] * len(found)
    return paths, np.asarray(labels, np.int32)


@dataclass(frozen=True)
class FolderSource:
    """Images of one split, decoded and transformed on access.

    `get(indices, step=s)` draws each training crop from `(seed, s, index)`; `step=None` gives
    the evaluation transform.
    """

    root: str
    paths: PathIndex
    labels: np.ndarray
    classes: tuple[str, ...]
    transform: ImageTransform
    mode: str  # "RGB" or "L"
    shape: tuple[int, int, int]  # (H, W, C) of every transformed image
    seed: int = 0

    def __len__(self) -> int:
        return len(self.labels)

    def path(self, index: int) -> Path:
        """Absolute path of example `index`."""
        return Path(self.root) / self.paths[index]

    def load(self, index: int, step: int | None = None) -> np.ndarray:
        """Decode, convert and transform example `index`."""
        from PIL import Image

        path = self.path(index)
        try:
            with Image.open(path) as im:
                if self.mode == "L" and im.mode not in GREY_MODES:
                    raise ImageError(f"{path} is a colour image ({im.mode}) but the dataset "
                                     "was read as greyscale (every sampled image was "
                                     "greyscale); convert it to greyscale")
                im = im.convert(self.mode)
                rng = None if step is None else np.random.default_rng([self.seed, step, index])
                image = self.transform(im, rng)
        except ImageError:
            raise
        except Exception as e:  # PIL's errors for truncated / corrupt / unknown files
            raise ImageError(f"cannot decode image {path} (example {index}, class "
                             f"{self.classes[self.labels[index]]!r}): {type(e).__name__}: "
                             f"{e}") from None
        if image.shape != self.shape:
            raise ImageError(f"image {path} has shape {image.shape}, expected {self.shape} "
                             "like the first image; set image_size to resize every image")
        return image

    def get(self, indices: np.ndarray, step: int | None = None
            ) -> tuple[np.ndarray, np.ndarray]:
        """Images uint8 `(n, H, W, C)` and labels of the examples at `indices`."""
        images = np.empty((len(indices), *self.shape), np.uint8)
        for k, i in enumerate(indices):
            images[k] = self.load(int(i), step)
        return images, self.labels[np.asarray(indices, np.int64)]


def folder_mode(root: Path, paths: list[str]) -> str:
    """'L' when an evenly spaced sample of the images is all greyscale, else 'RGB'."""
    from PIL import Image

    picks = np.unique(np.linspace(0, len(paths) - 1, min(len(paths), MODE_SAMPLE)).astype(int))
    for i in picks:
        try:
            with Image.open(root / paths[i]) as im:
                if im.mode not in GREY_MODES:
                    return "RGB"
        except Exception:  # a corrupt file is reported when it is read
            continue
    return "L"


def first_shape(root: Path, paths: list[str], mode: str, transform: ImageTransform
                ) -> tuple[int, int, int]:
    """Shape of the first decodable image after `transform` (evaluation form)."""
    from PIL import Image

    channels = 1 if mode == "L" else 3
    if transform.size is not None:
        return transform.size, transform.size, channels
    for p in paths:
        try:
            with Image.open(root / p) as im:
                return im.size[1], im.size[0], channels
        except Exception:
            continue
    raise ImageError(f"no image under {root} can be decoded")
