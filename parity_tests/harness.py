"""Cross-framework parity harness: same weights, same input, compare everything.

`compare(flax_module, torch_module, x)` copies the PyTorch weights into Flax through
`se_flax.convert`, runs both (the input is given in PyTorch layout, channels first, and
transposed for Flax), and returns a `ParityReport` with one row per compared tensor: the output,
every recorded attention gate, optionally the outputs of named submodules (`probes`), the
BatchNorm running statistics after a training-mode forward, and the gradients of a fixed random
linear loss with respect to the input and every parameter.

Error metric and tolerances: `se_spec.tolerances` (docs/numerics.md): `max|flax - torch| /
max(1, max|torch|)`; eval outputs and gates `EVAL_TOL`, anything in training mode (outputs,
running statistics, gradients) `TRAIN_TOL`.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import torch

from se_flax.convert import flax_name, flax_to_torch, torch_to_flax
from se_flax.nnx.functional import FunctionalModel
from se_spec.tolerances import EVAL_TOL, TRAIN_TOL, scaled_error
from se_spec.variables import BATCH_STATS, INTERMEDIATES, SAME_LAYOUT_GATES, TORCH_GATE_ATTRS

FlaxModel = nn.Module | FunctionalModel  # a Linen module, or an NNX model behind its apply


@dataclass
class Row:
    """One compared tensor."""

    name: str
    kind: str
    max_abs: float
    max_rel: float
    tol: float

    @property
    def ok(self) -> bool:
        """Whether the scaled error is within tolerance."""
        return bool(self.max_rel <= self.tol)


@dataclass
class ParityReport:
    """All rows of one comparison, in forward order."""

    rows: list[Row] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every row is within tolerance."""
        return all(r.ok for r in self.rows)

    def first_failure(self) -> Row | None:
        """The first row (in forward order) that exceeds its tolerance."""
        return next((r for r in self.rows if not r.ok), None)

    def of_kind(self, kind: str) -> list[Row]:
        """Rows of one kind: output, probe, gate, running_stat, grad."""
        return [r for r in self.rows if r.kind == kind]

    def table(self) -> str:
        """Plain-text table: name, kind, max abs error, scaled error, tolerance, status."""
        width = max([len(r.name) for r in self.rows] + [10])
        lines = [f"{'tensor':<{width}}  {'kind':<12} {'max abs':>10} {'max rel':>10} "
                 f"{'tol':>7}  ok"]
        for r in self.rows:
            lines.append(f"{r.name:<{width}}  {r.kind:<12} {r.max_abs:>10.3e} {r.max_rel:>10.3e}"
                         f" {r.tol:>7.0e}  {'yes' if r.ok else 'NO'}")
        return "\n".join(lines)


def channels_last(a: np.ndarray) -> np.ndarray:
    """`(N, C, ...)` → `(N, ..., C)`; arrays of rank ≤ 2 are returned unchanged."""
    return np.moveaxis(a, 1, -1) if a.ndim > 2 else a


def torch_state_dict(module: torch.nn.Module) -> dict[str, np.ndarray]:
    """A module's state dict as NumPy arrays."""
    return {k: v.detach().cpu().numpy() for k, v in module.state_dict().items()}


def load_torch_weights(flax_module: FlaxModel, torch_module: torch.nn.Module,
                       x_flax: jax.Array, renames: Iterable[tuple[str, str]] = ()
                       ) -> dict[str, Any]:
    """Initialise `flax_module` on `x_flax` and overwrite every variable with torch's weights."""
    template = jax.eval_shape(lambda: flax_module.init(jax.random.PRNGKey(0), x_flax))
    template = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), dict(template))
    template.pop(INTERMEDIATES, None)
    variables = torch_to_flax(torch_state_dict(torch_module), template, layout="timm",
                              renames=renames)
    return jax.tree.map(jnp.asarray, variables)


def _torch_gates(module: torch.nn.Module) -> dict[tuple[str, ...], np.ndarray]:
    gates = {}
    for name, sub in module.named_modules():
        for attr, leaf in TORCH_GATE_ATTRS.items():
            value = getattr(sub, attr, None)
            if isinstance(value, torch.Tensor):
                value = value.detach().numpy()
                gates[(*flax_name(name), leaf)] = (value if leaf in SAME_LAYOUT_GATES
                                                   else channels_last(value))
    return gates


def _sown(tree: dict[str, Any], leaves: set[str],
          prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], Any]:
    """Paths of sown values (tuples) whose leaf name is in `leaves`."""
    found = {}
    for k, v in tree.items():
        if isinstance(v, tuple) and k in leaves:
            found[(*prefix, k)] = v
        elif isinstance(v, dict):
            found.update(_sown(v, leaves, (*prefix, k)))
    return found


def compare(flax_module: FlaxModel, torch_module: torch.nn.Module, x: np.ndarray, *,
            train: bool = False, grads: bool = True, probes: Sequence[str] = (),
            renames: Iterable[tuple[str, str]] = (), seed: int = 0,
            dtype: str = "float32", probes_channels_first: bool = True) -> ParityReport:
    """Run both modules on `x` (PyTorch layout) and compare outputs, gates, stats and grads.

    `probes` are PyTorch submodule names (`"layer1.0"`) whose outputs are compared too; the
    matching Flax module is found by the naming rule of `se_flax.convert.naming`. Their PyTorch
    outputs are channels first, or, with `probes_channels_first=False`, already in Flax's layout
    (the `(N, L, C)` tokens of a ViT block).

    `dtype="float64"` runs both frameworks in double precision (on a copy of the torch module,
    JAX under `jax.enable_x64`). Use it for gradients of deep ReLU networks: ReLU is continuous
    but its derivative is not, so a pre-activation within float32 rounding of zero can take the
    other branch in one framework and change that element's gradient by O(1). For ResNet-50
    (batch 2, 96x96, train mode) one framework's float32 gradients differ from float64 ones by
    1e-3 to 4e-2 for that reason (which framework depends on the weights), while the two
    frameworks agree to ~1e-13 in float64.
    """
    if dtype not in ("float32", "float64"):
        raise ValueError(f"compare: dtype={dtype!r}; expected 'float32' or 'float64'")
    if dtype == "float64":
        with jax.enable_x64(True):
            return _compare(flax_module, copy.deepcopy(torch_module).double(),
                            np.asarray(x, np.float64), train, grads, probes, renames, seed,
                            probes_channels_first)
    return _compare(flax_module, torch_module, np.asarray(x, np.float32), train, grads, probes,
                    renames, seed, probes_channels_first)


def _compare(flax_module: FlaxModel, torch_module: torch.nn.Module, x: np.ndarray, train: bool,
             grads: bool, probes: Sequence[str], renames: Iterable[tuple[str, str]],
             seed: int, probes_channels_first: bool = True) -> ParityReport:
    x_flax = jnp.asarray(channels_last(x))
    variables = load_torch_weights(flax_module, torch_module, x_flax, renames)
    params = variables["params"]
    state = {k: v for k, v in variables.items() if k != "params"}
    probe_paths = {flax_name(p): p for p in probes}

    out_shape = jax.eval_shape(lambda: flax_module.apply(variables, x_flax, train=train,
                                                         mutable=["batch_stats"])[0]).shape
    w = np.random.default_rng(seed).standard_normal(out_shape).astype(x.dtype)

    def linen_capture(mdl: nn.Module, method: str) -> bool:
        return method == "__call__" and tuple(mdl.scope.path) in probe_paths

    # An NNX model (`FunctionalModel`) records every submodule's output; the probes are picked
    # from them below, by the same Linen paths.
    capture = True if isinstance(flax_module, FunctionalModel) else linen_capture

    def loss_fn(p: Any, xf: jax.Array) -> tuple[jax.Array, tuple[jax.Array, Any]]:
        out, new_state = flax_module.apply(
            {"params": p, **state}, xf, train=train, capture_intermediates=capture,
            mutable=[INTERMEDIATES, BATCH_STATS])
        return jnp.sum(out * w), (out, new_state)

    with jax.default_matmul_precision("highest"):
        if grads:
            (_, (out_f, new_state)), (g_params, g_x) = jax.jit(
                jax.value_and_grad(loss_fn, argnums=(0, 1), has_aux=True))(params, x_flax)
        else:
            _, (out_f, new_state) = jax.jit(loss_fn)(params, x_flax)

    torch_module.train(train)
    x_t = torch.tensor(x, requires_grad=grads)
    hooks, probe_out = [], {}
    modules = dict(torch_module.named_modules())
    for name in probes:
        hooks.append(modules[name].register_forward_hook(
            lambda _m, _i, o, name=name: probe_out.__setitem__(name, o.detach().numpy())))
    out_t = torch_module(x_t)
    for h in hooks:
        h.remove()
    if grads:
        torch_module.zero_grad()
        (out_t * torch.from_numpy(np.moveaxis(w, -1, 1) if w.ndim > 2 else w)).sum().backward()

    tol = TRAIN_TOL if train else EVAL_TOL
    report = ParityReport()
    inter = new_state.get(INTERMEDIATES, {})
    flax_gates = {path: np.asarray(v[0]) for path, v in
                  _sown(inter, set(TORCH_GATE_ATTRS.values())).items()}
    torch_gates = _torch_gates(torch_module)
    if set(flax_gates) != set(torch_gates):
        raise ValueError(f"gates recorded differ: flax {sorted(flax_gates)} vs torch "
                         f"{sorted(torch_gates)}")
    flax_probes = {path[:-1]: v[0] for path, v in _sown(inter, {"__call__"}).items()}
    # Forward order: probes and gates interleaved by module registration order.
    order = {flax_name(n): i for i, n in enumerate(modules)}
    keyed: list[tuple[int, Row]] = []
    for path, ref in torch_gates.items():
        keyed.append((order.get(path[:-1], 0), Row(
            "/".join(path), "gate", *scaled_error(flax_gates[path], ref), tol)))
    probe_layout = channels_last if probes_channels_first else np.asarray
    for path, name in probe_paths.items():
        keyed.append((order.get(path, 0), Row(
            name, "probe", *scaled_error(flax_probes[path], probe_layout(probe_out[name])),
            tol)))
    report.rows.extend(r for _, r in sorted(keyed, key=lambda t: t[0]))
    report.rows.append(Row("output", "output", *scaled_error(
        out_f, channels_last(out_t.detach().numpy())), tol))

    if train:
        flax_stats = flax_to_torch({"batch_stats": new_state.get("batch_stats", {})})
        torch_stats = torch_state_dict(torch_module)
        for key, value in flax_stats.items():
            if key.endswith(("running_mean", "running_var")):
                report.rows.append(Row(key, "running_stat",
                                       *scaled_error(value, torch_stats[key]), TRAIN_TOL))
    if grads:
        flax_grads = flax_to_torch({"params": g_params})
        report.rows.append(Row("input", "grad", *scaled_error(
            g_x, channels_last(x_t.grad.numpy())), TRAIN_TOL))
        for key, p in torch_module.named_parameters():
            if p.grad is None:
                raise ValueError(f"torch parameter {key} received no gradient")
            ours = flax_grads[key].reshape(p.shape)
            report.rows.append(Row(key, "grad", *scaled_error(ours, p.grad.numpy()),
                                   TRAIN_TOL))
    return report
