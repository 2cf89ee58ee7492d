"""The training program: `setup` → `loop` → `finish`, run by `run(cfg)` (or `train(cfg)`).

`setup` opens the data, builds the model and the compiled steps, restores or initialises the
state; `loop` runs the steps with evaluation at each epoch end and periodic checkpoints; `finish`
exports to PyTorch, checks parity, plots the gates and writes the summary. Files under
`cfg.output_dir` (process 0): `config.json`, `metrics.jsonl`, `tensorboard/`, `checkpoints/`
(Orbax), `model.pth` (PyTorch export), `gates.png`, `summary.json`.

Failure modes: a batch size that the devices do not divide, a model that does not fit the data
(video vs images, inputs smaller than the network's stride) or a bad option raise `ConfigError`
before anything is compiled; a non-finite loss or gradient norm raises `NonFiniteLoss`
(`train.monitor`) naming the step, and no checkpoint is written after it, so the newest
checkpoint is the last good state. `--resume` restores the newest checkpoint that reads back and
matches its digest, reporting (and setting aside) any newer corrupt ones.

Interruption (`train.interrupt`): SIGTERM or SIGINT makes every process save a checkpoint of one
common step and raise `Interrupted`; `--resume` continues from it exactly. In a multi-process run
a failed collective (a peer process is gone) raises `PeerLost` (`train.supervisor`).
"""

from __future__ import annotations

import copy
import json
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
from se_spec.models import check_image
from train.api import compute_model
from train.checkpoint import Checkpointer
from train.config import ConfigError, TrainConfig, to_dict
from train.data import Dataset, channel_stats, load_dataset, steps_per_epoch
from train.export import export_all
from train.init_from import initial_variables
from train.interrupt import Interruption
from train.metrics import MetricLogger, Progress
from train.monitor import StepMetrics
from train.parallel import PmapDriver, ShardMapDriver, check_batch_size, make_driver
from train.pipeline import InputClock, default_workers, eval_batches, prefetch, train_batches
from train.step import (
    AXIS,
    create_state,
    make_eval_step,
    make_optimizer,
    make_train_step,
    warmup_cosine,
)
from train.supervisor import PeerLost, StepReporter, is_transport_failure

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}
EXPORT_EXAMPLES = 1024  # evaluation images used for the parity check and the gate plot
EXPORT_CLIPS = 64  # the same for video clips (each is `frames` images)
STATS_CLIPS = 256  # training clips sampled to measure mean/std of a video dataset


class Interrupted(Exception):
    """SIGTERM/SIGINT: a checkpoint of `step` was saved (on every process); the run stopped."""

    def __init__(self, step: int, signal_name: str, directory: Path) -> None:
        self.step, self.signal_name, self.directory = step, signal_name, directory
        super().__init__(f"{signal_name}: stopped after step {step}; checkpoint saved in "
                         f"{directory / str(step)}; continue with --resume")


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


@dataclass
class RunContext:
    """What `setup` prepares for `loop` and `finish`; `loop` advances `state` and `last_eval`."""

    cfg: TrainConfig
    dataset: Dataset
    mean: list[float]
    std: list[float]
    steps_per_epoch: int
    total: int  # steps of the whole schedule
    start: int  # first step to run (after a resume)
    end: int  # one past the last step to run
    driver: ShardMapDriver | PmapDriver
    state: Any  # on the devices
    checkpoints: Checkpointer
    metrics: StepMetrics
    workers: int  # input worker processes of this host
    started: float
    lead: bool  # process 0 writes the outputs
    interruption: Interruption
    last_eval: dict[str, float] = field(default_factory=dict)
    done: int | None = None  # steps finished so far (None before the first)

    @property
    def out(self) -> Path:
        """The output directory."""
        return Path(self.cfg.output_dir)


def init_distributed(cfg: TrainConfig, interruption: Interruption) -> None:
    """`jax.distributed.initialize` for multi-process runs (before any JAX computation).

    A process without a heartbeat for `cfg.peer_timeout` seconds counts as lost; SIGTERM is
    handled by JAX's preemption service from here on.
    """
    if cfg.coordinator_address is None:
        return
    jax.distributed.initialize(cfg.coordinator_address, cfg.num_processes, cfg.process_id,
                               heartbeat_timeout_seconds=cfg.peer_timeout)
    interruption.distributed_ready()


def mean_std(cfg: TrainConfig, dataset: Dataset) -> tuple[list[float], list[float]]:
    """Per-channel input mean and std: the configured ones, or measured on the training set."""
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


def check_model_input(cfg: TrainConfig, dataset: Dataset) -> None:
    """Video models need a video dataset and vice versa; inputs must fit the network's stride."""
    video_model = cfg.is_video_model()
    if video_model != dataset.is_video:
        if video_model:
            raise ConfigError(f"config: model {cfg.model!r} is a video model (input clips "
                              f"(N, T, H, W, C)) but dataset {dataset.name!r} has images "
                              f"{dataset.image_shape}; expected a video dataset such as ucf101")
        raise ConfigError(f"config: model {cfg.model!r} is an image model but dataset "
                          f"{dataset.name!r} has video clips {dataset.image_shape}; expected "
                          "a video model such as se_r3d_18")
    try:
        check_image(cfg.model, (1, *dataset.image_shape), dataset.image_shape[-1], -1, cfg.stem)
    except ValueError as e:
        hint = " (set frames / image_size)" if dataset.is_video else " (set image_size)"
        raise ConfigError(f"config: {e}{hint}") from None


def evaluate(driver: Any, state: Any, dataset: Dataset, batch: int, workers: int = 0
             ) -> dict[str, float]:
    """Loss and accuracy over the whole evaluation source."""
    sums = {"loss_sum": 0.0, "correct": 0.0, "count": 0.0}
    it = eval_batches(dataset.eval, batch, jax.process_index(), jax.process_count(), workers)
    for b in prefetch(it, driver.shard):
        for k, v in driver.metrics(driver.eval_step(state, *b)).items():
            sums[k] += v
    n = max(sums["count"], 1.0)
    return {"loss": sums["loss_sum"] / n, "accuracy": sums["correct"] / n,
            "examples": int(sums["count"])}


def setup(cfg: TrainConfig, interruption: Interruption | None = None) -> RunContext:
    """Data, model, compiled steps and the initial (or restored) state of a validated `cfg`.

    `interruption`: the signal handling of the run (`run` arms one; none: signals are not
    caught).
    """
    interruption = interruption or Interruption()
    init_distributed(cfg, interruption)
    started = time.time()
    lead = jax.process_index() == 0
    dataset = load_dataset(cfg.dataset, data_dir=cfg.data_dir, train_split=cfg.train_split,
                           eval_split=cfg.eval_split, image_size=cfg.image_size,
                           eval_fraction=cfg.eval_fraction, seed=cfg.seed,
                           frames=cfg.frames, frame_stride=cfg.frame_stride, crop=cfg.crop,
                           eval_resize=cfg.eval_resize)
    check_model_input(cfg, dataset)
    workers = default_workers(dataset.train) if cfg.workers is None else cfg.workers
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
    mean, std = mean_std(cfg, dataset)
    dtype = DTYPES[cfg.dtype]
    impl = resolve_implementation(cfg.impl)
    options = {**cfg.model_options(dataset.num_classes, dataset.image_shape[-1]),
               "dtype": dtype, "axis_name": AXIS, "impl": impl}
    model = create_model(cfg.model, **options)  # draws the initial weights in both APIs
    computed = model if cfg.api == "linen" else compute_model(cfg.api, cfg.model,
                                                              **options)
    schedule = warmup_cosine(cfg.peak_lr(), round(cfg.warmup_epochs * spe), total)
    tx = make_optimizer(cfg.optimizer, schedule, momentum=cfg.momentum, nesterov=cfg.nesterov,
                        weight_decay=cfg.weight_decay, b1=cfg.adam_b1, b2=cfg.adam_b2)
    state = jax.device_get(jax.jit(lambda k: create_state(
        model, tx, k, dataset.image_shape, float16=cfg.dtype == "float16"))(
        jax.random.key(cfg.seed)))
    state = jax.tree.map(np.array, state)  # own the memory: device buffers get donated

    out = Path(cfg.output_dir)
    checkpoints = Checkpointer(out / "checkpoints", cfg.keep_checkpoints)
    if cfg.init_from and not (cfg.resume and checkpoints.latest_step() is not None):
        start_from, report = initial_variables(cfg.init_from, model, dataset.num_classes,
                                               dataset.image_shape)
        state = state.replace(params=jax.tree.map(np.array, start_from["params"]),
                              batch_stats=jax.tree.map(np.array, start_from["batch_stats"]))
        if lead:
            print(report)
    if cfg.resume and checkpoints.latest_step() is not None:
        warn = (lambda m: print(f"se-train: {m}", file=sys.stderr, flush=True)) if lead \
            else (lambda m: None)
        state, _, restored_step = checkpoints.restore_newest_intact(state, warn)
        if lead:
            print(f"resumed from {checkpoints.directory}/{restored_step}")
    elif checkpoints.latest_step() is not None:
        raise ConfigError(f"config: {checkpoints.directory} already holds checkpoints (latest "
                          f"step {checkpoints.latest_step()}); pass --resume to continue that "
                          "run or choose another output_dir")
    start = int(state.step)
    if lead:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text(json.dumps(to_dict(cfg), indent=2) + "\n")

    train_step = make_train_step(computed, tx, schedule, num_classes=dataset.num_classes,
                                 mean=mean, std=std, crop_padding=cfg.crop_padding,
                                 flip=cfg.flip, label_smoothing=cfg.label_smoothing,
                                 seed=cfg.seed, dtype=dtype)
    eval_step = make_eval_step(computed, num_classes=dataset.num_classes, mean=mean, std=std,
                               dtype=dtype)
    driver = make_driver(cfg.parallel, train_step, eval_step,
                         compiler_options=impl.compiler_options())
    progress = Progress(end, start, enabled=lead and cfg.progress)
    metrics = StepMetrics(driver.metrics, MetricLogger(out, enabled=lead,
                                                       tensorboard=cfg.tensorboard),
                          progress, checkpoints, cfg.batch_size, cfg.dtype == "float16", lead,
                          InputClock(workers))
    if lead:
        progress.write(f"{cfg.model} ({cfg.api}) on {dataset.name} ({len(dataset.train)} "
                       f"train / {len(dataset.eval)} eval, {dataset.image_shape}), "
                       f"{jax.device_count()} device(s) via {driver.name}, batch "
                       f"{cfg.batch_size}, steps "
                       f"{start}→{end} of {total}, {workers} input worker(s) per host")
    return RunContext(cfg, dataset, mean, std, spe, total, start, end, driver,
                      driver.replicate(state), checkpoints, metrics, workers, started, lead,
                      interruption)


def loop(run: RunContext) -> None:
    """Train from `run.start` to `run.end`: evaluate at epoch ends, checkpoint periodically."""
    cfg, driver, metrics = run.cfg, run.driver, run.metrics
    batches = train_batches(run.dataset.train, run.start, run.end, cfg.batch_size, cfg.seed,
                            jax.process_index(), jax.process_count(), run.workers)
    feed = prefetch(batches, lambda b: (b.step, *driver.shard((b.images, b.labels)),
                                        len(b.labels), b.seconds))
    profiler = Profiler(cfg.profile_range(), run.out / "profile", run.lead)
    try:
        _run_steps(run, feed, profiler, StepReporter())
    except Exception as e:
        if jax.process_count() > 1 and is_transport_failure(e):
            first = str(e).strip().splitlines()[0][:300] if str(e).strip() else type(e).__name__
            raise PeerLost(run.start if run.done is None else run.done, first) from e
        raise
    finally:
        feed.close()  # stops the input workers, also when a step raised
    profiler.stop(run.state)
    metrics.flush(run.end)


def _run_steps(run: RunContext, feed: Any, profiler: Profiler, report: StepReporter) -> None:
    """The step loop of `loop`: wait for input, step, log, evaluate, checkpoint, stop on a signal.

    On an interruption the evaluation of an epoch ending at that step is skipped (a preempted
    job has seconds, not minutes); the checkpoint is written first.
    """
    cfg, driver, metrics = run.cfg, run.driver, run.metrics
    while True:
        waited = time.perf_counter()
        try:
            step, x, y, n, seconds = next(feed)
        except StopIteration:
            break
        metrics.input.waited(time.perf_counter() - waited)
        metrics.input.made(n, seconds)
        profiler.before(step)
        run.state, m = driver.train_step(run.state, x, y)
        profiler.after(step, run.state)
        metrics.add(step, m)
        done = step + 1
        stop = run.interruption.reached(done) and done < run.end  # every process, every step
        save = done == run.end or stop or (cfg.checkpoint_every and
                                           done % cfg.checkpoint_every == 0)
        epoch_end = done % run.steps_per_epoch == 0 or done == run.end
        if done % cfg.log_every == 0 or save or epoch_end:
            metrics.flush(done)  # checks for NaN/Inf before anything is saved
        run.done = done
        report(done)
        if epoch_end and not stop:
            run.last_eval = evaluate(driver, run.state, run.dataset, cfg.batch_size,
                                     run.workers)
            metrics.logger.log(done, "eval", {**run.last_eval,
                                              "epoch": done / run.steps_per_epoch})
            metrics.progress.write(
                f"epoch {done / run.steps_per_epoch:.2f} step {done}: train loss "
                f"{metrics.last.get('loss', float('nan')):.4f}, eval loss "
                f"{run.last_eval['loss']:.4f}, eval accuracy {run.last_eval['accuracy']:.4f}")
            metrics.restart_clock()  # evaluation does not count in images/sec
        if save:
            run.checkpoints.save(done, driver.unreplicate(run.state),
                                 {"step": done, "config": to_dict(cfg)})
        if stop:
            raise Interrupted(done, run.interruption.received or "SIGTERM",
                              run.checkpoints.directory)


class Profiler:
    """A `jax.profiler` trace of the steps `[first, stop)` (process 0 only), written to `path`."""

    def __init__(self, steps: tuple[int, int] | None, path: Path, enabled: bool) -> None:
        self.steps, self.path = (steps if enabled else None), path
        self.active = False

    def before(self, step: int) -> None:
        """Start the trace when `step` is the first profiled step."""
        if self.steps is not None and step == self.steps[0]:
            self.path.mkdir(parents=True, exist_ok=True)
            jax.profiler.start_trace(str(self.path))
            self.active = True

    def after(self, step: int, state: Any) -> None:
        """Stop the trace once the last profiled step has run."""
        if self.active and step + 1 >= self.steps[1]:
            self.stop(state)

    def stop(self, state: Any) -> None:
        """Wait for the traced work, then write the trace (no-op when not tracing)."""
        if self.active:
            jax.block_until_ready(state)
            jax.profiler.stop_trace()
            self.active = False
            print(f"profile of steps {self.steps[0]}:{self.steps[1]} written to {self.path} "
                  "(open it with TensorBoard's profile plugin or Perfetto)", file=sys.stderr)


def finish(run: RunContext) -> RunResult:
    """Export, parity check and gate plot, summary; returns the result.

    Runs when the loop reached its last step: the end of the schedule or `max_steps` (an
    interrupted run raises `Interrupted` before this and exports nothing).
    """
    cfg, lead, skipped = run.cfg, run.lead, run.metrics.skipped
    state = run.driver.unreplicate(run.state)
    result = RunResult(run.end, run.last_eval.get("accuracy"), run.last_eval.get("loss"),
                       run.metrics.last.get("loss"), time.time() - run.started, run.out,
                       skipped_steps=skipped)
    if lead and cfg.dtype == "float16":
        print(f"float16 loss scaling skipped {skipped} of {run.end - run.start} steps "
              "(gradients overflowed; those updates were not applied)")
    if lead and cfg.export:
        n = min(len(run.dataset.eval),
                EXPORT_CLIPS if run.dataset.is_video else EXPORT_EXAMPLES)
        images, labels = run.dataset.eval.get(np.arange(n))
        result.export = export_all(cfg, {"params": state.params,
                                         "batch_stats": state.batch_stats},
                                   images, labels, run.mean, run.std,
                                   run.dataset.num_classes, run.out)
    run.checkpoints.close()
    if lead:
        summary = {"steps": result.steps, "total_steps": run.total, "eval": run.last_eval,
                   "train_loss": result.train_loss, "seconds": round(result.seconds, 1),
                   "devices": jax.device_count(), "parallel": run.driver.name,
                   "skipped_steps": skipped, "export": result.export}
        (run.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return result


def run(cfg: TrainConfig) -> RunResult:
    """Run a validated configuration to the end (or to `max_steps`)."""
    interruption = Interruption()
    interruption.arm()
    try:
        prepared = setup(cfg, interruption)
        try:
            loop(prepared)
        except Interrupted:
            prepared.checkpoints.close()
            raise
        finally:
            prepared.metrics.close()
    finally:
        interruption.disarm()
    return finish(prepared)


def train(cfg: TrainConfig) -> RunResult:
    """Validate (a copy of) `cfg`, then run it; returns the final metrics."""
    return run(copy.deepcopy(cfg).validate())


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
