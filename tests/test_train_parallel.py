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
result = {}
for name in ("shard_map", "pmap"):
    driver = make_driver(name, step, make_eval_step(model, **kw))
    state = driver.replicate(state0)
    for s in range(3):
        state, metrics = driver.train_step(state, *driver.shard(
            ds.train.get(batch_indices(s, len(ds.train), 16, 0))))
    host = driver.unreplicate(state)
    images, labels = ds.eval.get(np.arange(16))
    ev = driver.metrics(driver.eval_step(state, *driver.shard((images, labels,
                                                               np.ones(16, np.float32)))))
    leaves = jax.tree.leaves({"params": host.params, "batch_stats": host.batch_stats})
    result[name] = {"leaves": [np.asarray(x, np.float64).ravel().tolist() for x in leaves],
                    "step": int(host.step), "loss": driver.metrics(metrics)["loss"],
                    "eval_count": ev["count"]}
json.dump(result, sys.stdout)
"""


def test_pmap_and_shard_map_give_the_same_parameters():
    # Both run the same per-device program; pmap (since JAX 0.8 itself built on shard_map)
    # wraps it with a leading device axis, so XLA fuses the two programs differently and the
    # float32 results agree to rounding, not bit for bit: ~1e-6 after 3 steps.
    proc = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, env=child_env(4),
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout)
    a, b = out["shard_map"], out["pmap"]
    assert a["step"] == b["step"] == 3 and a["eval_count"] == b["eval_count"] == 16
    worst = 0.0
    for x, y in zip(a["leaves"], b["leaves"], strict=True):
        x, y = (list(map(float, v)) for v in (x, y))
        diff = max(abs(p - q) for p, q in zip(x, y, strict=True))
        worst = max(worst, diff / max(1.0, max(abs(q) for q in y)))
    assert worst <= 1e-5, f"pmap and shard_map parameters differ by {worst:.2e}"
    assert abs(a["loss"] - b["loss"]) <= 1e-5 * max(1.0, abs(b["loss"]))


def test_batch_not_divisible_by_device_count_fails_before_compiling():
    proc = run_train("--batch-size", "10", "--output-dir", "/nonexistent/never", devices=4,
                     timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "batch_size=10 is not divisible by the 4 devices" in proc.stderr
    assert "Traceback" not in proc.stderr
