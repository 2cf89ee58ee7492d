"""The CPU fusion boundary on the residual stream: same values, same derivatives, less recompute."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from se_flax.layers.boundary import fusion_boundary
from se_flax.models.resnet import ResNet


def _bits(a: jax.Array) -> np.ndarray:
    a = np.asarray(a)
    return a.view(np.uint16 if a.dtype.itemsize == 2 else np.uint32)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_values_are_bit_for_bit_the_input(dtype):
    special = [np.nan, np.inf, -np.inf, -0.0, 0.0, 1.5e-38, -3.5, 7.25e30, 1.0]
    rng = np.random.default_rng(0)
    x = jnp.asarray(np.concatenate([special, rng.standard_normal(55)]).reshape(4, 2, 8),
                    dtype)
    y = jax.jit(fusion_boundary)(x)
    assert y.dtype == x.dtype and y.shape == x.shape
    np.testing.assert_array_equal(_bits(y), _bits(x))


def test_subnormals_flush_to_zero_like_the_residual_addition_before_it():
    # XLA's CPU runtime flushes subnormals in arithmetic: the addition that produces a block
    # output already turns them into zeros, so the boundary sees none there.
    tiny = jnp.full((16,), 1e-40, jnp.float32)
    added = jax.jit(lambda a, b: jax.nn.relu(a + b))(tiny, jnp.zeros(16, jnp.float32))
    np.testing.assert_array_equal(added, 0.0)
    np.testing.assert_array_equal(jax.jit(fusion_boundary)(tiny), 0.0)


def test_derivatives_are_the_identity():
    x = jnp.linspace(-2.0, 3.0, 24, dtype=jnp.float32).reshape(2, 3, 4)
    w = jnp.arange(24, dtype=jnp.float32).reshape(2, 3, 4) - 7.0
    grad = jax.jit(jax.grad(lambda v: jnp.sum(fusion_boundary(v) * w)))(x)
    np.testing.assert_array_equal(grad, w)
    _, tangent = jax.jvp(fusion_boundary, (x,), (w,))
    np.testing.assert_array_equal(tangent, w)


def test_program_has_the_division_for_floats_only():
    x = jnp.ones((2, 4, 4, 8))
    assert "divide" in jax.jit(fusion_boundary).lower(x).as_text()
    ints = jnp.ones((3,), jnp.int32)
    assert "divide" not in jax.jit(fusion_boundary).lower(ints).as_text()


def _stage(blocks: int, boundary) -> tuple[ResNet, dict, jax.Array]:
    model = ResNet(block="basic", layers=(blocks,), num_classes=3, stem="cifar",
                   residual_boundary=boundary)
    x = jnp.asarray(np.random.default_rng(1).standard_normal((2, 8, 8, 3)), jnp.float32)
    return model, model.init(jax.random.PRNGKey(0), x), x


def _train_grad(model: ResNet, x: jax.Array):
    def loss(params, stats):
        out, _ = model.apply({"params": params, "batch_stats": stats}, x, train=True,
                             mutable=["batch_stats"])
        return jnp.sum(out ** 2)

    return jax.jit(jax.grad(loss))


def _widest_loop_fusion(compiled_text: str) -> int:
    """Most operands of any element-wise (`kLoop`) fusion in the entry computation."""
    entry = compiled_text[compiled_text.index("ENTRY"):]
    return max(len(re.findall(r"%[\w.\-]+", line.split("fusion(", 1)[1].split(")", 1)[0]))
               for line in entry.splitlines() if "kind=kLoop" in line)


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="the boundary is for XLA's CPU fusion")
def test_stage_gradients_unchanged_and_blocks_not_recomputed():
    model, variables, x = _stage(6, fusion_boundary)
    args = (variables["params"], variables["batch_stats"])
    with_boundary = _train_grad(model, x)
    widest_on = _widest_loop_fusion(with_boundary.lower(*args).compile().as_text())
    grads_on = with_boundary(*args)
    without = _train_grad(model.clone(residual_boundary=None), x)
    widest_off = _widest_loop_fusion(without.lower(*args).compile().as_text())
    grads_off = without(*args)
    for a, b in zip(jax.tree.leaves(grads_on), jax.tree.leaves(grads_off), strict=True):
        # Same math; only the fusion differs, which may let LLVM contract a different
        # multiply-add into an FMA (one rounding less). Bit for bit on the x86 host tried.
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    # Without the boundary the last block's fusions recompute all six blocks of the stage.
    assert widest_on < widest_off, (widest_on, widest_off)
    assert widest_on <= 16, widest_on
