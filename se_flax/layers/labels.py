"""Human-readable names of bound Flax modules, for error messages."""

from __future__ import annotations

import flax.linen as nn


def module_label(module: nn.Module) -> str:
    """`Type(path/in/model)` for a bound module, or just the type name at the top level."""
    path = "/".join(str(p) for p in module.scope.path) if module.scope is not None else ""
    return f"{type(module).__name__}({path})" if path else type(module).__name__
