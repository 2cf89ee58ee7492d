"""Which Flax API computes the model: Linen modules or their NNX twins (`--api`).

Both APIs hold the same variables in the same layout (`params`, `batch_stats` under the Linen
names; `se_flax.nnx.convert`), so one checkpoint, export and gate plot serve both: the NNX model
is used through `se_flax.nnx.functional_model`, whose `apply` has Linen's signature. Initial
weights are always drawn by the Linen initialisers, so one `seed` means the same starting
point whichever API trains.
"""

from __future__ import annotations

from typing import Any

APIS = ("linen", "nnx")


def compute_model(api: str, name: str, **kwargs: Any) -> Any:
    """The model whose `apply` the train/eval steps call: a Linen module or an NNX twin."""
    if api == "nnx":
        from se_flax.nnx import functional_model

        return functional_model(name, **kwargs)
    if api != "linen":
        raise ValueError(f"api={api!r} is not supported; expected one of {', '.join(APIS)}")
    from se_flax.models import create_model

    return create_model(name, **kwargs)
