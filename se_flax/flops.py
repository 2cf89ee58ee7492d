"""Count parameters and multiply-accumulates of a Flax model from its own jaxpr.

MACs are counted for every convolution and matrix product the model traces (including those
inside `jit`/`pjit` sub-programs); element-wise work (BatchNorm, activations, the SE rescale) is
not counted, as is conventional for ResNet FLOP tables.
"""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax.extend import core as jex_core


def param_count(variables: Any) -> int:
    """Number of trainable parameters (the `params` collection)."""
    return int(sum(np.prod(p.shape) for p in jax.tree.leaves(variables["params"])))


def _eqn_macs(eqn: Any) -> int:
    name = eqn.primitive.name
    if name == "conv_general_dilated":
        lhs, rhs = (v.aval for v in eqn.invars)
        out = eqn.outvars[0].aval
        dn = eqn.params["dimension_numbers"]
        kernel_in = rhs.shape[dn.rhs_spec[1]]
        window = math.prod(rhs.shape[d] for d in dn.rhs_spec[2:])
        return math.prod(out.shape) * kernel_in * window
    if name == "dot_general":
        lhs = eqn.invars[0].aval
        (contract_lhs, _), _ = eqn.params["dimension_numbers"]
        out = eqn.outvars[0].aval
        return math.prod(out.shape) * math.prod(lhs.shape[d] for d in contract_lhs)
    return 0


def _jaxpr_macs(jaxpr: Any) -> int:
    total = 0
    for eqn in jaxpr.eqns:
        total += _eqn_macs(eqn)
        for value in eqn.params.values():
            for sub in value if isinstance(value, list | tuple) else (value,):
                if isinstance(sub, jex_core.ClosedJaxpr):
                    total += _jaxpr_macs(sub.jaxpr)
                elif isinstance(sub, jex_core.Jaxpr):
                    total += _jaxpr_macs(sub)
    return total


def count_macs(model: nn.Module, variables: Any, input_shape: tuple[int, ...]) -> int:
    """Multiply-accumulates of one inference forward pass on an input of `input_shape`."""
    x = jax.ShapeDtypeStruct(input_shape, jnp.float32)
    closed = jax.make_jaxpr(lambda v, x: model.apply(v, x, train=False))(variables, x)
    return _jaxpr_macs(closed.jaxpr)


def model_cost(model: nn.Module, input_shape: tuple[int, ...]) -> tuple[int, int]:
    """`(parameters, MACs)` of `model` for one image batch of `input_shape` (NHWC)."""
    x = jax.ShapeDtypeStruct(input_shape, jnp.float32)
    variables = jax.eval_shape(lambda x: model.init(jax.random.PRNGKey(0), x), x)
    variables = {k: v for k, v in variables.items() if k != "intermediates"}
    return param_count(variables), count_macs(model, variables, input_shape)
