"""Recording attention gates in NNX: `nnx.capture(model, nnx.Intermediate)` collects them.

Every attention module records its gate `s` `(N, C)` under `gate` (CBAM also `spatial_gate`),
as the Linen modules `sow` it into `intermediates`. A value is recorded only while the call runs
under `nnx.capture` (Linen records only when `intermediates` is mutable): a plain call leaves
the module's state as it was.
"""

from __future__ import annotations

import jax
from flax import nnx


def record(module: nnx.Module, name: str, value: jax.Array) -> None:
    """`module.sow(nnx.Intermediate, name, value)` when the call is being captured."""
    if hasattr(module, "__captures__"):  # set by nnx.capture for the duration of the call
        module.sow(nnx.Intermediate, name, value)


def labelled(kind: str, path: str | None) -> str:
    """`Type(path/in/model)` for error messages, as the Linen modules name themselves."""
    return f"{kind}({path})" if path else kind
