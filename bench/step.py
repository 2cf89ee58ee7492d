"""Flax vs PyTorch, side by side: train step and inference throughput of one model.

Both frameworks get the same model, batch, input size and thread count. Timings alternate
(Flax, PyTorch, Flax, PyTorch, ...) so machine noise hits both alike; each figure is the median
over the timed repeats after warm-up; compile time (JAX's first call, torch.compile's first
call) is reported apart.

    python bench/step.py --model se_resnet50 --batch 32 --size 32 --stem cifar --threads 2
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable


def parse() -> argparse.Namespace:
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
    return p.parse_args()


def timed(fn: Callable[[], object]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main() -> None:
    args = parse()
    os.environ.setdefault("XLA_FLAGS", "")
    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax
    import torch

    import se_torch_ref.models as tm
    from se_flax.models import create_model

    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((args.batch, 3, args.size, args.size)).astype(np.float32)
    y = rng.integers(0, args.num_classes, args.batch)
    kw = dict(num_classes=args.num_classes, stem=args.stem)
    dtype = jnp.bfloat16 if args.dtype == "bfloat16" else jnp.float32

    # ---- Flax
    model = create_model(args.model, dtype=dtype, **kw)
    xf = jnp.asarray(np.moveaxis(x, 1, -1))
    yf = jnp.asarray(y)
    variables = model.init(jax.random.PRNGKey(0), xf[:1])
    tx = optax.sgd(0.01, momentum=0.9)
    state = (variables["params"], variables["batch_stats"], tx.init(variables["params"]))

    def loss_fn(params, stats, images, labels):
        logits, new = model.apply({"params": params, "batch_stats": stats}, images, train=True,
                                  mutable=["batch_stats"])
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
        return loss, new["batch_stats"]

    @jax.jit
    def train_step(state, images, labels):
        params, stats, opt = state
        (loss, stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, stats, images,
                                                                          labels)
        updates, opt = tx.update(grads, opt, params)
        return (optax.apply_updates(params, updates), stats, opt), loss

    infer = jax.jit(lambda v, images: model.apply(v, images, train=False))

    # ---- PyTorch
    def torch_model(variant: str):
        m = tm.create_model(args.model, **kw)
        xt = torch.from_numpy(x)
        if variant in ("channels_last", "compile"):
            m = m.to(memory_format=torch.channels_last)
            xt = xt.contiguous(memory_format=torch.channels_last)
        opt = torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9)
        yt = torch.from_numpy(y)
        fwd = torch.compile(m) if variant == "compile" else m
        autocast = torch.autocast("cpu", dtype=torch.bfloat16,
                                  enabled=args.dtype == "bfloat16")

        def step():
            m.train()
            opt.zero_grad(set_to_none=True)
            with autocast:
                loss = torch.nn.functional.cross_entropy(fwd(xt), yt)
            loss.backward()
            opt.step()

        def inference():
            m.eval()
            with torch.no_grad(), autocast:
                fwd(xt)
        return step, inference

    flax_fns: dict[str, Callable[[], object]] = {}
    box = {"state": state}

    def flax_train():
        box["state"], loss = train_step(box["state"], xf, yf)
        loss.block_until_ready()

    def flax_infer():
        infer(variables, xf).block_until_ready()

    flax_fns = {"train": flax_train, "infer": flax_infer}
    print(f"model={args.model} batch={args.batch} size={args.size} stem={args.stem} "
          f"dtype={args.dtype} threads={args.threads} jax={jax.__version__} "
          f"torch={torch.__version__} devices={jax.devices()[0].platform}")
    for mode in args.modes.split(","):
        compile_s = timed(flax_fns[mode])
        rows = {"flax": []}
        torch_fns = {}
        for variant in args.torch_variants.split(","):
            step, inference = torch_model(variant)
            fn = step if mode == "train" else inference
            torch_fns[variant] = fn
            rows[f"torch {variant}"] = []
            first = timed(fn)
            if variant == "compile":
                print(f"  torch.compile first call ({mode}): {first:.1f}s")
        for _ in range(args.warmup):
            flax_fns[mode]()
            for fn in torch_fns.values():
                fn()
        for _ in range(args.repeats):
            rows["flax"].append(timed(flax_fns[mode]))
            for variant, fn in torch_fns.items():
                rows[f"torch {variant}"].append(timed(fn))
        print(f"{mode}: JAX compile + first step {compile_s:.1f}s")
        flax_med = statistics.median(rows["flax"])
        for name, times in rows.items():
            med = statistics.median(times)
            print(f"  {name:<22} {args.batch / med:8.1f} img/s  median {med * 1e3:8.1f} ms  "
                  f"flax speed vs this: {med / flax_med:5.2f}x")


if __name__ == "__main__":
    main()
