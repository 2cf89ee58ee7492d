"""The SE width rule on a NumPy excitation: widening is exact, shrinking reports its losses."""

import numpy as np
import pytest

from se_spec.widening import Excitation, WidthChange, resize_hidden


def excite(ex: Excitation, s: np.ndarray) -> np.ndarray:
    """fc2(relu(fc1(s))) with the layouts of `ex` (hidden axis last for fc1, first for fc2)."""
    w1 = np.moveaxis(ex.fc1_weight, ex.fc1_axis, -1)
    w2 = np.moveaxis(ex.fc2_weight, ex.fc2_axis, 0)
    return np.maximum(s @ w1 + ex.fc1_bias, 0) @ w2


@pytest.fixture
def ex():
    rng = np.random.default_rng(0)
    return Excitation(rng.normal(size=(32, 4)), rng.normal(size=4), rng.normal(size=(4, 32)),
                      1, 0)


def test_widening_keeps_the_output_and_adds_learnable_units(ex):
    s = np.random.default_rng(1).normal(size=(5, 32))
    wide, lost = resize_hidden("se", ex, 8, np.random.default_rng(2))
    # float64 to 1e-13, not bit-equal: BLAS sums the longer (zero-padded) product in another
    # order; the framework tests compare with EVAL_TOL
    assert lost is None and wide.width == 8 and wide.fc1_bias.shape == (8,)
    np.testing.assert_allclose(excite(wide, s), excite(ex, s), rtol=1e-13, atol=1e-13)
    assert np.all(wide.fc2_weight[4:] == 0) and np.all(wide.fc1_weight[:, 4:] != 0)
    np.testing.assert_array_equal(wide.fc1_weight[:, :4], ex.fc1_weight)


def test_shrinking_back_is_exact_and_a_real_shrink_is_reported(ex):
    s = np.random.default_rng(1).normal(size=(5, 32))
    wide, _ = resize_hidden("se", ex, 8, np.random.default_rng(2))
    back, lost = resize_hidden("se", wide, 4, np.random.default_rng(3))
    assert lost.units == 4 and lost.largest_outgoing == 0.0
    np.testing.assert_allclose(excite(back, s), excite(ex, s), rtol=1e-13, atol=1e-13)
    narrow, lost = resize_hidden("layer1/se", ex, 3, np.random.default_rng(3))
    kept_norms = np.abs(narrow.fc2_weight).max(axis=1)
    assert lost.units == 1 and lost.largest_outgoing > 0
    assert lost.largest_outgoing <= kept_norms.min()  # the weakest unit went
    change = WidthChange({}, [lost], 1)
    assert not change.exact and "layer1/se: dropped 1 hidden unit(s)" in change.report()


def test_a_width_below_one_is_refused(ex):
    with pytest.raises(ValueError, match="layer2/se: .*at least one hidden unit"):
        resize_hidden("layer2/se", ex, 0, np.random.default_rng(0))
