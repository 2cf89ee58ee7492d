"""MobileNetV3 and (SE-)ViT in both frameworks: eval, train (fp32) and gradients (fp64).

One model per family runs by default at a small input (mobilenet_v3_small with the cifar stem at
32x32, se_vit_tiny on 32x32 images in 8x8 patches); the others, at their default parity sizes,
are marked slow. Tolerances as everywhere (`se_spec.tolerances`).
"""

import pytest

from parity_tests.cli import MODES, format_report
from parity_tests.networks import compare_model
from se_spec.models import MODEL_SPECS

SMALL = {
    "mobilenet_v3_small": {"stem": "cifar", "num_classes": 10},
    "se_vit_tiny_patch16_224": {"img_size": 32, "patch_size": 8, "num_classes": 10},
}
SLOW = {"mobilenet_v3_large": {}, "vit_tiny_patch16_224": {}, "vit_small_patch16_224": {},
        "se_vit_small_patch16_224": {}}
GATES = {"mobilenet_v3_small": 9, "mobilenet_v3_large": 8, "se_vit_tiny_patch16_224": 12,
         "se_vit_small_patch16_224": 12, "vit_tiny_patch16_224": 0, "vit_small_patch16_224": 0}

CASES = [pytest.param(name, kwargs, mode, id=f"{name}-{mode}")
         for name, kwargs in SMALL.items() for mode in MODES] + [
    pytest.param(name, kwargs, mode, id=f"{name}-{mode}", marks=pytest.mark.slow)
    for name, kwargs in SLOW.items() for mode in MODES]


@pytest.mark.parametrize("name,kwargs,mode", CASES)
def test_network_parity(name, kwargs, mode):
    report = compare_model(name, **MODES[mode], **kwargs)
    print(format_report(report, f"{name} {mode}"))
    assert report.ok, f"first divergence: {report.first_failure()}"
    assert len(report.of_kind("probe")) == MODEL_SPECS[name].layers[0]
    assert len(report.of_kind("gate")) == GATES[name]
    if MODES[mode]["train"] and "mobilenet" in name:
        assert report.of_kind("running_stat")
    if MODES[mode]["grads"]:
        assert len(report.of_kind("grad")) > 3 * MODEL_SPECS[name].layers[0]
