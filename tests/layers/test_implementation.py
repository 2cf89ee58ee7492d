"""Implementation choices (`impl=`): explicit, per backend, the same numbers, jvp with plain ops."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from se_flax import Implementation, create_model
from se_flax.implementation import IMPLEMENTATIONS, resolve_implementation
from se_flax.layers.boundary import fusion_boundary
from se_flax.layers.norm import BatchNorm
from se_flax.models.resnet import ResNet
from se_spec.tolerances import EVAL_TOL, scaled_error

CPU, XLA = IMPLEMENTATIONS["cpu"], IMPLEMENTATIONS["xla"]
cpu_only = pytest.mark.skipif(jax.default_backend() != "cpu", reason="CPU scheduler options")


def test_auto_applies_the_cpu_rewrites_on_cpu_only():
    assert resolve_implementation("auto", backend="cpu") == CPU
    for backend in ("gpu", "cuda", "rocm", "tpu"):
        assert resolve_implementation("auto", backend=backend) == XLA
    assert XLA == Implementation() and not any(dataclasses.astuple(XLA))
    assert all(dataclasses.astuple(CPU))
    mine = Implementation(fusion_boundary=True)
    assert resolve_implementation(mine, backend="tpu") is mine


def test_unknown_impl_names_the_option_and_the_choices():
    with pytest.raises(ValueError, match=r"impl='fast' is not supported; expected one of "
                                         r"'auto', 'xla', 'cpu' or an Implementation"):
        create_model("se_resnet18", impl="fast")


def test_model_fields_follow_the_choice():
    plain = create_model("se_resnet18", impl="xla")
    assert plain.residual_boundary is None and plain.norm is BatchNorm
    rewritten = create_model("se_resnet18", impl="cpu")
    assert rewritten.residual_boundary is fusion_boundary
    assert rewritten.norm(name="bn").custom_vjp
    assert rewritten == create_model("se_resnet18", impl="cpu")  # one module per choice


def _train_program(impl, x):
    """A two-stage bottleneck SE network in training mode: `(model, variables, loss)`."""
    model = ResNet(block="bottleneck", layers=(1, 1), num_classes=4, stem="cifar", attn="se",
                   **resolve_implementation(impl).module_fields())
    variables = model.init(jax.random.PRNGKey(0), x)

    def loss(params):
        out, _ = model.apply({**variables, "params": params}, x, train=True,
                             mutable=["batch_stats"])
        return jnp.sum(out ** 2)

    return model, variables, loss


def test_plain_ops_have_no_rewrite_in_the_program():
    x = jnp.ones((2, 8, 8, 3))
    text = {}
    for name in ("xla", "cpu"):
        _, variables, loss = _train_program(name, x)
        text[name] = str(jax.make_jaxpr(loss)(variables["params"]))
    rewrites = ("_matmul_channels", "_normalize", "_divide_by_runtime_one")
    assert not any(name in text["xla"] for name in rewrites)
    assert all(name in text["cpu"] for name in rewrites)
    # 1x1 convolutions: products under "cpu", convolutions under "xla".
    assert text["xla"].count("conv_general_dilated") > text["cpu"].count("conv_general_dilated")


def test_forward_mode_through_a_training_model_works_with_plain_ops():
    x = jnp.asarray(np.random.default_rng(0).standard_normal((2, 8, 8, 3)), jnp.float32)
    _, variables, loss = _train_program("xla", x)
    params = variables["params"]
    tangent = jax.tree.map(jnp.ones_like, params)
    value, derivative = jax.jit(lambda p, t: jax.jvp(loss, (p,), (t,)))(params, tangent)
    # The directional derivative equals the gradient's projection on the tangent.
    grad = jax.jit(jax.grad(loss))(params)
    projected = sum(jnp.vdot(g, t) for g, t in zip(jax.tree.leaves(grad),
                                                    jax.tree.leaves(tangent), strict=True))
    assert np.isfinite(value)
    np.testing.assert_allclose(derivative, projected, rtol=1e-3)
    _, cpu_variables, cpu_loss = _train_program("cpu", x)
    with pytest.raises(TypeError, match="custom_vjp"):
        jax.jit(lambda p, t: jax.jvp(cpu_loss, (p,), (t,)))(cpu_variables["params"], tangent)


def test_every_choice_computes_the_same_logits():
    x = jnp.asarray(np.random.default_rng(1).standard_normal((2, 16, 16, 3)), jnp.float32)
    models = {name: ResNet(block="basic", layers=(1, 1, 1, 1), num_classes=5, stem="cifar",
                           attn="se", **impl.module_fields())
              for name, impl in IMPLEMENTATIONS.items()}
    variables = models["xla"].init(jax.random.PRNGKey(0), x)
    with jax.default_matmul_precision("highest"):
        logits = {name: jax.jit(m.apply)(variables, x) for name, m in models.items()}
    assert scaled_error(logits["cpu"], logits["xla"])[1] <= EVAL_TOL


def test_compiler_options_are_for_cpu_train_steps_only():
    assert CPU.compiler_options("cpu") == {
        "xla_cpu_scheduler_type": "CPU_SCHEDULER_TYPE_MEMORY_OPTIMIZED"}
    assert CPU.compiler_options("gpu") == {} and XLA.compiler_options("cpu") == {}


def _train_temp_bytes(impl: Implementation) -> int:
    model = ResNet(layers=(2, 2), block="bottleneck", num_classes=10, stem="cifar",
                   **impl.module_fields())
    x, y = jnp.zeros((8, 16, 16, 3)), jnp.zeros((8,), jnp.int32)
    variables = model.init(jax.random.PRNGKey(0), x[:1])

    def loss(params):
        logits, _ = model.apply({"params": params, "batch_stats": variables["batch_stats"]}, x,
                                train=True, mutable=["batch_stats"])
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

    compiled = jax.jit(jax.grad(loss), compiler_options=impl.compiler_options() or None).lower(
        variables["params"]).compile()
    return compiled.memory_analysis().temp_size_in_bytes


@cpu_only
def test_scheduler_and_batchnorm_vjp_shrink_the_train_step_temporaries():
    # Seen: 27.3 MB with both, 40.4 MB with XLA's scheduler, 38.3 MB with autodiff BatchNorm.
    both = _train_temp_bytes(CPU)
    xla_scheduler = _train_temp_bytes(dataclasses.replace(CPU, memory_scheduler=False))
    autodiff_bn = _train_temp_bytes(dataclasses.replace(CPU, batchnorm_vjp=False))
    assert both < 0.8 * xla_scheduler, (both, xla_scheduler)
    assert both < 0.8 * autodiff_bn, (both, autodiff_bn)
