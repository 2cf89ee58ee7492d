"""Every attention layer x rank x option, eval and train mode: outputs, gates, stats, grads."""

import numpy as np
import pytest
import torch

import se_flax
import se_torch_ref
from parity_tests import compare
from se_spec.tolerances import EVAL_TOL, TRAIN_TOL

CHANNELS = 64
# (id, variant, extra options) — every variant, then every option of each layer.
CASES = [(name, name, {}) for name in se_flax.ATTENTION_VARIANTS] + [
    ("se-floor", "se", {"rd_policy": "floor"}),
    ("se-floor-r4", "se", {"rd_policy": "floor", "rd_ratio": 1 / 4}),
    ("se-divisible-r8-div4", "se", {"rd_ratio": 1 / 8, "rd_divisor": 4}),
    ("se-dynamic-min4", "se", {"rd_policy": "dynamic", "min_ratio": 4}),
    ("se-rd_channels", "se", {"rd_channels": 5}),
    ("se-linear-bias", "se", {"excite": "linear", "bias": True}),
    ("se-conv-nobias", "se", {"bias": False}),
    ("se-groups2", "se", {"groups": 2}),
    ("se-groups4-nobias", "se", {"groups": 4, "rd_ratio": 1 / 4, "bias": False}),
    ("se-relu6", "se", {"act": "relu6"}),
    ("se-hard_swish", "se", {"act": "hard_swish"}),
    ("se-silu", "se", {"act": "silu"}),
    ("se-gelu", "se", {"act": "gelu"}),
    ("se-tanh", "se", {"act": "tanh"}),
    ("se-hard_sigmoid", "se", {"gate": "hard_sigmoid"}),
    ("se-residual", "se", {"residual_gate": True}),
    ("se-zero-init", "se", {"zero_init_last": True}),
    ("effective_se-maxpool", "effective_se", {"add_maxpool": True}),
    ("effective_se-sigmoid-linear", "effective_se", {"gate": "sigmoid", "excite": "linear"}),
    ("eca-k5", "eca", {"kernel_size": 5}),
    ("eca-gamma1", "eca", {"gamma": 1, "beta": 2}),
    ("eca-hard_sigmoid", "eca", {"gate": "hard_sigmoid"}),
    ("cbam-bias-k3", "cbam", {"bias": True, "spatial_kernel_size": 3}),
    ("cbam-rd8-silu", "cbam", {"rd_channels": 8, "act": "silu", "gate": "hard_sigmoid"}),
]


def _input(rank: int, seed: int = 0) -> np.ndarray:
    spatial = {1: (9,), 2: (6, 5), 3: (4, 5, 3)}[rank]
    return np.random.default_rng(seed).standard_normal((3, CHANNELS, *spatial)) \
        .astype(np.float32) * 2


def _pair(variant: str, options: dict, rank: int, seed: int = 0):
    torch.manual_seed(seed)
    tm = se_torch_ref.create_attention(variant, CHANNELS, spatial_dims=rank, **options)
    with torch.no_grad():  # non-trivial weights everywhere, zero-init layers included
        for p in tm.parameters():
            if not p.abs().sum():
                p.normal_(0, 0.2)
        for name, b in tm.named_buffers():
            if name.endswith("running_mean"):
                b.normal_(0, 0.5)
            elif name.endswith("running_var"):
                b.uniform_(0.5, 2.0)
    fm = se_flax.create_attention(variant, CHANNELS, spatial_dims=rank, **options)
    return fm, tm


@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
@pytest.mark.parametrize("rank", [1, 2, 3], ids=["1d", "2d", "3d"])
@pytest.mark.parametrize("case_id,variant,options", CASES, ids=[c[0] for c in CASES])
def test_layer_parity(case_id, variant, options, rank, train):
    fm, tm = _pair(variant, options, rank)
    report = compare(fm, tm, _input(rank), train=train)
    print(report.table())
    assert report.ok, f"first divergence: {report.first_failure()}\n{report.table()}"
    gates = report.of_kind("gate")
    assert gates, "no gate was compared"
    assert all(r.tol == (TRAIN_TOL if train else EVAL_TOL) for r in gates)
    n_params = len(list(tm.parameters()))
    assert len(report.of_kind("grad")) == n_params + 1  # every parameter and the input
    if train and variant == "cbam":
        assert len(report.of_kind("running_stat")) == 2


def test_harness_detects_a_wrong_gate():
    """Negative control: a Flax layer that differs from its reference must be reported."""
    fm, tm = _pair("se", {"gate": "hard_sigmoid"}, 2)
    fm = se_flax.create_attention("se", CHANNELS, spatial_dims=2)  # sigmoid instead
    report = compare(fm, tm, _input(2))
    assert not report.ok
    assert report.first_failure().kind == "gate"


def test_harness_detects_a_perturbed_weight():
    fm, tm = _pair("eca", {}, 2)
    x = _input(2)
    assert compare(fm, tm, x).ok
    original = tm.forward

    def perturbed(inp):  # the reference now computes something slightly different
        return original(inp) * (1 + 1e-4)
    tm.forward = perturbed
    report = compare(fm, tm, x, grads=False)
    assert [r.name for r in report.rows if not r.ok] == ["output"]
