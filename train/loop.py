"""The training loop: data → compiled step (pmap or shard_map) → metrics, checkpoints, export.

`train(cfg)` runs one configuration end to end and returns a `RunResult`. Files written under
`cfg.output_dir` (process 0): `config.json`, `metrics.jsonl`, `tensorboard/`, `checkpoints/`
(Orbax), `model.pth` (PyTorch export), `gates.png`, `summary.json`.

Failure modes: a batch size that the devices do not divide raises before anything is compiled;
a non-finite loss or gradient norm raises `NonFiniteLoss` naming the step and the quantity, and
no checkpoint is written after it (metrics are checked before every save), so the newest
checkpoint is the last good state. With float16, dynamic loss scaling skips the update of a step
whose gradients overflowed; such steps are counted (`skipped_steps` in the metrics and
`summary.json`) and reported, not fatal. An unknown model, stem or attention, or images smaller
than the network's stride, raise `ConfigError` before anything is compiled. `--resume` restores
the newest checkpoint that reads back and matches its digest, reporting (and setting aside) any
newer corrupt ones.
"""

from __future__ import annotations

import copy
import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from se_flax.implementation import resolve_implementation
from se_flax.models import create_model
from se_spec.models import FAMILY_STEMS, check_image, model_spec, resolve_options
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
EXPORT_CLIPS = 64  # the same for video clips (each is `frames` images)
STATS_CLIPS = 256  # training clips sampled to measure mean/std of a video dataset


class NonFiniteLoss(RuntimeError):
    """The training loss (or the gradient norm) became NaN or infinite."""

    def __init__(self, step: int, loss: float, last_checkpoint: int | None, directory: Path,
                 what: str = "loss"):
        self.step, self.loss, self.last_checkpoint, self.what = step, loss, last_checkpoint, what
        kept = (f"the last good checkpoint is step {last_checkpoint} in {directory}"
                if last_checkpoint is not None else "no checkpoint had been written yet")
        super().__init__(f"{what} is {loss} at step {step}; stopped. {kept}. Lower lr, raise "
                         "warmup_epochs or use float32, then resume with --resume")


def check_finite(step: int, values: dict[str, float], last_checkpoint: int | None,
                 directory: Path) -> bool:
    """True if step `step` (1-based) was skipped by float16 loss scaling; raise on NaN/Inf.

    A step that loss scaling skipped did not change the parameters, so its non-finite loss or
    gradients are expected; otherwise a non-finite loss or gradient norm stops the run.
    """
    if values.get("skipped", 0.0) > 0:
        return True
    for key, what in (("loss", "loss"), ("grad_norm", "gradient norm")):
        if key in values and not math.isfinite(values[key]):
            raise NonFiniteLoss(step, values[key], last_checkpoint, directory, what)
    return False


def check_model(cfg: TrainConfig) -> None:
    """Model name, stem and attention as a ConfigError, before any data is loaded."""
    try:
        stem = model_options(cfg, 1, 3)["stem"]  # video models: "cifar" means their "r3d"
        resolve_options(cfg.model, stem=stem, attn=cfg.attn,
                        zero_init_last_bn=cfg.zero_init_last_bn)
    except (ValueError, TypeError) as e:
        raise ConfigError(f"config: {e}") from None


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
    skipped_steps: int = 0  # float16 steps whose update loss scaling skipped


def init_distributed(cfg: TrainConfig) -> None:
    """`jax.distributed.initialize` for multi-process runs (before any JAX computation)."""
    if cfg.coordinator_address is None:
        return
    jax.distributed.initialize(cfg.coordinator_address, cfg.num_processes, cfg.process_id)


def _mean_std(cfg: TrainConfig, dataset: Dataset) -> tuple[list[float], list[float]]:
    channels = dataset.image_shape[-1]
    mean, std = cfg.mean, cfg.std
    if mean is None or std is None:
        measured = channel_stats(dataset.train,
                                 STATS_CLIPS if dataset.is_video else 10_000)
        mean = measured[0] if mean is None else mean
        std = measured[1] if std is None else std
    for name, v in (("mean", mean), ("std", std)):
        if len(v) not in (1, channels):
            raise ConfigError(f"config: {name} has {len(v)} values but {dataset.name} images "
                              f"have {channels} channels; expected 1 or {channels}")
    return [float(m) for m in mean], [float(s) for s in std]


def check_model_input(cfg: TrainConfig, dataset: Dataset, options: dict[str, Any]) -> None:
    """Video models need a video dataset and vice versa; clips must fit the network's stride."""
    family = model_spec(cfg.model).family
    video_model = family == "r3d"
    if options["stem"] not in FAMILY_STEMS[family]:
        raise ConfigError(f"config: stem={cfg.stem!r} is invalid for {cfg.model!r}; expected "
                          f"one of {', '.join(map(repr, FAMILY_STEMS[family]))}")
    if video_model != dataset.is_video:
        if video_model:
            raise ConfigError(f"config: model {cfg.model!r} is a video model (input clips "
                              f"(N, T, H, W, C)) but dataset {dataset.name!r} has images "
                              f"{dataset.image_shape}; expected a video dataset such as ucf101")
        raise ConfigError(f"config: model {cfg.model!r} is an image model but dataset "
                          f"{dataset.name!r} has video clips {dataset.image_shape}; expected "
                          "a video model such as se_r3d_18")
    try:
        check_image(cfg.model, (1, *dataset.image_shape), options["in_chans"], -1,
                    options["stem"])
    except ValueError as e:
        hint = " (set frames / image_size)" if dataset.is_video else " (set image_size)"
        raise ConfigError(f"config: {e}{hint}") from None


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
    check_model(cfg)
    init_distributed(cfg)
    t_start = time.time()
    lead = jax.process_index() == 0
    out = Path(cfg.output_dir)
    dataset = load_dataset(cfg.dataset, data_dir=cfg.data_dir, train_split=cfg.train_split,
                           eval_split=cfg.eval_split, image_size=cfg.image_size,
                           eval_fraction=cfg.eval_fraction, seed=cfg.seed,
                           frames=cfg.frames, frame_stride=cfg.frame_stride)
    options = model_options(cfg, dataset.num_classes, dataset.image_shape[-1])
    check_model_input(cfg, dataset, options)
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
        warn = (lambda m: print(f"se-train: {m}", file=sys.stderr, flush=True)) if lead \
            else (lambda m: None)
        state, _, restored_step = ckpt.restore_newest_intact(state, warn)
        if lead:
            print(f"resumed from {ckpt.directory}/{restored_step}")
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
    driver = make_driver(cfg.parallel, train_step, eval_step,
                         compiler_options=resolve_implementation().compiler_options())
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
    t_flush, n_flushed, n_skipped = time.time(), 0, 0

    def flush(step_done: int) -> None:
        nonlocal t_flush, n_flushed, last_train, n_skipped
        if not pending:
            return
        rows = []
        n = len(pending)
        for step, m in pending:
            values = driver.metrics(m)
            try:
                skipped = check_finite(step + 1, values, ckpt.latest_step(), ckpt.directory)
            except NonFiniteLoss:
                pending.clear()
                raise
            if skipped:
                n_skipped += 1
                if lead:
                    progress.write(f"step {step + 1}: float16 gradients overflowed; update "
                                   f"skipped, loss scale now {values.get('loss_scale')}")
            else:
                rows.append(values)
        pending.clear()
        now = time.time()
        ips = n * cfg.batch_size / max(now - t_flush, 1e-9)
        t_flush = now
        if rows:
            last_train = {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}
        extra = {"skipped_steps": n_skipped} if cfg.dtype == "float16" else {}
        logger.log(step_done, "train", {**last_train, **extra, "images_per_sec": ips})
        progress.update(n, loss=f"{last_train.get('loss', float('nan')):.4f}",
                        img_s=f"{ips:.0f}")
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
                       last_train.get("loss"), time.time() - t_start, out,
                       skipped_steps=n_skipped)
    if lead and cfg.dtype == "float16":
        print(f"float16 loss scaling skipped {n_skipped} of {end - start} steps (gradients "
              "overflowed; those updates were not applied)")
    if lead and cfg.export and end == total:
        n = min(len(dataset.eval), EXPORT_CLIPS if dataset.is_video else EXPORT_EXAMPLES)
        images, labels = dataset.eval.get(np.arange(n))
        result.export = export_all(cfg, {"params": state.params,
                                         "batch_stats": state.batch_stats},
                                   images, labels, mean, std, dataset.num_classes, out)
    ckpt.close()
    if lead:
        summary = {"steps": result.steps, "total_steps": total, "eval": last_eval,
                   "train_loss": result.train_loss, "seconds": round(result.seconds, 1),
                   "devices": jax.device_count(), "parallel": driver.name,
                   "skipped_steps": n_skipped,
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
