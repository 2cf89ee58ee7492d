"""SE overhead: SE-ResNet vs ResNet of the same depth, in both frameworks, in one run.

All four train steps, each in its own process (`bench.workers`), are timed in turn; the
overhead is the SE model's median step time over the plain model's, per framework.

    python bench/se_overhead.py --depth 50 --batch 32 --size 32 --stem cifar
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.steps import alternate, batch_arrays  # noqa: E402
from bench.workers import StepWorker, close_all  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--depth", type=int, default=50)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--stem", default="cifar", choices=["cifar", "imagenet"])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--mode", default="train", choices=["train", "infer"])
    args = p.parse_args()

    x, y = batch_arrays(args.batch, args.size, 10)
    kw = {"num_classes": 10, "stem": args.stem}
    names = (f"resnet{args.depth}", f"se_resnet{args.depth}")
    workers: dict[tuple[str, str], StepWorker] = {}
    try:
        for name in names:
            workers[("flax", name)] = StepWorker("flax", name, x, y, threads=args.threads,
                                                 label=f"flax {name}", **kw)
            workers[("torch eager", name)] = StepWorker("torch", name, x, y,
                                                        threads=args.threads,
                                                        label=f"torch {name}", **kw)
        for w in workers.values():
            w.run(args.mode)  # compile / first call
        med = alternate({k: w.step(args.mode) for k, w in workers.items()}, args.repeats,
                        args.warmup)
    finally:
        close_all(workers)
    print(f"{args.mode} step, batch {args.batch}, {args.size}x{args.size} {args.stem} stem, "
          f"{args.threads} threads")
    print("| framework | plain img/s | SE img/s | SE time / plain time |")
    print("|---|---:|---:|---:|")
    for fw in ("flax", "torch eager"):
        plain, se = med[(fw, names[0])], med[(fw, names[1])]
        print(f"| {fw} | {args.batch / plain:.1f} | {args.batch / se:.1f} | {se / plain:.3f} |")


if __name__ == "__main__":
    main()
