"""The stateful Flax NNX train step: `nnx.jit` over the model and an `nnx.Optimizer`.

The idiom of Flax's NNX documentation: the module and the optimiser are passed to an
`nnx.jit`-transformed function that mutates them. Each call walks the module graph in Python to
split it into a graph definition and arrays (and merges the results back), so its per-step
cost grows with the number of modules; the training program instead splits once and calls
`jax.jit` on arrays (`se_flax.nnx.functional_model`). The benchmark measures both.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import optax
from flax import nnx

import se_flax.nnx as snnx

Step = Callable[[], None]


def stateful_nnx_steps(name: str, options: dict[str, Any], variables: dict[str, Any],
                       x: jax.Array, y: jax.Array) -> dict[str, Step]:
    """`train` (SGD + momentum through `nnx.Optimizer`, donated) and `infer` via `nnx.jit`."""
    model = snnx.linen_to_nnx(nnx.eval_shape(lambda: snnx.create_model(name, **options)),
                              jax.tree.map(jax.numpy.copy, variables))
    optimizer = nnx.Optimizer(model, optax.sgd(0.01, momentum=0.9), wrt=nnx.Param)

    @nnx.jit(donate_argnums=(0, 1))  # compiler options: XLA_FLAGS (bench.step.variant_env)
    def train(model: nnx.Module, optimizer: nnx.Optimizer) -> jax.Array:
        def loss_fn(model: nnx.Module) -> jax.Array:
            logits = model(x, train=True)
            return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

        loss, grads = nnx.value_and_grad(loss_fn)(model)
        optimizer.update(model, grads)
        return loss

    @nnx.jit
    def infer(model: nnx.Module) -> jax.Array:
        return model(x, train=False)

    def train_step() -> None:
        train(model, optimizer).block_until_ready()

    def infer_step() -> None:
        infer(model).block_until_ready()

    return {"train": train_step, "infer": infer_step}
