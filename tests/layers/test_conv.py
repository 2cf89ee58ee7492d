"""The model convolution: 1x1 kernels and small maps as matrix products, the rest `lax`."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from se_flax.layers import conv as conv_module
from se_flax.layers.conv import conv_general_dilated
from se_spec.tolerances import EVAL_TOL, scaled_error
from se_spec.tolerances import TRAIN_TOL as GRAD_TOL


def _scaled(a, b) -> float:
    return scaled_error(a, b)[1]


def _dn(ndim: int):
    sp = "DHW"[-(ndim - 2):]
    return ("N" + sp + "C", sp + "IO", "N" + sp + "C")


def _case(shape, kernel, seed=0):
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.standard_normal(shape), jnp.float32)
    w = jnp.asarray(rng.standard_normal(kernel) / np.sqrt(kernel[-2]), jnp.float32)
    return x, w


POINTWISE = [  # (input shape, kernel shape, strides)
    ((2, 8, 8, 16), (1, 1, 16, 24), (1, 1)),
    ((2, 9, 7, 16), (1, 1, 16, 8), (2, 2)),  # odd sizes: output ceil(H / s)
    ((2, 8, 8, 4), (1, 1, 4, 4), (2, 1)),
    ((2, 3, 6, 6, 8), (1, 1, 1, 8, 12), (1, 2, 2)),  # video downsample
]


def _assert_matches_lax(x, w, strides, padding):
    """Our convolution vs `lax`: values, then input and kernel gradients; returns lax's output."""
    dn = _dn(x.ndim)
    ours = conv_general_dilated(x, w, strides, padding, dimension_numbers=dn)
    ref = lax.conv_general_dilated(x, w, strides, padding, dimension_numbers=dn)
    assert ours.shape == ref.shape
    assert _scaled(ours, ref) <= EVAL_TOL
    cot = jnp.asarray(np.random.default_rng(1).standard_normal(ref.shape), jnp.float32)

    def loss(fn, x, w):
        return jnp.vdot(fn(x, w, strides, padding, dimension_numbers=dn), cot)

    got = jax.grad(lambda x, w: loss(conv_general_dilated, x, w), (0, 1))(x, w)
    want = jax.grad(lambda x, w: loss(lax.conv_general_dilated, x, w), (0, 1))(x, w)
    for g, r, what in zip(got, want, ("input", "kernel"), strict=True):
        assert g.shape == r.shape and g.dtype == r.dtype, what
        assert _scaled(g, r) <= GRAD_TOL, what
    return ref


@pytest.mark.parametrize("shape,kernel,strides", POINTWISE)
def test_pointwise_matches_lax_forward_and_gradients(shape, kernel, strides):
    x, w = _case(shape, kernel)
    _assert_matches_lax(x, w, strides, [(0, 0)] * (x.ndim - 2))


def test_pointwise_second_order_gradient_matches_lax():
    x, w = _case((2, 4, 4, 6), (1, 1, 6, 5))
    dn, pad = _dn(4), [(0, 0), (0, 0)]

    def gnorm(fn):
        inner = jax.grad(lambda w: jnp.sum(fn(x, w, (1, 1), pad, dimension_numbers=dn) ** 3))
        return jax.grad(lambda w: jnp.sum(inner(w) ** 2))(w)

    assert _scaled(gnorm(conv_general_dilated), gnorm(lax.conv_general_dilated)) <= GRAD_TOL


def test_pointwise_is_a_matrix_product_in_the_program():
    x, w = _case((2, 4, 4, 6), (1, 1, 6, 5))
    jaxpr = jax.make_jaxpr(lambda x, w: conv_general_dilated(
        x, w, (1, 1), [(0, 0), (0, 0)], dimension_numbers=_dn(4)))(x, w)
    text = str(jaxpr)
    assert "conv_general_dilated" not in text and "dot_general" in text


@pytest.mark.parametrize("kernel,padding,groups,rhs_dilation", [
    ((3, 3, 8, 8), [(1, 1), (1, 1)], 1, (1, 1)),  # 3x3
    ((1, 1, 4, 8), [(0, 0), (0, 0)], 2, (1, 1)),  # grouped 1x1
    ((1, 1, 8, 8), [(1, 1), (1, 1)], 1, (1, 1)),  # padded 1x1
])
def test_other_convolutions_are_lax_bit_for_bit(kernel, padding, groups, rhs_dilation):
    x, w = _case((2, 6, 6, 8), kernel)
    kw = dict(dimension_numbers=_dn(4), feature_group_count=groups, rhs_dilation=rhs_dilation)
    ours = conv_general_dilated(x, w, (1, 1), padding, **kw)
    ref = lax.conv_general_dilated(x, w, (1, 1), padding, **kw)
    np.testing.assert_array_equal(np.asarray(ours), np.asarray(ref))


@pytest.mark.parametrize("side,kernel", [(4, (1, 1, 6, 5)), (2, (3, 3, 6, 5))])
def test_each_rewrite_can_be_turned_off(side, kernel):
    x, w = _case((2, side, side, 6), kernel)
    pad = [(k // 2, k // 2) for k in kernel[:2]]

    def program(**flags):
        return str(jax.make_jaxpr(lambda x, w: conv_general_dilated(
            x, w, (1, 1), pad, dimension_numbers=_dn(4), **flags))(x, w))

    assert "conv_general_dilated" not in program()
    assert "conv_general_dilated" in program(pointwise=False, small_map=False)
    which = "pointwise" if kernel[0] == 1 else "small_map"
    assert "conv_general_dilated" in program(**{which: False})


def test_pointwise_keeps_bfloat16():
    x, w = _case((2, 4, 4, 6), (1, 1, 6, 5))
    x, w = x.astype(jnp.bfloat16), w.astype(jnp.bfloat16)
    dn, pad = _dn(4), [(0, 0), (0, 0)]
    y = conv_general_dilated(x, w, (1, 1), pad, dimension_numbers=dn)
    gx, gw = jax.grad(lambda x, w: jnp.sum(conv_general_dilated(
        x, w, (1, 1), pad, dimension_numbers=dn).astype(jnp.float32)), (0, 1))(x, w)
    assert y.dtype == gx.dtype == gw.dtype == jnp.bfloat16


@pytest.mark.slow  # two whole-network gradient compiles (~45 s on 2 cores)
def test_model_gradients_match_plain_lax_convolutions():
    """A bottleneck SE network with one block per stage (1x1 convolutions with strides 1 and 2,
    a 2x2 map in the last stage): parameter gradients with and without the two rewrites.
    """
    import optax

    from se_flax import Implementation
    from se_flax.models.resnet import ResNet

    x = jnp.asarray(np.random.default_rng(0).standard_normal((2, 16, 16, 3)), jnp.float32)
    y = jnp.asarray([1, 7])

    def grads(impl):
        model = ResNet(block="bottleneck", layers=(1, 1, 1, 1), num_classes=10, stem="cifar",
                       attn="se", **impl.module_fields())
        variables = model.init(jax.random.PRNGKey(0), x[:1])

        def loss(params):
            logits, _ = model.apply({**variables, "params": params}, x, train=True,
                                    mutable=["batch_stats"])
            return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
        return jax.jit(jax.grad(loss))(variables["params"])

    with jax.default_matmul_precision("highest"):
        fast = grads(Implementation(pointwise_products=True, small_map_products=True))
        plain = grads(Implementation())
    worst = max(jax.tree.leaves(jax.tree.map(_scaled, fast, plain)))
    assert worst <= GRAD_TOL


SMALL_MAPS = [  # (input shape, kernel shape, padding): maps of at most SMALL_MAP a side
    ((2, 1, 1, 8), (3, 3, 8, 6), [(1, 1), (1, 1)]),
    ((2, 2, 2, 8), (3, 3, 8, 6), [(1, 1), (1, 1)]),
    ((2, 1, 2, 8), (3, 3, 8, 6), [(1, 1), (1, 1)]),
    ((2, 2, 2, 8), (3, 3, 8, 6), [(0, 2), (1, 0)]),  # asymmetric padding
    ((2, 2, 2, 8), (2, 3, 8, 6), [(0, 0), (1, 1)]),  # non-square window, valid rows
    ((2, 2, 2, 2, 8), (3, 3, 3, 8, 6), [(1, 1)] * 3),  # video
]


@pytest.mark.parametrize("shape,kernel,padding", SMALL_MAPS)
def test_small_map_matches_lax_forward_and_gradients(shape, kernel, padding):
    assert max(shape[1:-1]) <= conv_module.SMALL_MAP  # the case takes the patch product
    x, w = _case(shape, kernel)
    strides = (1,) * (x.ndim - 2)
    ref = _assert_matches_lax(x, w, strides, padding)
    # No custom VJP here: forward mode works too.
    _, tangent = jax.jvp(lambda x: conv_general_dilated(x, w, strides, padding,
                                                        dimension_numbers=_dn(x.ndim)),
                         (x,), (x,))
    assert _scaled(tangent, ref) <= EVAL_TOL  # linear in x


def test_small_map_is_a_patch_product_and_larger_maps_stay_lax():
    def program(side):
        x, w = _case((2, side, side, 8), (3, 3, 8, 8))
        return str(jax.make_jaxpr(lambda x, w: conv_general_dilated(
            x, w, (1, 1), [(1, 1), (1, 1)], dimension_numbers=_dn(4)))(x, w))

    small, large = program(conv_module.SMALL_MAP), program(conv_module.SMALL_MAP + 1)
    assert "conv_general_dilated" not in small and "dot_general" in small
    assert "conv_general_dilated" in large
