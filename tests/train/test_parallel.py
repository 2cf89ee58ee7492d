"""pmap and jit(shard_map) drivers of the one per-device step, on 4 CPU devices (subprocess)."""

import json
import subprocess
import sys

from train.testing import ROOT, child_env, run_train

SCRIPT = r"""
import json, sys
import jax, numpy as np
from se_flax.models import create_model
from train.data import batch_indices, digits_dataset
from train.parallel import make_driver
from train.step import create_state, make_eval_step, make_optimizer, make_train_step, \
    warmup_cosine
assert jax.device_count() == 4, jax.devices()
ds = digits_dataset()
model = create_model("se_resnet18", num_classes=10, stem="cifar", in_chans=1, axis_name="batch")
schedule = warmup_cosine(0.05, 2, 10)
tx = make_optimizer("sgd", schedule)
state0 = jax.tree.map(np.array, jax.device_get(jax.jit(
    lambda k: create_state(model, tx, k, (8, 8, 1)))(jax.random.key(0))))
kw = dict(num_classes=10, mean=[0.3], std=[0.4])
step = make_train_step(model, tx, schedule, crop_padding=1, flip=True, label_smoothing=0.1, **kw)
drivers = {name: make_driver(name, step, make_eval_step(model, **kw))
           for name in ("shard_map", "pmap")}
host, result = state0, {"worst": [], "loss": [], "eval_count": {}}
for s in range(3):
    batch = ds.train.get(batch_indices(s, len(ds.train), 16, 0))
    out = {}
    for name, driver in drivers.items():  # the same state and batch into both drivers
        state, metrics = driver.train_step(driver.replicate(host), *driver.shard(batch))
        out[name] = (jax.tree.map(np.array, driver.unreplicate(state)),
                     driver.metrics(metrics)["loss"])
    (a, loss_a), (b, loss_b) = out["shard_map"], out["pmap"]
    assert int(a.step) == int(b.step) == s + 1
    worst = 0.0
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
        worst = max(worst, float(np.max(np.abs(x - y))) / max(1.0, float(np.max(np.abs(y)))))
    result["worst"].append(worst)
    result["loss"].append([loss_a, loss_b])
    host = b
images, labels = ds.eval.get(np.arange(16))
for name, driver in drivers.items():
    ev = driver.metrics(driver.eval_step(driver.replicate(host), *driver.shard(
        (images, labels, np.ones(16, np.float32)))))
    result["eval_count"][name] = ev["count"]
json.dump(result, sys.stdout)
"""


def test_pmap_and_shard_map_compute_the_same_step():
    # Both run the same per-device program; pmap (since JAX 0.8 itself built on shard_map)
    # wraps it with a leading device axis, so XLA fuses the two programs differently and the
    # float32 results agree to rounding, not bit for bit. Each step starts both drivers from
    # the same state: trajectories are not compared, because this tiny setting (4 images per
    # device, 1x1 feature maps in layer4) amplifies rounding — two step-2 states 2e-6 apart
    # gave parameters 1.15e-3 apart one step later, with the same driver.
    proc = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, env=child_env(4),
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout)
    assert out["eval_count"] == {"shard_map": 16, "pmap": 16}
    assert len(out["worst"]) == 3
    pairs = zip(out["worst"], out["loss"], strict=True)
    for step, (worst, (loss_a, loss_b)) in enumerate(pairs, 1):
        assert worst <= 1e-5, f"step {step}: pmap and shard_map states differ by {worst:.2e}"
        assert abs(loss_a - loss_b) <= 1e-5 * max(1.0, abs(loss_b)), (step, loss_a, loss_b)


def test_batch_not_divisible_by_device_count_fails_before_compiling():
    proc = run_train("--batch-size", "10", "--output-dir", "/nonexistent/never", devices=4,
                     timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "batch_size=10 is not divisible by the 4 devices" in proc.stderr
    assert "Traceback" not in proc.stderr
