"""One per-device train step and eval step, written against the named mesh axis `batch`.

The same functions run under `jax.pmap(axis_name="batch")` and under
`jax.jit(jax.shard_map(..., mesh=Mesh(devices, ("batch",))))` (see `train.parallel`): each call
sees its device's slice of the global batch; gradients and metrics are averaged with
`lax.pmean("batch")` and BatchNorm synchronises its statistics over the same axis, so the update
equals one step on the whole global batch.

Optimiser: SGD with momentum/Nesterov (PyTorch's `torch.optim.SGD` update: decay added to the
gradient, `buf = μ·buf + g`, Nesterov `g + μ·buf`, step `-lr·…`) or AdamW; weight decay only on
convolution/linear kernels, never on BatchNorm scales or biases. Learning rate: linear warm-up
to the peak, then cosine decay to zero (Loshchilov & Hutter, SGDR, 2017). Loss: softmax cross-
entropy with label smoothing (Szegedy et al., 2016). Mixed precision: the model computes in the
configured dtype, parameters and optimiser state stay float32; float16 adds dynamic loss scaling.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import optax
from flax.training.dynamic_scale import DynamicScale
from jax import lax

from train.augment import augment, normalize

AXIS = "batch"
Schedule = Callable[[jax.Array], jax.Array]


class TrainState(flax.struct.PyTreeNode):
    """Everything that changes during training; a pytree, replicated on every device."""

    step: jax.Array
    params: Any
    batch_stats: Any
    opt_state: Any
    dynamic_scale: DynamicScale | None = None


def warmup_cosine(peak_lr: float, warmup_steps: int, total_steps: int) -> Schedule:
    """`lr(s) = peak·(s+1)/warmup` for `s < warmup`, then `peak·½(1+cos(π·t))`, t ∈ [0, 1]."""
    warmup = max(int(warmup_steps), 0)
    decay = max(int(total_steps) - warmup, 1)

    def schedule(step: jax.Array) -> jax.Array:
        s = jnp.asarray(step, jnp.float32)
        warm = peak_lr * (s + 1.0) / max(warmup, 1)
        t = jnp.clip((s - warmup) / decay, 0.0, 1.0)
        cos = peak_lr * 0.5 * (1.0 + jnp.cos(math.pi * t))
        return jnp.where(s < warmup, warm, cos)

    return schedule


def decay_mask(params: Any) -> Any:
    """True for convolution/linear kernels; False for BatchNorm scales and all biases."""
    return jax.tree_util.tree_map_with_path(
        lambda path, _: getattr(path[-1], "key", None) == "kernel", params)


def make_optimizer(name: str, schedule: Schedule, *, momentum: float = 0.9,
                   nesterov: bool = True, weight_decay: float = 5e-4, b1: float = 0.9,
                   b2: float = 0.999) -> optax.GradientTransformation:
    """`sgd` (PyTorch SGD semantics, coupled decay) or `adamw` (decoupled decay)."""
    if name == "sgd":
        return optax.chain(optax.add_decayed_weights(weight_decay, decay_mask),
                           optax.sgd(schedule, momentum or None,
                                     nesterov=nesterov and momentum > 0))
    if name == "adamw":
        return optax.adamw(schedule, b1, b2, weight_decay=weight_decay, mask=decay_mask)
    raise ValueError(f"optimizer {name!r} is not supported; expected 'sgd' or 'adamw'")


def create_state(model: nn.Module, tx: optax.GradientTransformation, key: jax.Array,
                 image_shape: Sequence[int], float16: bool = False) -> TrainState:
    """Initialise variables on one example (outside any mapping) and the optimiser state."""
    variables = model.init(key, jnp.zeros((1, *image_shape), jnp.float32), train=False)
    params = variables["params"]
    return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                      batch_stats=variables.get("batch_stats", {}), opt_state=tx.init(params),
                      dynamic_scale=DynamicScale() if float16 else None)


def cross_entropy(logits: jax.Array, labels: jax.Array, num_classes: int,
                  smoothing: float = 0.0) -> jax.Array:
    """Per-example softmax cross-entropy against `(1-ε)·onehot + ε/K` (PyTorch's definition)."""
    targets = optax.smooth_labels(jax.nn.one_hot(labels, num_classes), smoothing) \
        if smoothing else jax.nn.one_hot(labels, num_classes)
    logits = logits.astype(jnp.promote_types(logits.dtype, jnp.float32))
    return optax.softmax_cross_entropy(logits, targets.astype(logits.dtype))


def _example_ids(local_batch: int, axis_name: str) -> jax.Array:
    """Positions of this device's examples in the global batch."""
    return lax.axis_index(axis_name) * local_batch + jnp.arange(local_batch)


def make_train_step(model: nn.Module, tx: optax.GradientTransformation, schedule: Schedule, *,
                    num_classes: int, mean: Sequence[float], std: Sequence[float],
                    crop_padding: int = 0, flip: bool = False, label_smoothing: float = 0.0,
                    seed: int = 0, dtype: Any = jnp.float32, axis_name: str = AXIS
                    ) -> Callable[[TrainState, jax.Array, jax.Array], tuple[TrainState, dict]]:
    """The per-device step `(state, uint8 images, int labels) → (state, metrics)`.

    Metrics (averaged over all devices): `loss`, `accuracy` (of the augmented batch), `lr`,
    `grad_norm`; with float16 also `loss_scale` and `skipped` (1.0 where the scaled gradients
    overflowed and the update was not applied).
    """
    base_key = jax.random.key(seed)

    def step(state: TrainState, images: jax.Array, labels: jax.Array
             ) -> tuple[TrainState, dict[str, jax.Array]]:
        key = jax.random.fold_in(base_key, state.step)
        x = augment(images, key, _example_ids(images.shape[0], axis_name), crop_padding, flip)
        x = normalize(x, mean, std, dtype)

        def loss_fn(params: Any) -> tuple[jax.Array, tuple[jax.Array, Any]]:
            logits, new_vars = model.apply({"params": params, "batch_stats": state.batch_stats},
                                           x, train=True, mutable=["batch_stats"])
            loss = cross_entropy(logits, labels, num_classes, label_smoothing).mean()
            return loss, (logits, new_vars.get("batch_stats", {}))

        dyn = state.dynamic_scale
        if dyn is not None:
            grad_fn = dyn.value_and_grad(loss_fn, has_aux=True, axis_name=axis_name)
            dyn, is_finite, (loss, (logits, batch_stats)), grads = grad_fn(state.params)
        else:
            (loss, (logits, batch_stats)), grads = jax.value_and_grad(
                loss_fn, has_aux=True)(state.params)
            grads = lax.pmean(grads, axis_name)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        if dyn is not None:  # skip the update of a step whose scaled gradients overflowed
            keep = lambda new, old: jax.tree.map(  # noqa: E731
                lambda a, b: jnp.where(is_finite, a, b), new, old)
            params, opt_state = keep(params, state.params), keep(opt_state, state.opt_state)
            batch_stats = keep(batch_stats, state.batch_stats)
        metrics = {"loss": loss,
                   "accuracy": jnp.mean((jnp.argmax(logits, -1) == labels).astype(jnp.float32))}
        metrics = lax.pmean(metrics, axis_name)
        metrics["lr"] = schedule(state.step)
        metrics["grad_norm"] = optax.tree.norm(grads)
        if dyn is not None:
            metrics["loss_scale"] = dyn.scale
            metrics["skipped"] = 1.0 - is_finite.astype(jnp.float32)  # update not applied
        new_state = state.replace(step=state.step + 1, params=params, batch_stats=batch_stats,
                                  opt_state=opt_state, dynamic_scale=dyn)
        return new_state, metrics

    return step


def make_eval_step(model: nn.Module, *, num_classes: int, mean: Sequence[float],
                   std: Sequence[float], dtype: Any = jnp.float32, axis_name: str = AXIS
                   ) -> Callable[..., dict[str, jax.Array]]:
    """Per-device `(state, images, labels, mask) → {loss_sum, correct, count}`.

    Sums over all devices; padded examples have `mask == 0`.
    """

    def step(state: TrainState, images: jax.Array, labels: jax.Array, mask: jax.Array
             ) -> dict[str, jax.Array]:
        x = normalize(images, mean, std, dtype)
        logits = model.apply({"params": state.params, "batch_stats": state.batch_stats}, x,
                             train=False)
        loss = cross_entropy(logits, labels, num_classes)
        correct = (jnp.argmax(logits, -1) == labels).astype(jnp.float32)
        sums = {"loss_sum": jnp.sum(loss * mask), "correct": jnp.sum(correct * mask),
                "count": jnp.sum(mask)}
        return lax.psum(sums, axis_name)

    return step
