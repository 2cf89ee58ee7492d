"""`FunctionalModel`: an NNX model behind Linen's `init`/`apply`, on Linen-layout variables.

CBAM is the test subject: it has parameters, running statistics (its spatial BatchNorm) and two
recorded gates, and a Linen twin to compare with; the NNX layer runs the same operations, so
the results must be equal bit for bit.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from nnx_twins import differences, randomize_batch_stats

import se_flax
import se_flax.nnx as snnx
from se_flax.convert.errors import ConversionError
from se_flax.convert.naming import flatten

CHANNELS = 8


def _setup():
    x = jnp.asarray(np.random.default_rng(0).standard_normal((2, 5, 5, CHANNELS)), jnp.float32)
    linen = se_flax.create_attention("cbam", CHANNELS)
    variables = randomize_batch_stats(linen.init(jax.random.PRNGKey(0), x))
    view = snnx.FunctionalModel(
        lambda rngs: snnx.create_attention("cbam", CHANNELS, spatial_rank=2, rngs=rngs))
    return x, linen, variables, view


def _exact(ours, ref):
    diffs = differences(flatten(ours), flatten(ref))
    assert diffs and max(diffs.values()) == 0.0, {k: v for k, v in diffs.items() if v}


@pytest.mark.parametrize("train", [False, True])
def test_apply_returns_what_linen_returns(train):
    """Outputs, updated statistics and recorded gates, in Linen's layout, bit for bit."""
    x, linen, variables, view = _setup()
    mutable = ["batch_stats", "intermediates"] if train else ["intermediates"]
    run = jax.jit(lambda m, v, x: m.apply(v, x, train=train, mutable=mutable),
                  static_argnums=0)
    y_ref, state_ref = run(linen, variables, x)
    y, state = run(view, variables, x)
    _exact({"y": y}, {"y": y_ref})
    assert set(state) == set(state_ref)
    _exact(dict(state), dict(state_ref))  # gates are 1-tuples under the same paths
    plain = jax.jit(lambda m, v, x: m.apply(v, x), static_argnums=0)  # eval, nothing mutable
    _exact({"y": plain(view, variables, x)}, {"y": plain(linen, variables, x)})


def test_init_draws_variables_of_the_linen_layout():
    _, _, variables, view = _setup()
    ours = view.init(jax.random.PRNGKey(3))
    assert jax.tree.map(jnp.shape, ours) == jax.tree.map(jnp.shape, variables)
    kernel = ("params", "channel", "fc1", "kernel")
    assert np.array_equal(flatten(view.init(jax.random.PRNGKey(3)))[kernel], flatten(ours)[kernel])
    assert not np.array_equal(flatten(view.init(jax.random.PRNGKey(4)))[kernel],
                              flatten(ours)[kernel])


def test_bad_variables_and_collections_are_named():
    x, _, variables, view = _setup()
    params = dict(variables["params"])
    params["channel"] = {"fc2": params["channel"]["fc2"]}
    with pytest.raises(ConversionError, match=r"missing variable params/channel/fc1/kernel"):
        view.apply({**variables, "params": params}, x)
    with pytest.raises(ValueError, match=r"mutable=\['cache'\]: an NNX model updates only "
                                         r"'batch_stats'"):
        view.apply(variables, x, mutable=["cache"])


def test_a_bad_model_name_or_option_fails_as_in_linen():
    for name, options in (("se_resnet7", {}), ("se_resnet18", {"stem": "tiny"})):
        with pytest.raises(ValueError) as ref:
            se_flax.create_model(name, **options)
        with pytest.raises(ValueError) as ours:
            snnx.functional_model(name, **options)
        assert str(ours.value) == str(ref.value)


def test_calls_share_no_state():
    """`apply` builds a fresh module per call: a training call leaves the next one unchanged."""
    x, _, variables, view = _setup()
    first = view.apply(variables, x, train=True, mutable=["batch_stats"])[1]
    second = view.apply(variables, x, train=True, mutable=["batch_stats"])[1]
    _exact(first, second)
    assert not _exact_or_false(first, {"batch_stats": variables["batch_stats"]})


def _exact_or_false(ours, ref):
    try:
        _exact(ours, ref)
    except AssertionError:
        return False
    return True
