"""BatchNorm's hand-written VJP: the gradients of the formula, stored input only, replicas too."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from se_flax.layers.norm_vjp import batch_norm_train, reference_batch_norm

EPS = 1e-5


def _inputs(shape, seed=0, shift=5.0):
    keys = jax.random.split(jax.random.PRNGKey(seed), 4)
    c = shape[-1]
    x = jax.random.normal(keys[0], shape) * 3.0 + shift  # a mean well away from 0
    scale = jax.random.normal(keys[1], (c,)) + 1.0
    bias = jax.random.normal(keys[2], (c,))
    weight = jax.random.normal(keys[3], shape)  # loss = sum(weight * y)
    return x, scale, bias, weight


def _grads(fn, x, scale, bias, weight):
    def loss(x, scale, bias):
        return jnp.sum(weight * fn(x, scale, bias, EPS)[0])
    return jax.grad(loss, argnums=(0, 1, 2))(x, scale, bias)


def _rel_err(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return np.max(np.abs(a - b)) / max(1.0, np.max(np.abs(b)))


@pytest.mark.parametrize("shape", [(4, 5, 5, 8), (2, 3, 4, 4, 6), (64, 3)])
def test_gradients_match_the_formula_in_float64(shape):
    x, scale, bias, weight = _inputs(shape)
    ours = _grads(batch_norm_train, x, scale, bias, weight)
    autodiff = _grads(reference_batch_norm, x, scale, bias, weight)
    with jax.enable_x64(True):
        exact = _grads(reference_batch_norm, *(jnp.asarray(np.asarray(a), jnp.float64)
                                               for a in (x, scale, bias, weight)))
    for name, o, a, e in zip(("dx", "dscale", "dbias"), ours, autodiff, exact, strict=True):
        assert o.dtype == jnp.float32 and o.shape == a.shape
        err, err_autodiff = _rel_err(o, e), _rel_err(a, e)
        assert err < 1e-5, (name, err)
        assert err <= 4 * err_autodiff + 1e-7, (name, err, err_autodiff)


def test_forward_is_the_formula_bit_for_bit():
    x, scale, bias, _ = _inputs((4, 6, 6, 8))
    y, mean, var, count = jax.jit(batch_norm_train, static_argnums=3)(x, scale, bias, EPS)
    y_ref, mean_ref, var_ref, count_ref = jax.jit(reference_batch_norm, static_argnums=3)(
        x, scale, bias, EPS)
    for a, b in ((y, y_ref), (mean, mean_ref), (var, var_ref)):
        np.testing.assert_array_equal(a, b)
    assert count == count_ref == 4 * 6 * 6


def test_synchronised_gradients_equal_the_full_batch():
    x, scale, bias, weight = _inputs((8, 4, 4, 5), seed=1)
    shards = x.reshape(2, 4, 4, 4, 5)
    w_shards = weight.reshape(2, 4, 4, 4, 5)

    def shard_loss(xs, ws, scale, bias):
        return jnp.sum(ws * batch_norm_train(xs, scale, bias, EPS, axis_name="batch")[0])

    dx, dscale, dbias = jax.vmap(jax.grad(shard_loss, argnums=(0, 2, 3)),
                                 in_axes=(0, 0, None, None), axis_name="batch")(
        shards, w_shards, scale, bias)
    full = _grads(reference_batch_norm, x, scale, bias, weight)
    # fp32 both ways, summed in a different order (per shard, then across): rounding only.
    np.testing.assert_allclose(dx.reshape(x.shape), full[0], rtol=1e-5, atol=1e-6)
    # Parameter gradients are each replica's own share: they add up to the full batch's.
    np.testing.assert_allclose(dscale.sum(0), full[1], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(dbias.sum(0), full[2], rtol=1e-5, atol=1e-5)
    assert not np.allclose(dscale[0], dscale[1])


@pytest.mark.parametrize("custom_vjp", [True, False])
def test_batch_statistics_carry_no_gradient(custom_vjp):
    x, scale, bias, _ = _inputs((4, 3, 3, 4))
    for index in (1, 2):
        g = jax.grad(lambda x, i=index: jnp.sum(
            batch_norm_train(x, scale, bias, EPS, None, custom_vjp)[i]))(x)
        np.testing.assert_array_equal(g, 0.0)


def test_forward_mode_needs_autodiff():
    x, scale, bias, _ = _inputs((4, 3, 3, 4))

    def jvp(custom_vjp):
        return jax.jvp(lambda x: batch_norm_train(x, scale, bias, EPS, None, custom_vjp)[0],
                       (x,), (jnp.ones_like(x),))

    with pytest.raises(TypeError, match="custom_vjp"):
        jvp(True)
    y, tangent = jvp(False)
    # A constant shift normalises away: 0 up to fp32 rounding of values around |x| ~ 10.
    np.testing.assert_allclose(tangent, 0.0, atol=1e-4)
