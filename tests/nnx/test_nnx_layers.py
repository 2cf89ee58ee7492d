"""NNX attention layers and BatchNorm against their Linen twins, on the same weights.

Expected bit for bit: the NNX layers run the same JAX operations in the same order (same
float32 squeeze, excitation einsum, gate, BatchNorm functions), so the asserts require exact
equality of outputs, gates, running statistics and gradients.
"""

import warnings

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from nnx_twins import differences, linen_twin, randomize_batch_stats

import se_flax
import se_flax.nnx as snnx
from se_flax.convert.naming import flatten
from se_flax.layers import BatchNorm as LinenBatchNorm
from se_flax.nnx.layer_norm import LayerNorm


def _x(shape, seed=0):
    return jnp.asarray(np.random.default_rng(seed).standard_normal(shape), jnp.float32)


def _exact(diffs):
    assert diffs and max(diffs.values()) == 0.0, {k: v for k, v in diffs.items() if v}


def _pair(variant, channels, rank, **kwargs):
    """A Linen layer, its variables (random running statistics) and the NNX twin holding them."""
    x = _x((2,) + (5,) * rank + (channels,))
    linen = se_flax.create_attention(variant, channels, **kwargs)
    variables = randomize_batch_stats(linen.init(jax.random.PRNGKey(0), x))
    model = snnx.create_attention(variant, channels, spatial_rank=rank, rngs=nnx.Rngs(1),
                                  **kwargs)
    return x, linen, variables, snnx.linen_to_nnx(model, variables)


def _linen_apply(linen, variables, x, train):
    y, state = linen.apply(variables, x, train=train,
                           mutable=["intermediates", "batch_stats"] if train else
                           ["intermediates"])
    return y, flatten(dict(state["intermediates"])), state.get("batch_stats")


def _nnx_apply(model, x, train):
    y, caps = nnx.capture(model, nnx.Intermediate)(x, train=train)
    gates = {tuple(map(str, p)): v.get_value() for p, v in nnx.to_flat_state(caps)}
    return y, gates, snnx.nnx_to_linen(model).get("batch_stats")


SLOW_CASES = [
    ("se", 1, {}), ("se", 3, {}), ("se_article", 3, {}), ("cbam", 3, {}),
    ("se", 2, {"rd_channels": 6, "act": "gelu", "gate": "hard_sigmoid", "bias": False}),
    ("effective_se", 2, {"add_maxpool": True, "excite": "linear"}),
    ("eca", 1, {"kernel_size": 5}),
]
CASES = [(v, 2, {}) for v in se_flax.ATTENTION_VARIANTS] + [
    pytest.param(*case, marks=pytest.mark.slow) for case in SLOW_CASES]


@pytest.mark.parametrize("variant,rank,kwargs", CASES)
def test_outputs_gates_and_statistics_match_linen(variant, rank, kwargs):
    x, linen, variables, model = _pair(variant, 32, rank, **kwargs)
    for train in (False, True):
        y_ref, gates_ref, stats_ref = _linen_apply(linen, variables, x, train)
        y, gates, stats = _nnx_apply(model, x, train)
        _exact(differences({("y",): y}, {("y",): y_ref}))
        _exact(differences(gates, gates_ref))
        if stats_ref is not None:
            _exact(differences(stats, stats_ref))


@pytest.mark.parametrize("variant", ["se", "efficient_se", "mobile_se", "cbam", "eca"])
def test_gradients_match_linen(variant):
    x, linen, variables, model = _pair(variant, 32, 2)
    _exact_gradients(linen, variables, model, x, _x(x.shape, 2))


def _exact_gradients(linen, variables, model, x, w):
    """Training-mode gradients of `sum(y * w)` for the parameters and the input: exact."""
    def linen_loss(params, x):
        y, _ = linen.apply({**variables, "params": params}, x, train=True,
                           mutable=["batch_stats"])
        return jnp.sum(y * w)

    graphdef, params, rest = nnx.split(model, nnx.Param, ...)

    def nnx_loss(both, x):
        return jnp.sum(nnx.merge(graphdef, *both)(x, train=True) * w)

    (g_ref, dx_ref) = jax.jit(jax.grad(linen_loss, argnums=(0, 1)))(variables["params"], x)
    ((g_params, _), dx) = jax.jit(jax.grad(nnx_loss, argnums=(0, 1)))((params, rest), x)
    grads = snnx.nnx_to_linen(nnx.merge(graphdef, g_params, rest))["params"]
    _exact(differences(grads, g_ref))
    _exact(differences({("x",): dx}, {("x",): dx_ref}))


def test_batchnorm_stores_pytorchs_unbiased_running_variance_like_linen():
    x = _x((4, 3, 3, 8)) * 2 + 1
    linen = LinenBatchNorm(use_running_average=False)
    variables = linen.init(jax.random.PRNGKey(0), x)
    y_ref, state = linen.apply(variables, x, mutable=["batch_stats"])
    norm = snnx.BatchNorm(8, rngs=nnx.Rngs(0))
    y = norm(x)
    _exact(differences({("y",): y}, {("y",): y_ref}))
    n = x.size // 8
    expected = 0.9 + 0.1 * np.var(np.asarray(x, np.float64), axis=(0, 1, 2)) * n / (n - 1)
    # float32 statistics against a float64 reference: float32 rounding only (Linen: bit-equal)
    np.testing.assert_allclose(norm.var[...], expected, rtol=1e-5)
    _exact(differences({("var",): norm.var[...], ("mean",): norm.mean[...]},
                       {("var",): state["batch_stats"]["var"],
                        ("mean",): state["batch_stats"]["mean"]}))


def test_batchnorm_synchronises_statistics_over_axis_name_like_linen():
    x = _x((2, 3, 4, 4, 8))  # 2 replicas of a batch of 3
    linen = LinenBatchNorm(use_running_average=False, axis_name="batch")
    variables = linen.init(jax.random.PRNGKey(0), x[0])
    y_ref, state = jax.vmap(lambda v: linen.apply(variables, v, mutable=["batch_stats"]),
                            axis_name="batch")(x)
    graphdef, st = nnx.split(snnx.BatchNorm(8, axis_name="batch", rngs=nnx.Rngs(0)))

    def step(st, v):
        norm = nnx.merge(graphdef, st)
        return norm(v), nnx.state(norm, nnx.BatchStat)

    y, stats = jax.vmap(step, in_axes=(None, 0), axis_name="batch")(st, x)
    _exact(differences({("y",): y}, {("y",): y_ref}))
    _exact(differences({("mean",): stats["mean"][...], ("var",): stats["var"][...]},
                       {("mean",): state["batch_stats"]["mean"],
                        ("var",): state["batch_stats"]["var"]}))
    # synchronised: every replica holds the statistics of all six examples
    np.testing.assert_array_equal(stats["mean"][...][0], stats["mean"][...][1])


def test_a_plain_call_records_nothing_and_warns_nothing():
    se = snnx.create_attention("cbam", 16, rngs=nnx.Rngs(0))
    before = jax.tree.structure(nnx.state(se))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        se(jnp.ones((2, 4, 4, 16)))
    assert jax.tree.structure(nnx.state(se)) == before
    _, caps = nnx.capture(se, nnx.Intermediate)(jnp.ones((2, 4, 4, 16)))
    assert caps["gate"].get_value()[0].shape == (2, 16)
    assert caps["spatial_gate"].get_value()[0].shape == (2, 4, 4, 1)


def test_bf16_compute_keeps_fp32_params_and_gate():
    se = snnx.create_attention("se", 32, dtype=jnp.bfloat16, rngs=nnx.Rngs(0))
    x = jnp.ones((2, 5, 5, 32), jnp.bfloat16)
    y, caps = nnx.capture(se, nnx.Intermediate)(x)
    assert y.dtype == jnp.bfloat16 and caps["gate"].get_value()[0].dtype == jnp.float32
    assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(nnx.state(se, nnx.Param)))


@pytest.mark.parametrize("variant,kwargs,shape", [
    ("se", {"groups": 16}, (1, 4, 4, 64)),
    ("se", {"rd_policy": "round"}, (1, 4, 4, 64)),
    ("se", {"groups": 2, "excite": "linear"}, (1, 4, 4, 64)),
    ("se", {}, (1, 4, 4, 32)),
    ("se", {"spatial_dims": 3}, (1, 4, 4, 64)),
    ("eca", {"kernel_size": 4}, (1, 4, 4, 64)),
    ("cbam", {"spatial_kernel_size": 0}, (1, 4, 4, 64)),
    ("effective_se", {"excite": "dense"}, (1, 4, 4, 64)),
    ("mobile_se", {"act": "swish"}, (1, 4, 4, 64)),
])
def test_bad_options_and_inputs_raise_the_linen_error(variant, kwargs, shape):
    x = jnp.ones(shape)
    with pytest.raises(ValueError) as ref:
        se_flax.create_attention(variant, 64, **kwargs).init(jax.random.PRNGKey(0), x)
    with pytest.raises(ValueError) as ours:
        snnx.create_attention(variant, 64, rngs=nnx.Rngs(0), **kwargs)(x)
    assert str(ours.value) == str(ref.value)


SK_CASES = [  # (in_channels, features, options, impl)
    (16, 16, {"rd_ratio": 1 / 8, "rd_divisor": 16}, "xla"),
    (16, 32, {"stride": 2, "groups": 4, "dilations": (1, 2, 3), "split_input": False,
              "rd_channels": 8}, "cpu"),
]


def _sk_pair(in_channels, features, options, impl):
    """A Linen `SelectiveKernel`, its variables and the NNX twin holding them."""
    x = _x((2, 6, 6, in_channels))
    implementation = se_flax.implementation.resolve_implementation(impl)
    fields = implementation.module_fields()
    linen = se_flax.SelectiveKernel(features, conv=fields["conv"], norm=fields["norm"], **options)
    variables = linen_twin(linen, x)  # NumPy draws: no init program to compile
    model = nnx.eval_shape(lambda: snnx.SelectiveKernel(in_channels, features,
                                                        impl=implementation, rngs=nnx.Rngs(1),
                                                        **options))
    return x, linen, variables, snnx.linen_to_nnx(model, variables)


@pytest.mark.parametrize("in_channels,features,options,impl", SK_CASES)
def test_selective_kernel_matches_linen(in_channels, features, options, impl):
    """Outputs, selection weights, running statistics and gradients: exact."""
    x, linen, variables, model = _sk_pair(in_channels, features, options, impl)
    for train in (False, True):
        y_ref, sel_ref, stats_ref = _linen_apply(linen, variables, x, train)
        y, sel, stats = _nnx_apply(nnx.clone(model), x, train)
        assert set(sel) == {("selection",)} and sel[("selection",)][0].shape[1] == len(
            options.get("dilations", (1, 2)))
        _exact(differences({("y",): y}, {("y",): y_ref}))
        _exact(differences(sel, sel_ref))
        _exact(differences(stats, variables["batch_stats"] if stats_ref is None else stats_ref))
    _exact_gradients(linen, variables, model, x, _x(y_ref.shape, 2))


@pytest.mark.parametrize("in_channels,features,options", [
    (15, 16, {}),
    (16, 16, {"groups": 3}),
    (16, 16, {"dilations": (1,)}),
    (16, 0, {}),
    (16, 16, {"rd_ratio": 2}),
])
def test_selective_kernel_bad_options_raise_the_linen_error(in_channels, features, options):
    x = jnp.ones((1, 4, 4, in_channels))
    with pytest.raises(ValueError) as ref:
        jax.eval_shape(se_flax.SelectiveKernel(features, **options).init,
                       jax.random.PRNGKey(0), x)
    with pytest.raises(ValueError) as ours:
        nnx.eval_shape(lambda: snnx.SelectiveKernel(in_channels, features, rngs=nnx.Rngs(0),
                                                    **options)(x))
    assert str(ours.value) == str(ref.value)


def test_selective_kernel_refuses_an_input_of_another_width():
    sk = nnx.eval_shape(lambda: snnx.SelectiveKernel(16, 16, rngs=nnx.Rngs(0)))
    with pytest.raises(ValueError, match="split_input=True with in_channels=15 and 2 paths"):
        nnx.eval_shape(lambda m: m(jnp.ones((1, 4, 4, 15))), sk)
    with pytest.raises(ValueError, match=r"input has 8 channels \(shape \(1, 4, 4, 8\)\); "
                       "the module was built for in_channels=16"):
        nnx.eval_shape(lambda m: m(jnp.ones((1, 4, 4, 8))), sk)


@pytest.mark.parametrize("dtype", [None, jnp.bfloat16])
@pytest.mark.parametrize("x_dtype", [jnp.float32, jnp.bfloat16])
def test_layer_norm_is_linens_program(dtype, x_dtype):
    """ViT's LayerNorm: the jaxpr of `nn.LayerNorm(use_fast_variance=False)`, so equal outputs.

    (`nnx.LayerNorm` is not: it rounds the float32 scale and bias to a bfloat16 `dtype`.)
    """
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((2, 5, 8)), x_dtype)
    params = {"scale": jnp.asarray(1 + 0.1 * rng.standard_normal(8), jnp.float32),
              "bias": jnp.asarray(0.1 * rng.standard_normal(8), jnp.float32)}
    linen = nn.LayerNorm(epsilon=1e-6, use_fast_variance=False, dtype=dtype)
    graphdef, state = nnx.split(LayerNorm(8, epsilon=1e-6, dtype=dtype))
    state = nnx.State({k: v.replace(params[k]) for k, v in state.items()})
    ours = jax.make_jaxpr(lambda s, x: nnx.merge(graphdef, s)(x))(state, x)
    ref = jax.make_jaxpr(lambda p, x: linen.apply({"params": p}, x))(params, x)
    assert str(ours) == str(ref)
    y, y_ref = nnx.merge(graphdef, state)(x), linen.apply({"params": params}, x)
    assert y.dtype == y_ref.dtype and np.array_equal(np.asarray(y), np.asarray(y_ref))
