"""How a model is compiled: program rewrites that change XLA's program but not the math.

`create_model(name, impl=...)` takes `"auto"` (the default: `"cpu"` on the CPU backend, `"xla"`
elsewhere), `"xla"` (plain XLA operations everywhere), `"cpu"` (every rewrite below) or an
`Implementation` with each choice spelled out. The rewrites were measured on CPU only
(bench/BENCHMARKS.md); GPU and TPU get plain operations until a benchmark there says otherwise.

* `pointwise_products` — 1x1 convolutions as matrix products with their own VJP
  (`se_flax.layers.conv`); reverse mode only.
* `small_map_products` — stride-1 convolutions over maps of at most 2x2 pixels as one patch
  product (`se_flax.layers.conv`).
* `fusion_boundary` — each residual block's output stored once instead of recomputed by every
  consumer (`se_flax.layers.boundary`; exact).
* `batchnorm_vjp` — training-mode BatchNorm gradients by a VJP that stores only its input
  (`se_flax.layers.norm_vjp`); reverse mode only.
* `memory_scheduler` — XLA's memory-optimised CPU scheduler for jitted train steps
  (`compiler_options()`, passed to `jax.jit` by the training program and the benchmarks).

Forward-mode differentiation (`jax.jvp`) through a model in training mode needs `impl="xla"`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import flax.linen as nn
import jax

from se_flax.layers.boundary import fusion_boundary
from se_flax.layers.conv import conv_general_dilated
from se_flax.layers.norm import BatchNorm
from se_spec.models import IMPL_CHOICES

ModuleDef = Any
AUTO = "auto"
CPU_SCHEDULER_OPTION = {"xla_cpu_scheduler_type": "CPU_SCHEDULER_TYPE_MEMORY_OPTIMIZED"}


@dataclass(frozen=True)
class Implementation:
    """Which program rewrites a model and its train step use; see the module docstring."""

    pointwise_products: bool = False
    small_map_products: bool = False
    fusion_boundary: bool = False
    batchnorm_vjp: bool = False
    memory_scheduler: bool = False

    def module_fields(self) -> dict[str, Any]:
        """The `conv`, `norm` and `residual_boundary` fields of the models for this choice."""
        return {"conv": _conv(self.pointwise_products, self.small_map_products),
                "norm": _norm(self.batchnorm_vjp),
                "residual_boundary": fusion_boundary if self.fusion_boundary else None}

    def compiler_options(self, backend: str | None = None) -> dict[str, str]:
        """Options for `jax.jit(..., compiler_options=...)` of a train step on `backend`."""
        backend = backend or jax.default_backend()
        return dict(CPU_SCHEDULER_OPTION) if self.memory_scheduler and backend == "cpu" else {}


IMPLEMENTATIONS: dict[str, Implementation] = {  # every name of se_spec.models.IMPL_CHOICES
    "xla": Implementation(),
    "cpu": Implementation(pointwise_products=True, small_map_products=True,
                          fusion_boundary=True, batchnorm_vjp=True, memory_scheduler=True),
}
# What "auto" means on each backend; a backend not listed gets "xla".
BACKEND_DEFAULTS = {"cpu": "cpu"}
assert IMPL_CHOICES == (AUTO, *IMPLEMENTATIONS)


def resolve_implementation(impl: str | Implementation = AUTO,
                           backend: str | None = None) -> Implementation:
    """The `Implementation` meant by `impl` on `backend` (default: JAX's default backend)."""
    if isinstance(impl, Implementation):
        return impl
    if impl == AUTO:
        impl = BACKEND_DEFAULTS.get(backend or jax.default_backend(), "xla")
    if impl not in IMPLEMENTATIONS:
        raise ValueError(f"impl={impl!r} is not supported; expected one of "
                         f"{', '.join(map(repr, IMPL_CHOICES))} or an Implementation")
    return IMPLEMENTATIONS[impl]


@functools.cache
def _conv(pointwise: bool, small_map: bool) -> ModuleDef:
    """`nn.Conv`, or `nn.Conv` with the chosen rewrites (one object per choice: stable equality)."""
    if not (pointwise or small_map):
        return nn.Conv
    lowering: Callable[..., jax.Array] = functools.partial(
        conv_general_dilated, pointwise=pointwise, small_map=small_map)
    return functools.partial(nn.Conv, conv_general_dilated=lowering)


@functools.cache
def _norm(custom_vjp: bool) -> ModuleDef:
    return functools.partial(BatchNorm, custom_vjp=True) if custom_vjp else BatchNorm
