import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_gpu_script_tiny_cpu_mode():
    out = subprocess.run(["bash", "bench/gpu.sh", "--tiny"], cwd=ROOT, check=True,
                         capture_output=True, text=True).stdout
    assert "| 32x32 cifar | 2 | se_resnet50 |" in out
    assert "SE step time / plain" in out


def test_paired_ratio_compares_steps_of_the_same_round():
    sys.path.insert(0, str(ROOT))
    from bench.steps import paired_ratio

    # The load doubles halfway; within each round the step takes 1.1x the base step.
    base = [1.0, 1.0, 1.0, 2.0, 2.0, 2.0]
    times = [1.1, 1.1, 1.1, 2.2, 2.2, 2.2]
    med, q1, q3 = paired_ratio(times, base)
    assert med == pytest.approx(1.1) and q1 == pytest.approx(1.1) and q3 == pytest.approx(1.1)
    med, q1, q3 = paired_ratio([1.0, 2.0, 3.0, 4.0, 5.0], [1.0] * 5)
    assert (q1, med, q3) == (2.0, 3.0, 4.0)
    with pytest.raises(ValueError, match="equally long, non-empty lists of times, got 2 and 3"):
        paired_ratio([1.0, 1.0], [1.0, 1.0, 1.0])


def test_input_benchmark_prints_a_rate_per_worker(tmp_path):
    proc = subprocess.run([sys.executable, "bench/input.py", "--images", "60", "--workers", "0",
                           "--batch", "8", "--size", "32", "--repeats", "1", "--data",
                           str(tmp_path / "jpegs")], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    row = next(line for line in proc.stdout.splitlines() if line.strip().startswith("0 "))
    assert float(row.split()[1]) > 0  # ours, images/s
    assert "host cores for input" in proc.stdout and proc.stdout.startswith("writing 60 JPEGs")


def test_nnx_jit_variant_gets_the_compiler_options_through_xla_flags():
    sys.path.insert(0, str(ROOT))
    from bench.step import FLAX_VARIANTS, variant_env

    assert variant_env(FLAX_VARIANTS["flax nnx.jit"]) == {
        "XLA_FLAGS": "--xla_cpu_scheduler_type=CPU_SCHEDULER_TYPE_MEMORY_OPTIMIZED"}
    assert variant_env(FLAX_VARIANTS["flax nnx"]) == variant_env(FLAX_VARIANTS["flax"]) == {}


@pytest.mark.slow
def test_step_benchmark_runs_the_nnx_train_steps_beside_linen():
    proc = subprocess.run([sys.executable, "bench/step.py", "--api", "nnx", "--model",
                           "resnet18", "--batch", "4", "--size", "8", "--repeats", "1",
                           "--warmup", "0"], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for mode in ("train", "infer"):
        assert f"{mode}: first call (compile) flax " in proc.stdout
    for variant in ("flax nnx ", "flax nnx.jit "):
        assert proc.stdout.count(f"  {variant}") == 2, proc.stdout
    assert "torch" not in proc.stdout.split("(one process per variant)")[1]
