"""The training loop: data → compiled step (pmap or shard_map) → metrics, checkpoints, export.

`train(cfg)` runs one configuration end to end and returns a `RunResult`. Files written under
`cfg.output_dir` (process 0): `config.json`, `metrics.jsonl`, `tensorboard/`, `checkpoints/`
(Orbax), `model.pth` (PyTorch export), `gates.png`, `summary.json`.

Failure modes: a batch size that the devices do not divide raises before anything is compiled;
a non-finite loss raises `NonFiniteLoss` naming the step, and no checkpoint is written after
it (metrics are checked before every save), so the newest checkpoint is the last good state.
"""

from __future__ import annotations

import copy
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from se_flax.models import create_model
from train.checkpoint import Checkpointer
from train.config import ConfigError, TrainConfig, to_dict
from train.data import (
    Dataset,
    channel_stats,
    eval_batches,
    load_dataset,
    prefetch,
    steps_per_epoch,
    train_batches,
)
from train.export import export_all, model_options
from train.metrics import MetricLogger, Progress
from train.parallel import check_batch_size, make_driver
from train.step import (
    AXIS,
    create_state,
    make_eval_step,
    make_optimizer,
    make_train_step,
    warmup_cosine,
)

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}
EXPORT_EXAMPLES = 1024  # evaluation images used for the parity check and the gate plot


class NonFiniteLoss(RuntimeError):
    """The training loss became NaN or infinite."""

    def __init__(self, step: int, loss: float, last_checkpoint: int | None, directory: Path):
        self.step, self.loss, self.last_checkpoint = step, loss, last_checkpoint
        kept = (f"the last good checkpoint is step {last_checkpoint} in {directory}"
                if last_checkpoint is not None else "no checkpoint had been written yet")
        super().__init__(f"loss is {loss} at step {step}; stopped. {kept}. Lower lr, raise "
                         "warmup_epochs or use float32, then resume with --resume")


@dataclass
class RunResult:
    """What a run did."""

    steps: int
    eval_accuracy: float | None
    eval_loss: float | None
    train_loss: float | None
    seconds: float
    output_dir: Path
    export: dict[str, Any] = field(default_factory=dict)


def init_distributed(cfg: TrainConfig) -> None:
    """`jax.distributed.initialize` for multi-process runs (before any JAX computation)."""
    if cfg.coordinator_address is None:
        return
    jax.distributed.initialize(cfg.coordinator_address, cfg.num_processes, cfg.process_id)


def _mean_std(cfg: TrainConfig, dataset: Dataset) -> tuple[list[float], list[float]]:
    channels = dataset.image_shape[-1]
    mean, std = cfg.mean, cfg.std
    if mean is None or std is None:
        measured = channel_stats(dataset.train)
        mean = measured[0] if mean is None else mean
        std = measured[1] if std is None else std
    for name, v in (("mean", mean), ("std", std)):
        if len(v) not in (1, channels):
            raise ConfigError(f"config: {name} has {len(v)} values but {dataset.name} images "
                              f"have {channels} channels; expected 1 or {channels}")
    return [float(m) for m in mean], [float(s) for s in std]


def evaluate(driver: Any, state: Any, dataset: Dataset, batch: int) -> dict[str, float]:
    """Loss and accuracy over the whole evaluation source."""
    sums = {"loss_sum": 0.0, "correct": 0.0, "count": 0.0}
    it = eval_batches(dataset.eval, batch, jax.process_index(), jax.process_count())
    for b in prefetch(it, driver.shard):
        for k, v in driver.metrics(driver.eval_step(state, *b)).items():
            sums[k] += v
    n = max(sums["count"], 1.0)
    return {"loss": sums["loss_sum"] / n, "accuracy": sums["correct"] / n,
            "examples": int(sums["count"])}


def train(cfg: TrainConfig) -> RunResult:
    """Run `cfg` to the end (or to `max_steps`) and return the final metrics."""
    cfg = copy.deepcopy(cfg).validate()
    init_distributed(cfg)
    t_start = time.time()
    lead = jax.process_index() == 0
    out = Path(cfg.output_dir)
    dataset = load_dataset(cfg.dataset, data_dir=cfg.data_dir, train_split=cfg.train_split,
                           eval_split=cfg.eval_split, image_size=cfg.image_size,
                           eval_fraction=cfg.eval_fraction, seed=cfg.seed)
    try:
        check_batch_size(cfg.batch_size, jax.device_count(), jax.process_count())
    except ValueError as e:
        raise ConfigError(f"config: {e}") from None
    spe = steps_per_epoch(len(dataset.train), cfg.batch_size)
    if spe == 0:
        raise ConfigError(f"config: batch_size={cfg.batch_size} is larger than the "
                          f"{len(dataset.train)} training examples of {dataset.name}")
    total = cfg.epochs * spe
    end = min(total, cfg.max_steps) if cfg.max_steps else total
    mean, std = _mean_std(cfg, dataset)
    dtype = DTYPES[cfg.dtype]
    options = model_options(cfg, dataset.num_classes, dataset.image_shape[-1])
    model = create_model(cfg.model, **options, dtype=dtype, axis_name=AXIS)
    schedule = warmup_cosine(cfg.lr, round(cfg.warmup_epochs * spe), total)
    tx = make_optimizer(cfg.optimizer, schedule, momentum=cfg.momentum, nesterov=cfg.nesterov,
                        weight_decay=cfg.weight_decay, b1=cfg.adam_b1, b2=cfg.adam_b2)
    state = jax.device_get(jax.jit(lambda k: create_state(
        model, tx, k, dataset.image_shape, float16=cfg.dtype == "float16"))(
        jax.random.key(cfg.seed)))
    state = jax.tree.map(np.array, state)  # own the memory: device buffers get donated

    ckpt = Checkpointer(out / "checkpoints", cfg.keep_checkpoints)
    if cfg.resume and ckpt.latest_step() is not None:
        state, _ = ckpt.restore(state)
        if lead:
            print(f"resumed from {ckpt.directory}/{ckpt.latest_step()}")
    elif ckpt.latest_step() is not None:
        raise ConfigError(f"config: {ckpt.directory} already holds checkpoints (latest step "
                          f"{ckpt.latest_step()}); pass --resume to continue that run or "
                          "choose another output_dir")
    start = int(state.step)
    if lead:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text(json.dumps(to_dict(cfg), indent=2) + "\n")

    train_step = make_train_step(model, tx, schedule, num_classes=dataset.num_classes,
                                 mean=mean, std=std, crop_padding=cfg.crop_padding,
                                 flip=cfg.flip, label_smoothing=cfg.label_smoothing,
                                 seed=cfg.seed, dtype=dtype)
    eval_step = make_eval_step(model, num_classes=dataset.num_classes, mean=mean, std=std,
                               dtype=dtype)
    driver = make_driver(cfg.parallel, train_step, eval_step)
    dstate = driver.replicate(state)
    logger = MetricLogger(out, enabled=lead, tensorboard=cfg.tensorboard)
    progress = Progress(end, start, enabled=lead and cfg.progress)
    if lead:
        progress.write(f"{cfg.model} on {dataset.name} ({len(dataset.train)} train / "
                       f"{len(dataset.eval)} eval, {dataset.image_shape}), {jax.device_count()}"
                       f" device(s) via {driver.name}, batch {cfg.batch_size}, steps "
                       f"{start}→{end} of {total}")

    pending: list[tuple[int, Any]] = []
    last_eval: dict[str, float] = {}
    last_train: dict[str, float] = {}
    t_flush, n_flushed = time.time(), 0

    def flush(step_done: int) -> None:
        nonlocal t_flush, n_flushed, last_train
        if not pending:
            return
        rows = []
        for step, m in pending:
            values = driver.metrics(m)
            if not math.isfinite(values["loss"]):
                pending.clear()
                raise NonFiniteLoss(step + 1, values["loss"], ckpt.latest_step(),
                                    ckpt.directory)
            rows.append(values)
        n = len(rows)
        pending.clear()
        now = time.time()
        ips = n * cfg.batch_size / max(now - t_flush, 1e-9)
        t_flush = now
        last_train = {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}
        logger.log(step_done, "train", {**last_train, "images_per_sec": ips})
        progress.update(n, loss=f"{last_train['loss']:.4f}", img_s=f"{ips:.0f}")
        n_flushed += n

    batches = train_batches(dataset.train, start, end, cfg.batch_size, cfg.seed,
                            jax.process_index(), jax.process_count())
    try:
        for step, x, y in prefetch(batches, lambda b: (b[0], *driver.shard(b[1:]))):
            dstate, m = driver.train_step(dstate, x, y)
            pending.append((step, m))
            done = step + 1
            save = done == end or (cfg.checkpoint_every and done % cfg.checkpoint_every == 0)
            epoch_end = done % spe == 0 or done == end
            if done % cfg.log_every == 0 or save or epoch_end:
                flush(done)
            if epoch_end:
                last_eval = evaluate(driver, dstate, dataset, cfg.batch_size)
                logger.log(done, "eval", {**last_eval, "epoch": done / spe})
                progress.write(f"epoch {done / spe:.2f} step {done}: train loss "
                               f"{last_train.get('loss', float('nan')):.4f}, eval loss "
                               f"{last_eval['loss']:.4f}, eval accuracy "
                               f"{last_eval['accuracy']:.4f}")
                t_flush = time.time()  # do not count evaluation in images/sec
            if save:
                host = driver.unreplicate(dstate)
                ckpt.save(done, host, {"step": done, "config": to_dict(cfg)})
        flush(end)
    finally:
        progress.close()
        logger.close()

    state = driver.unreplicate(dstate)
    result = RunResult(end, last_eval.get("accuracy"), last_eval.get("loss"),
                       last_train.get("loss"), time.time() - t_start, out)
    if lead and cfg.export and end == total:
        n = min(len(dataset.eval), EXPORT_EXAMPLES)
        images, labels = dataset.eval.get(np.arange(n))
        result.export = export_all(cfg, {"params": state.params,
                                         "batch_stats": state.batch_stats},
                                   images, labels, mean, std, dataset.num_classes, out)
    ckpt.close()
    if lead:
        summary = {"steps": result.steps, "total_steps": total, "eval": last_eval,
                   "train_loss": result.train_loss, "seconds": round(result.seconds, 1),
                   "devices": jax.device_count(), "parallel": driver.name,
                   "export": result.export}
        (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return result


def final_params(output_dir: str | Path) -> dict[str, Any]:
    """Parameters and BatchNorm statistics of the newest checkpoint under `output_dir`.

    NumPy arrays; used to compare runs.
    """
    ckpt = Checkpointer(Path(output_dir) / "checkpoints")
    step = ckpt.latest_step()
    if step is None:
        raise FileNotFoundError(f"no checkpoint under {output_dir}")
    restored = ckpt.manager.restore(step)
    ckpt.close()
    state = restored["state"]
    return {"step": step, "params": jax.tree.map(np.asarray, state["params"]),
            "batch_stats": jax.tree.map(np.asarray, state["batch_stats"])}
