"""An NNX model behind Linen's functional `init`/`apply`, on Linen-layout variables.

`FunctionalModel` lets code written for `flax.linen` (a train step, an exporter) run an NNX
model without change: `apply` takes and returns the `{"params": …, "batch_stats": …}` dicts of
the Linen twin (the naming rule of `se_flax.nnx.convert`), so checkpoints and exported weights
are the same whichever API computed them. Inside `jax.jit` the variables are placed into the
module with `nnx.merge` and `linen_to_nnx` while tracing: the graph of modules is walked once
per compilation, never per step, and the compiled program holds only the model's arithmetic.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
from flax import nnx

from se_flax.convert.naming import unflatten
from se_flax.nnx.convert import linen_names, model_variables, nnx_state, nnx_to_linen
from se_flax.nnx.models import create_model
from se_spec.variables import BATCH_STATS, INTERMEDIATES

Factory = Callable[[nnx.Rngs], nnx.Module]


class FunctionalModel:
    """`init(key, x, train=…)` and `apply(variables, x, train=…, mutable=…)` of an NNX model.

    `factory(rngs)` builds the model (e.g. `lambda r: create_model(name, rngs=r)`); it is called
    once here under `nnx.eval_shape` (no arrays) for the module graph, and by `init` for weights.
    """

    def __init__(self, factory: Factory) -> None:
        self.factory = factory
        abstract = nnx.eval_shape(lambda: factory(nnx.Rngs(0)))
        self.name = type(abstract).__name__
        self.slots = model_variables(abstract)
        self.graphdef, _, self.rest = nnx.split(abstract, (nnx.Param, nnx.BatchStat), ...)

    def module(self, variables: dict[str, Any]) -> nnx.Module:
        """A fresh NNX module holding Linen `variables` (strict, as `linen_to_nnx`)."""
        state = nnx_state(self.slots, variables, f"Linen variables → NNX {self.name}")
        return nnx.merge(self.graphdef, state, self.rest)

    def init(self, key: jax.Array, x: jax.Array | None = None, *, train: bool = False
             ) -> dict[str, Any]:
        """The NNX model's own initial variables drawn from `key`, in the Linen layout.

        `x` and `train` are accepted for Linen's signature; an NNX model's shapes are fixed at
        construction, so neither is used.
        """
        del x, train
        return nnx_to_linen(self.factory(nnx.Rngs(key)))

    def apply(self, variables: dict[str, Any], x: jax.Array, *, train: bool = False,
              mutable: bool | str | Sequence[str] = False,
              capture_intermediates: bool = False) -> Any:
        """Logits for `x`, and with `mutable` the updated collections, as `linen.Module.apply`.

        `mutable` may name `batch_stats` (the running statistics after a training call) and
        `intermediates` (the attention gates and selection weights, each a 1-tuple as Linen's
        `sow` stores them). `capture_intermediates=True` also records every submodule's output
        under `<path>/__call__` (as Linen's option of that name; `nnx.capture`'s
        `method_outputs`); it needs `intermediates` in `mutable`.
        """
        wanted = [mutable] if isinstance(mutable, str) else list(mutable or [])
        unknown = sorted(set(wanted) - {BATCH_STATS, INTERMEDIATES})
        if unknown:
            raise ValueError(f"mutable={unknown}: an NNX model updates only "
                             f"{BATCH_STATS!r} and records only {INTERMEDIATES!r}")
        if capture_intermediates and INTERMEDIATES not in wanted:
            raise ValueError(f"capture_intermediates=True needs {INTERMEDIATES!r} in mutable, "
                             f"got mutable={wanted}")
        model = self.module(variables)
        if INTERMEDIATES in wanted:
            outputs = nnx.Intermediate if capture_intermediates else None
            logits, captured = nnx.capture(model, nnx.Intermediate,
                                           method_outputs=outputs)(x, train=train)
        else:
            logits, captured = model(x, train=train), None
        if not wanted:
            return logits
        updated: dict[str, Any] = {}
        if BATCH_STATS in wanted:
            updated[BATCH_STATS] = nnx_to_linen(model).get(BATCH_STATS, {})
        if INTERMEDIATES in wanted:
            updated[INTERMEDIATES] = recorded(captured)
        return logits, updated


def recorded(captured: Any) -> dict[str, Any]:
    """`nnx.capture`'s intermediates as Linen's `intermediates` collection (paths, 1-tuples)."""
    flat = {}
    for path, variable in nnx.to_flat_state(captured):
        value = variable.get_value() if isinstance(variable, nnx.Variable) else variable
        flat[linen_names(path)] = value if isinstance(value, tuple) else (value,)
    return unflatten(flat)


def functional_model(name: str, **kwargs: Any) -> FunctionalModel:
    """`FunctionalModel` of the registered NNX model `name` (the options of `create_model`).

    A bad name or option raises here, with `create_model`'s message.
    """
    return FunctionalModel(lambda rngs: create_model(name, rngs=rngs, **kwargs))
