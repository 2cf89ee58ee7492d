"""Host input pipeline throughput: the training loader against torchvision, side by side.

Both loaders read the same generated folder of JPEGs (ImageNet-like: ~500x375, some portrait)
and do the same host work per image: decode, convert to RGB, random-resized crop to
`--size` (bilinear, antialiased), uint8 output. Ours is `train.pipeline.train_batches` over a
streaming `folder:` source (Grain worker processes); theirs is torchvision's `ImageFolder` +
`DataLoader` with `RandomResizedCrop` and `PILToTensor`, with the same worker count and batch.
Rates exclude the first batch (worker start-up) and are medians over `--repeats` passes,
alternating the two loaders. torchvision is optional: without it only ours is measured.

    python bench/input.py --images 2000 --workers 1,2 --batch 64 --size 224

From the rate per worker it estimates how many host cores feed a chip at `--chip-rate`
images/s (SE-ResNet-50, bfloat16, one H200 is about 3,000).
"""

from __future__ import annotations

import argparse
import math
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from train.data import load_dataset  # noqa: E402
from train.pipeline import train_batches  # noqa: E402
from train.testing import write_jpeg_folder  # noqa: E402


def cpu_description() -> str:
    """CPU model and its vector extensions (from lscpu)."""
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    except OSError:
        return platform.processor()
    model = next((line.split(":", 1)[1].strip() for line in text.splitlines()
                  if line.startswith("Model name")), "?")
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines()
                  if line.startswith("Flags")), [])
    vector = sorted({f for f in flags if f.startswith(("avx512f", "avx2", "amx"))})
    return f"{model} ({', '.join(vector) or 'no AVX2'})"


def timed(batches: Iterator, count: int) -> float:
    """Images per second over `count` batches after the first one (worker start-up)."""
    next(batches)
    start = time.perf_counter()
    seen = 0
    for _, batch in zip(range(count), batches, strict=False):
        seen += len(batch[1])  # labels: (images, labels) and HostBatch alike
    return seen / (time.perf_counter() - start)


def ours(folder: Path, size: int, batch: int, workers: int, steps: int) -> Callable[[], float]:
    """A pass of the training loader."""
    dataset = load_dataset(f"folder:{folder}", image_size=size, crop="random_resized",
                           eval_fraction=0.01)

    def run() -> float:
        it = train_batches(dataset.train, 0, steps + 1, batch, seed=0, workers=workers)
        try:
            return timed(it, steps)
        finally:
            it.close()
    return run


def torchvision_loader(folder: Path, size: int, batch: int, workers: int, steps: int
                       ) -> Callable[[], float] | None:
    """A pass of torchvision's ImageFolder + DataLoader doing the same work (None without it)."""
    try:
        import torch
        from torchvision import datasets, transforms
    except ImportError:
        return None
    torch.set_num_threads(1)
    tf = transforms.Compose([transforms.RandomResizedCrop(size), transforms.PILToTensor()])
    data = datasets.ImageFolder(str(folder), transform=tf)

    def run() -> float:
        loader = torch.utils.data.DataLoader(data, batch_size=batch, shuffle=True,
                                             num_workers=workers, drop_last=True,
                                             persistent_workers=False, prefetch_factor=2
                                             if workers else None)
        it = iter(loader)
        try:
            return timed(it, steps)
        finally:
            del it
    return run


def main() -> None:
    """Measure and print a table of images/s per loader and worker count."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=2000, help="JPEGs in the generated folder")
    p.add_argument("--data", type=Path, default=None,
                   help="folder to use or create (default: a cache in the temp directory)")
    p.add_argument("--workers", default="1,2", help="comma-separated worker counts")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--chip-rate", type=float, default=3000.0,
                   help="images/s one accelerator consumes")
    args = p.parse_args()
    folder = args.data or Path(tempfile.gettempdir()) / f"se_flax_bench_jpegs_{args.images}"
    if not folder.exists():
        print(f"writing {args.images} JPEGs to {folder} ...", flush=True)
        write_jpeg_folder(folder, classes=10, per_class=args.images // 10, size=(375, 500),
                          seed=0)
    steps = max(2, args.images // args.batch - 1)
    print(f"host: {cpu_description()}; {args.images} JPEGs ~500x375 -> {args.size}px, batch "
          f"{args.batch}, {steps} batches per pass, median of {args.repeats}")
    print(f"{'workers':>7}  {'ours img/s':>10}  {'torchvision img/s':>17}  {'ours/tv':>7}  "
          f"{'ours per worker':>15}")
    per_worker = []
    for w in (int(x) for x in args.workers.split(",")):
        a = ours(folder, args.size, args.batch, w, steps)
        b = torchvision_loader(folder, args.size, args.batch, w, steps)
        rates_a, rates_b = [], []
        for _ in range(args.repeats):
            rates_a.append(a())
            if b is not None:
                rates_b.append(b())
        ra = statistics.median(rates_a)
        rb = statistics.median(rates_b) if rates_b else float("nan")
        per_worker.append(ra / max(w, 1))
        print(f"{w:>7}  {ra:>10.0f}  {rb:>17.0f}  {ra / rb:>7.2f}  {ra / max(w, 1):>15.0f}",
              flush=True)
    rate = max(per_worker)
    print(f"at {rate:.0f} img/s per worker (one core each), a chip at {args.chip_rate:.0f} "
          f"img/s needs about {math.ceil(args.chip_rate / rate)} host cores for input")


if __name__ == "__main__":
    main()
