import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_gpu_script_tiny_cpu_mode():
    out = subprocess.run(["bash", "bench/gpu.sh", "--tiny"], cwd=ROOT, check=True,
                         capture_output=True, text=True).stdout
    assert "| 32x32 cifar | 2 | se_resnet50 |" in out
    assert "SE step time / plain" in out
