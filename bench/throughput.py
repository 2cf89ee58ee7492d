"""Training throughput table: Flax vs PyTorch, ResNet vs SE-ResNet, achieved TFLOP/s.

Used by `bench/gpu.sh`. For each input configuration, the four train steps (2 frameworks x
plain/SE), each in its own process (`bench.workers`; JAX without GPU memory preallocation,
so several processes share the device), are timed in turn; achieved FLOP/s counts
3 x 2 x MACs per image (forward plus the two backward products), MACs taken from the model's
own program (`se_flax.flops`).

    python bench/throughput.py --configs 224:256,32:512 --dtype bfloat16 --device cuda
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.steps import alternate, batch_arrays  # noqa: E402
from bench.workers import StepWorker, close_all  # noqa: E402

FLAX_ENV = {"XLA_PYTHON_CLIENT_PREALLOCATE": "false"}

# Dense bf16 tensor-core peak per chip (vendor datasheets), FLOP/s.
PEAK_BF16 = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L4": 121e12}


def peak_for(device_name: str) -> float | None:
    """Datasheet bf16 peak of a device whose name contains a known chip, else None."""
    return next((v for k, v in PEAK_BF16.items() if k in device_name), None)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--configs", default="224:256,32:512",
                   help="comma list of SIZE:BATCH (size 32 uses the CIFAR stem)")
    p.add_argument("--models", default="resnet50,se_resnet50")
    p.add_argument("--dtype", default="bfloat16", choices=["float32", "bfloat16"])
    p.add_argument("--device", default="cuda", help="torch device: cuda or cpu")
    p.add_argument("--torch-variant", default="compile",
                   choices=["eager", "channels_last", "compile"])
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    args = p.parse_args()

    os.environ.update(FLAX_ENV)  # before JAX starts here; the workers inherit it
    import jax

    from se_flax.flops import model_cost
    from se_flax.models import create_model

    device = str(jax.devices()[0].device_kind)
    peak = peak_for(device)
    print(f"device: {device}; dtype {args.dtype}; torch {args.torch_variant} on {args.device}")
    print("| input | batch | model | Flax img/s | PyTorch img/s | Flax speed / PyTorch | "
          "Flax TFLOP/s "
          "| % of peak |")
    print("|---|---:|---|---:|---:|---:|---:|---:|")
    overheads = []
    for config in args.configs.split(","):
        size, batch = (int(v) for v in config.split(":"))
        stem = "cifar" if size <= 64 else "imagenet"
        kw = {"num_classes": 10 if stem == "cifar" else 1000, "stem": stem}
        x, y = batch_arrays(batch, size, kw["num_classes"])
        workers: dict[tuple[str, str], StepWorker] = {}
        macs = {}
        try:
            for name in args.models.split(","):
                workers[("flax", name)] = StepWorker("flax", name, x, y, args.dtype,
                                                     env=FLAX_ENV, label=f"flax {name}", **kw)
                workers[("torch", name)] = StepWorker("torch", name, x, y, args.dtype,
                                                      args.torch_variant, args.device,
                                                      label=f"torch {name}", **kw)
                macs[name] = model_cost(create_model(name, **kw), (1, size, size, 3))[1]
            compile_s = {k: w.run("train") for k, w in workers.items()}
            med = alternate({k: w.step("train") for k, w in workers.items()}, args.repeats,
                            args.warmup)
        finally:
            close_all(workers)
        for name in args.models.split(","):
            f, t = med[("flax", name)], med[("torch", name)]
            tflops = 6 * macs[name] * batch / f / 1e12
            share = f"{100 * tflops * 1e12 / peak:.1f}%" if peak else "n/a"
            print(f"| {size}x{size} {stem} | {batch} | {name} | {batch / f:.1f} | "
                  f"{batch / t:.1f} | {t / f:.2f} | {tflops:.2f} | {share} |")
        names = args.models.split(",")
        if len(names) == 2:
            for fw in ("flax", "torch"):
                overheads.append(f"{size}x{size} {fw}: SE step time / plain = "
                                 f"{med[(fw, names[1])] / med[(fw, names[0])]:.3f}")
        print("  first calls (compile): " +
              ", ".join(f"{fw} {n} {s:.1f}s" for (fw, n), s in compile_s.items()))
    for line in overheads:
        print(line)


if __name__ == "__main__":
    main()
