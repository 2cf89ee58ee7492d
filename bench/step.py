"""Flax vs PyTorch, side by side: train step and inference throughput of one model.

Both frameworks get the same model, batch, input and thread count. Each variant runs in its
own process (`bench.workers`); steps are timed in turn (Flax, Flax with plain XLA operations,
PyTorch eager, PyTorch channels_last, Flax, …) so machine noise hits all alike; figures are
medians after warm-up; first calls (JAX compile, torch.compile) are reported apart. The ratio
column is the median of per-round ratios (each variant's step over the first Flax variant's
step of the same round), with its quartiles: the host's load drifts, and two steps of one round
share it.

Flax variants are implementation choices (`se_flax.implementation`): `flax` is the library's
default (`impl="auto"`: every CPU rewrite on CPU), `flax xla` plain XLA operations and XLA's
own scheduler (`impl="xla"`, the program before the CPU work of bench/BENCHMARKS.md),
`flax no-boundary` the default without the residual fusion boundary, `flax autodiff-bn` the
default with BatchNorm gradients by autodiff and XLA's own scheduler. `--api nnx` compares the
Linen step (`flax`) with the NNX twin's: `flax nnx` splits the NNX model once and jits a pure
function of arrays (the training program's `--api nnx`); `flax nnx.jit` is the stateful idiom
(`nnx.jit` over the module and an `nnx.Optimizer`, graph traversal in Python on every call).

`--hugepages` starts every worker, of both frameworks, with `GLIBC_TUNABLES=glibc.malloc.hugetlb=1`
(glibc >= 2.35, transparent huge pages in `madvise` or `always` mode): large allocations get
2 MiB pages, so the first touch of a fresh activation or temporary buffer costs one page fault
per 2 MiB instead of per 4 KiB.

    python bench/step.py --model se_resnet50 --batch 32 --size 32 --stem cifar --threads 2
    python bench/step.py --api nnx --model se_resnet50 --modes train
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.steps import alternate_times, batch_arrays, paired_ratio  # noqa: E402
from bench.workers import StepWorker, close_all  # noqa: E402
from se_flax.implementation import IMPLEMENTATIONS, resolve_implementation  # noqa: E402

HUGEPAGE_TUNABLE = "glibc.malloc.hugetlb=1"
FLAX_VARIANTS: dict[str, dict[str, Any]] = {
    "flax": {"impl": "auto"},
    "flax xla": {"impl": "xla"},
    "flax no-boundary": {"impl": dataclasses.replace(IMPLEMENTATIONS["cpu"],
                                                     fusion_boundary=False)},
    "flax autodiff-bn": {"impl": dataclasses.replace(IMPLEMENTATIONS["cpu"], batchnorm_vjp=False,
                                                     memory_scheduler=False)},
    "flax nnx": {"impl": "auto", "api": "nnx"},
    "flax nnx.jit": {"impl": "auto", "api": "nnx.jit"},
}
API_DEFAULTS = {"linen": ("flax,flax xla", "eager,channels_last"),
                "nnx": ("flax,flax nnx,flax nnx.jit", "")}
TORCH_VARIANTS = ("eager", "channels_last", "compile")


def variant_env(variant: dict[str, Any]) -> dict[str, str]:
    """`XLA_FLAGS` carrying the implementation's compiler options to an `nnx.jit` worker.

    `nnx.jit` takes no `compiler_options`; XLA reads the same options from its flags.
    """
    if variant.get("api") != "nnx.jit":
        return {}
    options = resolve_implementation(variant["impl"]).compiler_options()
    flags = " ".join(f"--{k}={v}" for k, v in options.items())
    return {"XLA_FLAGS": flags} if flags else {}


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
    p.add_argument("--api", default="linen", choices=list(API_DEFAULTS),
                   help="nnx: the Linen step beside the NNX twin's two train steps (default "
                   "variants 'flax,flax nnx,flax nnx.jit', no PyTorch)")
    p.add_argument("--flax-variants", default=None,
                   help=f"comma list of {', '.join(FLAX_VARIANTS)} (default: per --api)")
    p.add_argument("--torch-variants", default=None,
                   help=f"comma list of {', '.join(TORCH_VARIANTS)} (default: per --api)")
    p.add_argument("--hugepages", action="store_true",
                   help=f"start every worker with GLIBC_TUNABLES={HUGEPAGE_TUNABLE}")
    args = p.parse_args()
    flax_default, torch_default = API_DEFAULTS[args.api]
    args.flax_variants = flax_default if args.flax_variants is None else args.flax_variants
    args.torch_variants = torch_default if args.torch_variants is None else args.torch_variants
    flax_names = [v for v in args.flax_variants.split(",") if v]
    torch_names = [v for v in args.torch_variants.split(",") if v]
    for v in flax_names:
        if v not in FLAX_VARIANTS:
            p.error(f"unknown --flax-variants entry {v!r}; expected one of {list(FLAX_VARIANTS)}")
    for v in torch_names:
        if v not in TORCH_VARIANTS:
            p.error(f"unknown --torch-variants entry {v!r}; expected one of {TORCH_VARIANTS}")
    if not flax_names:
        p.error("--flax-variants needs at least one entry (ratios are against it)")

    if args.hugepages:  # read by glibc at process start: set before the workers are spawned
        tunables = os.environ.get("GLIBC_TUNABLES", "")
        os.environ["GLIBC_TUNABLES"] = f"{tunables}:{HUGEPAGE_TUNABLE}" if tunables \
            else HUGEPAGE_TUNABLE

    import jax
    import torch

    x, y = batch_arrays(args.batch, args.size, args.num_classes)
    kw = {"num_classes": args.num_classes, "stem": args.stem}
    print(f"model={args.model} batch={args.batch} size={args.size} stem={args.stem} "
          f"dtype={args.dtype} threads={args.threads} jax={jax.__version__} "
          f"torch={torch.__version__} (one process per variant)"
          f"{' GLIBC_TUNABLES=' + os.environ['GLIBC_TUNABLES'] if args.hugepages else ''}",
          flush=True)
    workers: dict[str, StepWorker] = {}
    try:
        for v in flax_names:
            workers[v] = StepWorker("flax", args.model, x, y, args.dtype, **FLAX_VARIANTS[v],
                                    env=variant_env(FLAX_VARIANTS[v]), threads=args.threads,
                                    label=v, **kw)
        for v in torch_names:
            workers[f"torch {v}"] = StepWorker("torch", args.model, x, y, args.dtype, v,
                                               threads=args.threads, label=v, **kw)
        for mode in args.modes.split(","):
            first = {k: w.run(mode) for k, w in workers.items()}
            print(f"{mode}: first call (compile) " +
                  ", ".join(f"{k} {t:.1f}s" for k, t in first.items()), flush=True)
            times = alternate_times({k: w.step(mode) for k, w in workers.items()},
                                    args.repeats, args.warmup)
            base = times[flax_names[0]]
            print(f"  {'':<22} {'':>14}  {'median':>14}  time / {flax_names[0]} time "
                  f"(median of {args.repeats} rounds, quartiles)", flush=True)
            for name, seconds in times.items():
                med = statistics.median(seconds)
                ratio, q1, q3 = paired_ratio(seconds, base)
                print(f"  {name:<22} {args.batch / med:8.1f} img/s  {med * 1e3:8.1f} ms"
                      f"  {ratio:5.2f} ({q1:.2f}-{q3:.2f})", flush=True)
    finally:
        close_all(workers)


if __name__ == "__main__":
    main()
