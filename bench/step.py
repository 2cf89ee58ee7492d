"""Flax vs PyTorch, side by side: train step and inference throughput of one model.

Both frameworks get the same model, batch, input and thread count. Steps are timed in turn
(Flax, PyTorch eager, PyTorch channels_last, Flax, …) so machine noise hits all alike; figures
are medians after warm-up; compile time (JAX's first call, torch.compile's) is reported apart.

    python bench/step.py --model se_resnet50 --batch 32 --size 32 --stem cifar --threads 2
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.steps import alternate, batch_arrays, flax_steps, timed, torch_steps  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="se_resnet50")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--stem", default="cifar", choices=["cifar", "imagenet"])
    p.add_argument("--num-classes", type=int, default=10)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    p.add_argument("--modes", default="train,infer")
    p.add_argument("--torch-variants", default="eager,channels_last",
                   help="comma list of eager, channels_last, compile")
    args = p.parse_args()

    import jax
    import torch

    torch.set_num_threads(args.threads)
    x, y = batch_arrays(args.batch, args.size, args.num_classes)
    kw = {"num_classes": args.num_classes, "stem": args.stem}
    print(f"model={args.model} batch={args.batch} size={args.size} stem={args.stem} "
          f"dtype={args.dtype} threads={args.threads} jax={jax.__version__} "
          f"torch={torch.__version__}")
    flax = flax_steps(args.model, x, y, args.dtype, **kw)
    torches = {v: torch_steps(args.model, x, y, args.dtype, v, **kw)
               for v in args.torch_variants.split(",")}
    for mode in args.modes.split(","):
        steps = {"flax": flax[mode]} | {f"torch {v}": s[mode] for v, s in torches.items()}
        first = {k: timed(fn) for k, fn in steps.items()}
        print(f"{mode}: first call (compile) " +
              ", ".join(f"{k} {t:.1f}s" for k, t in first.items()))
        medians = alternate(steps, args.repeats, args.warmup)
        for name, med in medians.items():
            print(f"  {name:<22} {args.batch / med:8.1f} img/s  median {med * 1e3:8.1f} ms  "
                  f"time / flax time: {med / medians['flax']:5.2f}")


if __name__ == "__main__":
    main()
