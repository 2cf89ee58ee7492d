"""Inference folding: each BatchNorm merged into the convolution before it (the article's §5.3).

In eval mode a BatchNorm is a fixed per-channel affine map of its input, so after a convolution
`z = W * x + b` it folds into new weights: with `f = scale / sqrt(running_var + eps)`,
`W' = W · f` (per output channel) and `b' = (b - running_mean) · f + bias`. The folded network
computes the same function with one pass over each feature map fewer. `fold_batchnorm` finds
the pairs by tracing the model (a BatchNorm whose input *is* a convolution's output) and
returns variables in which each such convolution has a `bias` and the BatchNorm has no
variables; `folded_apply` runs the unchanged model on them, adding each folded convolution's
bias and skipping each folded BatchNorm (Flax method interception). `flax_to_torch` turns the
folded variables into the state dict of `se_torch_ref.fold_batchnorm(model)` (conv `weight` and
`bias`, no BatchNorm keys). The folded weights are computed in float64 and cast back, so both
frameworks produce the same numbers.

What cannot be folded: the SE gate. `s = sigmoid(W2 · relu(W1 · mean(x)))` is computed from the
input feature map — every image gets its own per-channel scale — while a convolution's weights
are the same for every image. No fixed weights can reproduce it. The article's `fuse_se_conv`
multiplies the conv weights by the SE's last Linear matrix `fc[2].weight` `(C, C/r)`: that does
not even have matching shapes for `r > 1`, and if it ran it would replace an input-dependent
channel scaling by a fixed channel *mixing*, dropping the squeeze, the ReLU and the sigmoid.
The SE's two Linear layers cannot be merged into one either: the ReLU between them is not
linear. (BatchNorm folding assumes the convolution's output feeds only the BatchNorm, as in
every registered model.)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from se_flax.convert.naming import flatten, unflatten
from se_flax.layers.norm import BatchNorm
from se_spec.models import sample_input_shape

NORMS = (BatchNorm, nn.BatchNorm)
Path = tuple[str, ...]


def _sample_input(model: nn.Module, sample_input: Any) -> Any:
    if sample_input is not None:
        return sample_input
    if hasattr(model, "model_name") and hasattr(model, "in_chans"):
        return jax.ShapeDtypeStruct(sample_input_shape(
            model.model_name, model.in_chans, img_size=getattr(model, "img_size", None)),
            jnp.float32)
    raise ValueError(f"{type(model).__name__}: pass sample_input (an array or a "
                     "jax.ShapeDtypeStruct of the input shape) to trace the model")


def find_conv_bn_pairs(model: nn.Module, variables: Mapping[str, Any],
                       sample_input: Any = None) -> list[tuple[Path, Path, float]]:
    """`(conv path, norm path, epsilon)` for every BatchNorm applied to a conv's output.

    Traced abstractly (`jax.eval_shape`), in forward order. `sample_input` defaults to the
    input of a registered model (`se_spec.models.sample_input_shape`).
    """
    x = _sample_input(model, sample_input)
    outputs: dict[int, tuple[Path, Any]] = {}
    pairs: list[tuple[Path, Path, float]] = []

    def record(next_fun: Any, args: Any, kwargs: Any, context: Any) -> Any:
        out = next_fun(*args, **kwargs)
        module = context.module
        if context.method_name != "__call__":
            return out
        if isinstance(module, nn.Conv):
            outputs[id(out)] = (tuple(module.scope.path), out)
        elif isinstance(module, NORMS) and args:
            source = outputs.get(id(args[0]))
            if source is not None and source[1] is args[0] and getattr(module, "axis", -1) == -1:
                pairs.append((source[0], tuple(module.scope.path), float(module.epsilon)))
        return out

    def run(v: Any, x: Any) -> Any:
        with nn.intercept_methods(record):
            return model.apply(v, x, train=False)

    jax.eval_shape(run, {k: variables[k] for k in ("params", "batch_stats") if k in variables},
                   x)
    return pairs


def fold_batchnorm(model: nn.Module, variables: Mapping[str, Any], sample_input: Any = None
                   ) -> dict[str, Any]:
    """Variables with every conv → BatchNorm pair folded, for `folded_apply` (NumPy arrays).

    Each folded conv gains `params/.../bias` and its kernel is rescaled; each folded BatchNorm
    loses its `params` and `batch_stats`. Unpaired BatchNorms are kept. dtypes are kept.
    """
    pairs = find_conv_bn_pairs(model, variables, sample_input)
    params = {p: np.asarray(v) for p, v in flatten(variables["params"]).items()}
    stats = {p: np.asarray(v) for p, v in flatten(variables.get("batch_stats", {})).items()}
    for conv, norm, eps in pairs:
        kernel = params[(*conv, "kernel")]
        scale = params.pop((*norm, "scale"), None)
        shift = params.pop((*norm, "bias"), None)
        mean, var = stats.pop((*norm, "mean")), stats.pop((*norm, "var"))
        f64 = np.float64
        factor = 1.0 / np.sqrt(var.astype(f64) + eps)
        if scale is not None:
            factor = factor * scale.astype(f64)
        bias = params.get((*conv, "bias"), np.zeros(kernel.shape[-1], mean.dtype)).astype(f64)
        new_bias = (bias - mean.astype(f64)) * factor
        if shift is not None:
            new_bias = new_bias + shift.astype(f64)
        params[(*conv, "kernel")] = (kernel.astype(f64) * factor).astype(kernel.dtype)
        params[(*conv, "bias")] = new_bias.astype(shift.dtype if shift is not None
                                                  else kernel.dtype)
    folded = {"params": unflatten(params)}
    if stats:
        folded["batch_stats"] = unflatten(stats)
    return folded


def _run_folded(next_fun: Any, args: Any, kwargs: Any, context: Any) -> Any:
    module = context.module
    if context.method_name == "__call__":
        if isinstance(module, NORMS) and not module.has_variable("batch_stats", "mean"):
            x = args[0]
            return x.astype(getattr(module, "dtype", None) or x.dtype)
        if isinstance(module, nn.Conv) and not module.use_bias \
                and module.has_variable("params", "bias"):
            y = next_fun(*args, **kwargs)
            return y + jnp.asarray(module.get_variable("params", "bias"), y.dtype)
    return next_fun(*args, **kwargs)


def folded_apply(model: nn.Module, folded_variables: Mapping[str, Any], x: Any,
                 **kwargs: Any) -> Any:
    """`model.apply(folded_variables, x, train=False)` with folded convs and BatchNorms.

    Jit it like any apply: `jax.jit(functools.partial(folded_apply, model))(folded, x)`.
    """
    with nn.intercept_methods(_run_folded):
        return model.apply(folded_variables, x, train=False, **kwargs)
