"""Every registered model's NNX twin against PyTorch: eval, train (fp32) and gradients (fp64).

The JAX side is `se_flax.nnx` (through `functional_model`), the PyTorch side and the
tolerances are those of the Linen network parity tests, with the same inputs. SE-ResNet-18
(CIFAR stem) runs by default in every mode; the other models are slow.
"""

import pytest

from parity_tests.cli import MODES, format_report
from parity_tests.networks import compare_model
from parity_tests.test_mobilenet_vit_parity import GATES, SMALL
from parity_tests.test_network_parity import SMALL_SIZES, _expected_gates
from se_spec import mobilenet, vit
from se_spec.models import MODEL_SPECS

DEFAULT = "se_resnet18"


def _kwargs(name: str, mode: str) -> dict:
    if name == DEFAULT:
        return {"stem": "cifar", "num_classes": 10}
    if name in SMALL_SIZES:
        return {"num_classes": 10, "size": SMALL_SIZES[name][mode]}
    return dict(SMALL.get(name, {}))


def _blocks(name: str) -> int:
    spec = MODEL_SPECS[name]
    flat = spec.family in (mobilenet.FAMILY, vit.FAMILY)
    return spec.layers[0] if flat else sum(spec.layers)


CASES = [pytest.param(name, mode, id=f"{name}-{mode}",
                      marks=() if name == DEFAULT else pytest.mark.slow)
         for name in MODEL_SPECS for mode in MODES]


@pytest.mark.parametrize("name,mode", CASES)
def test_nnx_network_parity(name, mode):
    report = compare_model(name, api="nnx", **MODES[mode], **_kwargs(name, mode))
    print(format_report(report, f"{name} (nnx) {mode}"))
    assert report.ok, f"first divergence: {report.first_failure()}"
    assert len(report.of_kind("probe")) == _blocks(name)
    expected_gates = GATES[name] if name in GATES else _expected_gates(name)
    assert len(report.of_kind("gate")) == expected_gates
    assert len(report.of_kind("output")) == 1
    if MODES[mode]["grads"]:
        assert len(report.of_kind("grad")) > 3 * _blocks(name)
