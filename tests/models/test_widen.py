"""`se_flax.widen_se`: reduction 16 → 8 keeps the network's outputs; the new units can learn."""

import jax
import jax.numpy as jnp
import pytest
from flax import traverse_util

import se_flax
from se_spec.tolerances import EVAL_TOL, scaled_error

OPTS = {"num_classes": 5, "stem": "cifar"}


@pytest.fixture(scope="module")
def setup():
    narrow = se_flax.create_model("se_resnet18", **OPTS)
    wide = se_flax.create_model("se_resnet18", **OPTS, attn_kwargs={"rd_ratio": 1 / 8})
    x = jax.random.normal(jax.random.key(1), (4, 16, 16, 3))
    variables = narrow.init(jax.random.key(0), x, train=False)
    # non-trivial BatchNorm statistics and SE weights: one training-mode pass
    _, updates = narrow.apply(variables, x, train=True, mutable=["batch_stats"])
    variables = {**variables, **updates}
    return narrow, wide, x, variables


def test_widened_network_computes_the_same_logits(setup):
    narrow, wide, x, variables = setup
    change = se_flax.widen_se(variables, narrow, wide)
    assert change.exact and change.resized >= 4, change.report()
    ours = wide.apply(change.weights, x, train=False)
    _, rel = scaled_error(ours, narrow.apply(variables, x, train=False))
    assert rel <= EVAL_TOL, rel
    fc1 = change.weights["params"]["layer4_1"]["se"]["fc1"]["kernel"]
    assert fc1.shape[-1] == 64  # 512 / 8


def test_new_units_receive_gradients(setup):
    narrow, wide, x, variables = setup
    change = se_flax.widen_se(variables, narrow, wide)

    def loss(params):
        logits, _ = wide.apply({**change.weights, "params": params}, x, train=True,
                               mutable=["batch_stats"])
        return jnp.mean(logits ** 2)

    grads = jax.jit(jax.grad(loss))(change.weights["params"])
    old = variables["params"]["layer4_1"]["se"]["fc1"]["kernel"].shape[-1]
    g_out = grads["layer4_1"]["se"]["fc2"]["kernel"][..., old:, :]
    assert float(jnp.max(jnp.abs(g_out))) > 0, "the new units' outgoing weights get no gradient"


def test_narrowing_reports_what_it_dropped(setup):
    narrow, wide, x, variables = setup
    back = se_flax.widen_se(se_flax.widen_se(variables, narrow, wide).weights, wide, narrow)
    assert back.exact
    _, rel = scaled_error(narrow.apply(back.weights, x, train=False),
                          narrow.apply(variables, x, train=False))
    assert rel <= EVAL_TOL
    trained = wide.init(jax.random.key(3), x, train=False)  # every unit has outgoing weights
    lossy = se_flax.widen_se(trained, wide, narrow)
    assert not lossy.exact and "dropped" in lossy.report() and "layer4_1/se" in lossy.report()


def test_other_differences_are_refused_naming_the_key(setup):
    narrow, _, x, variables = setup
    other = se_flax.create_model("se_resnet18", num_classes=7, stem="cifar")
    with pytest.raises(ValueError, match="fc/kernel is .* only SE excitation widths may differ"):
        se_flax.widen_se(variables, narrow, other)
    flat = traverse_util.flatten_dict(variables)
    del flat[("params", "fc", "bias")]
    with pytest.raises(ValueError, match="params/fc/bias is missing, from_model expects"):
        se_flax.widen_se(traverse_util.unflatten_dict(flat), narrow, narrow)
