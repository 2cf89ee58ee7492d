"""Flax-only behaviour: mixed precision, recorded gates, initialisation, BatchNorm statistics."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import se_flax
from se_flax.layers import BatchNorm


@pytest.mark.parametrize("variant", list(se_flax.ATTENTION_VARIANTS))
def test_bf16_compute_keeps_fp32_params_and_gate(variant):
    m = se_flax.create_attention(variant, 32, dtype=jnp.bfloat16)
    x = jax.random.normal(jax.random.PRNGKey(0), (2, 5, 5, 32), jnp.bfloat16)
    variables = m.init(jax.random.PRNGKey(1), x)
    out, state = m.apply(variables, x, mutable=["intermediates"])
    assert out.dtype == jnp.bfloat16 and out.shape == x.shape
    assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(variables["params"]))
    gate = state["intermediates"]["gate"][0]
    assert gate.dtype == jnp.float32 and gate.shape == (2, 32)


def test_squeeze_is_float32_even_for_bf16_input():
    # 4096 equal bf16 values of 1 + 2^-7: a bf16 accumulator would drift, fp32 does not.
    x = jnp.full((1, 64, 64, 8), 1 + 2 ** -7, jnp.bfloat16)
    m = se_flax.SqueezeExcite(8, rd_channels=2, excite="linear", bias=False)
    v = m.init(jax.random.PRNGKey(0), x)
    k1 = v["params"]["fc1"]["kernel"]
    k2 = v["params"]["fc2"]["kernel"]
    _, state = m.apply(v, x, mutable=["intermediates"])
    expect = jax.nn.sigmoid(jax.nn.relu(jnp.full((1, 8), 1 + 2 ** -7) @ k1) @ k2)
    np.testing.assert_allclose(state["intermediates"]["gate"][0], expect, rtol=1e-6)


def test_zero_init_last_gives_half_gate_and_residual_one_and_a_half():
    x = jax.random.normal(jax.random.PRNGKey(0), (2, 4, 4, 16))
    plain = se_flax.SqueezeExcite(16, zero_init_last=True)
    out = plain.apply(plain.init(jax.random.PRNGKey(0), x), x)
    np.testing.assert_allclose(out, 0.5 * x, rtol=1e-6)
    residual = se_flax.SqueezeExcite(16, zero_init_last=True, residual_gate=True)
    out = residual.apply(residual.init(jax.random.PRNGKey(0), x), x)
    np.testing.assert_allclose(out, 1.5 * x, rtol=1e-6)


def test_conv_and_linear_excitation_kernel_shapes():
    x = jnp.ones((1, 3, 3, 3, 32))
    conv = se_flax.SqueezeExcite(32).init(jax.random.PRNGKey(0), x)["params"]
    lin = se_flax.SqueezeExcite(32, excite="linear").init(jax.random.PRNGKey(0), x)["params"]
    assert conv["fc1"]["kernel"].shape == (1, 1, 1, 32, 8)
    assert lin["fc1"]["kernel"].shape == (32, 8)
    grouped = se_flax.SqueezeExcite(32, groups=4, rd_ratio=1 / 4, rd_policy="floor")
    assert grouped.init(jax.random.PRNGKey(0), x)["params"]["fc1"]["kernel"].shape == \
        (1, 1, 1, 8, 8)


def test_grouped_excitation_is_block_diagonal():
    m = se_flax.SqueezeExcite(8, rd_channels=4, groups=2, bias=False, act="tanh")
    x = jax.random.normal(jax.random.PRNGKey(0), (1, 3, 3, 8))
    v = m.init(jax.random.PRNGKey(1), x)
    _, s1 = m.apply(v, x, mutable=["intermediates"])
    x2 = x.at[..., :4].set(0.0)  # zero group 0's input: group 1's gates must not change
    _, s2 = m.apply(v, x2, mutable=["intermediates"])
    g1, g2 = s1["intermediates"]["gate"][0], s2["intermediates"]["gate"][0]
    np.testing.assert_allclose(g1[:, 4:], g2[:, 4:], rtol=1e-6)
    assert not np.allclose(g1[:, :4], g2[:, :4])


def test_batchnorm_stores_unbiased_running_variance():
    x = jax.random.normal(jax.random.PRNGKey(0), (2, 3, 3, 4)) * 3 + 1
    bn = BatchNorm(use_running_average=False)
    v = bn.init(jax.random.PRNGKey(0), x)
    _, new = bn.apply(v, x, mutable=["batch_stats"])
    xs = np.asarray(x, np.float64).reshape(-1, 4)
    np.testing.assert_allclose(new["batch_stats"]["mean"], 0.1 * xs.mean(0), rtol=1e-5)
    np.testing.assert_allclose(new["batch_stats"]["var"], 0.9 + 0.1 * xs.var(0, ddof=1),
                               rtol=1e-5)


def test_batchnorm_synchronises_over_axis_name():
    x = jax.random.normal(jax.random.PRNGKey(0), (4, 6, 5, 3)) * 2 - 1
    bn = BatchNorm(use_running_average=False, axis_name="batch")
    v = bn.init(jax.random.PRNGKey(0), x[:2])
    shards = x.reshape(2, 2, 6, 5, 3)
    y, new = jax.vmap(lambda xs: bn.apply(v, xs, mutable=["batch_stats"]),
                      axis_name="batch")(shards)
    full = BatchNorm(use_running_average=False)
    y_full, new_full = full.apply(v, x, mutable=["batch_stats"])
    np.testing.assert_allclose(y.reshape(x.shape), y_full, atol=1e-5)
    np.testing.assert_allclose(new["batch_stats"]["var"][0], new_full["batch_stats"]["var"],
                               rtol=1e-6)
