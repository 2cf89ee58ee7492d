"""Train-step and inference builders shared by the benchmarks (Flax and PyTorch reference).

Each builder returns a zero-argument callable that runs one step and waits for it to finish,
so the callers can time them alternately.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np

Step = Callable[[], None]


def batch_arrays(batch: int, size: int, num_classes: int, frames: int | None = None,
                 seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Random channels-first inputs `(N, 3, [T,] H, W)` and integer labels."""
    rng = np.random.default_rng(seed)
    spatial = (frames, size, size) if frames else (size, size)
    x = rng.standard_normal((batch, 3, *spatial)).astype(np.float32)
    return x, rng.integers(0, num_classes, batch)


def flax_steps(name: str, x: np.ndarray, y: np.ndarray, dtype: str = "float32",
               impl: Any = "auto", api: str = "linen", **model_kwargs: object
               ) -> dict[str, Step]:
    """Compiled Flax `train` (SGD + momentum, buffers donated) and `infer` steps.

    `impl` is the model's implementation choice (`se_flax.implementation`); the train step is
    compiled with its XLA options, as the training program does. `api`: `linen`, `nnx` (the NNX
    twin behind Linen's `apply`, split and merged at the jit boundary: the training program's
    `--api nnx`) or `nnx.jit` (the stateful NNX idiom: `nnx.jit`, `nnx.Optimizer`; see
    `bench.nnx_steps`). Every API starts from the same weights.
    """
    import jax
    import jax.numpy as jnp
    import optax

    from se_flax.implementation import resolve_implementation
    from se_flax.models import create_model

    impl = resolve_implementation(impl)
    options = {"dtype": jnp.bfloat16 if dtype == "bfloat16" else None, "impl": impl,
               **model_kwargs}
    model = create_model(name, **options)
    xf = jax.device_put(jnp.asarray(np.moveaxis(x, 1, -1)))
    yf = jax.device_put(jnp.asarray(y))
    variables = model.init(jax.random.PRNGKey(0), xf[:1])
    if api == "nnx.jit":
        from bench.nnx_steps import stateful_nnx_steps

        return stateful_nnx_steps(name, options, variables, xf, yf)
    if api == "nnx":
        from se_flax.nnx import functional_model

        model = functional_model(name, **options)
    elif api != "linen":
        raise ValueError(f"api={api!r} is not supported; expected 'linen', 'nnx' or 'nnx.jit'")
    tx = optax.sgd(0.01, momentum=0.9)

    def loss_fn(params, stats):
        logits, new = model.apply({"params": params, "batch_stats": stats}, xf, train=True,
                                  mutable=["batch_stats"])
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, yf).mean()
        return loss, new["batch_stats"]

    def train(state):
        params, stats, opt = state
        (loss, stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, stats)
        updates, opt = tx.update(grads, opt, params)
        return (optax.apply_updates(params, updates), stats, opt), loss

    train_jit = jax.jit(train, donate_argnums=0,
                        compiler_options=impl.compiler_options() or None)
    infer_jit = jax.jit(lambda v: model.apply(v, xf, train=False))
    # The train step donates its state: give it its own copy so `infer` keeps `variables`.
    own = jax.tree.map(jnp.copy, variables)
    box = {"state": (own["params"], own["batch_stats"], tx.init(own["params"]))}

    def train_step() -> None:
        box["state"], loss = train_jit(box["state"])
        loss.block_until_ready()

    def infer_step() -> None:
        infer_jit(variables).block_until_ready()

    return {"train": train_step, "infer": infer_step}


def torch_steps(name: str, x: np.ndarray, y: np.ndarray, dtype: str = "float32",
                variant: str = "eager", device: str = "cpu",
                **model_kwargs: object) -> dict[str, Step]:
    """PyTorch `train` (SGD + momentum) and `infer` steps of the reference model.

    `variant`: `eager`, `channels_last`, or `compile` (channels_last + `torch.compile`).
    `dtype="bfloat16"` runs under autocast (AMP) with float32 parameters.
    """
    import torch

    import se_torch_ref.models as tm

    model = tm.create_model(name, **model_kwargs).to(device)
    xt, yt = torch.from_numpy(x).to(device), torch.from_numpy(y).to(device)
    if variant in ("channels_last", "compile"):
        fmt = torch.channels_last_3d if x.ndim == 5 else torch.channels_last
        model = model.to(memory_format=fmt)
        xt = xt.contiguous(memory_format=fmt)
    forward = torch.compile(model) if variant == "compile" else model
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    amp = torch.autocast(device.split(":")[0], dtype=torch.bfloat16,
                         enabled=dtype == "bfloat16")
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)

    def train_step() -> None:
        model.train()
        opt.zero_grad(set_to_none=True)
        with amp:
            loss = torch.nn.functional.cross_entropy(forward(xt), yt)
        loss.backward()
        opt.step()
        sync()

    def infer_step() -> None:
        model.eval()
        with torch.no_grad(), amp:
            forward(xt)
        sync()

    return {"train": train_step, "infer": infer_step}


def timed(fn: Step) -> float:
    """Wall-clock seconds of one call."""
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def alternate_times(steps: dict[str, Step], repeats: int,
                    warmup: int) -> dict[str, list[float]]:
    """Seconds of every timed call of each step, run in turn (A B C A B C …) after warm-up.

    Entry `i` of every list comes from round `i`, so the lists can be compared pairwise.
    """
    for _ in range(warmup):
        for fn in steps.values():
            fn()
    times: dict[str, list[float]] = {k: [] for k in steps}
    for _ in range(repeats):
        for k, fn in steps.items():
            times[k].append(timed(fn))
    return times


def alternate(steps: dict[str, Step], repeats: int, warmup: int) -> dict[str, float]:
    """Median seconds per call of each step, timed in turn (A B C A B C …) after warm-up."""
    return {k: statistics.median(v) for k, v in alternate_times(steps, repeats, warmup).items()}


def paired_ratio(times: list[float], base: list[float]) -> tuple[float, float, float]:
    """Median and quartiles of `times[i] / base[i]`: each ratio compares one round's two steps.

    The host's load drifts over minutes; two steps of the same round share it, so the ratios
    of a round spread less than the ratio of two medians taken over the whole run.
    """
    if len(times) != len(base) or not times:
        raise ValueError(f"need two equally long, non-empty lists of times, got {len(times)} "
                         f"and {len(base)}")
    ratios = sorted(t / b for t, b in zip(times, base, strict=True))
    if len(ratios) == 1:
        return ratios[0], ratios[0], ratios[0]
    q1, med, q3 = statistics.quantiles(ratios, n=4, method="inclusive")
    return med, q1, q3
