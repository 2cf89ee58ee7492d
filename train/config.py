"""Training configuration: one dataclass, read from a TOML/JSON file plus command-line overrides.

Every field is a command-line option (`--batch-size 256` or `--batch_size=256`) whose help text,
choices and group are the field's metadata; `--config FILE` loads a TOML or JSON file first, and
options given on the command line override it. `TrainConfig.validate` checks every value and
resolves the model options (the registry, the stem of video models) once, before anything is
compiled, so a bad configuration fails in milliseconds with a message that names the field.
"""

from __future__ import annotations

import dataclasses
import json
import tomllib
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from se_spec import mobilenet, vit
from se_spec.models import (
    FAMILY_STEMS,
    IMPL_CHOICES,
    MODEL_SPECS,
    NETWORK_STRIDE,
    NO_ATTENTION,
    model_spec,
    resolve_options,
)
from se_spec.variants import VARIANT_SPECS
from train.api import APIS
from train.transforms import CROPS

PARALLEL = ("shard_map", "pmap")
OPTIMIZERS = ("sgd", "adamw")
DTYPES = ("float32", "bfloat16", "float16")
IMAGE_STEMS = FAMILY_STEMS["resnet2d"]
RATIO_LAYERS = ("SqueezeExcite", "CBAM")  # attention layers with an `rd_ratio`
IMAGE_STEM_DEFAULT = "cifar"  # the training program's default: small images (digits, CIFAR)
DIGITS_SIDE = 8  # the embedded dataset's stored image side


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the field and what is expected."""


def option(default: Any, help: str, group: str, choices: tuple[Any, ...] | None = None,
           default_text: str | None = None, metavar: str | None = None) -> Any:
    """A config field with its command-line help, group, allowed values and default's meaning."""
    metadata = {"help": help, "group": group, "choices": choices, "default_text": default_text,
                "metavar": metavar}
    if isinstance(default, list):
        return dataclasses.field(default_factory=lambda: list(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


@dataclass
class TrainConfig:
    """Everything a run needs. The defaults train SE-ResNet-18 on scikit-learn's digits."""

    dataset: str = option("digits", "'digits' (embedded, no download), a TFDS name (cifar10, "
                          "ucf101, any image or video classification dataset) or folder:/path",
                          "data")
    data_dir: str | None = option(None, "TFDS data directory", "data",
                                  default_text="TFDS's own, ~/tensorflow_datasets",
                                  metavar="DIR")
    train_split: str = option("train", "TFDS split to train on", "data")
    eval_split: str = option("test", "TFDS split to evaluate on", "data")
    image_size: int | None = option(None, "resize images / video frames to this square size "
                                    "(a ViT's img_size)", "data",
                                    default_text="as stored; digits: 8, or the smallest side "
                                    "the model accepts with its default stem")
    frames: int = option(16, "video datasets: frames per clip (video models need >= 8)", "data")
    frame_stride: int = option(2, "video datasets: take every N-th frame", "data")
    eval_fraction: float = option(0.2, "held-out share for sources without a test split",
                                  "data")
    workers: int | None = option(None, "input worker processes per host (0: threads of the "
                                 "main process)", "data",
                                 default_text="0 for in-memory data, else min(8, CPU cores)")
    model: str = option("se_resnet18", "registered model: " + ", ".join(MODEL_SPECS), "model",
                        metavar="NAME")
    stem: str | None = option(None, f"image models: {' or '.join(IMAGE_STEMS)}; video models: "
                              "r3d", "model", (*IMAGE_STEMS, "r3d"),
                              default_text=f"{IMAGE_STEM_DEFAULT} for image models, r3d for "
                              "video models")
    attn: str | None = option(None, "attention variant replacing the model's own: "
                              + ", ".join((NO_ATTENTION, *VARIANT_SPECS)), "model",
                              default_text="the model's own", metavar="NAME")
    patch_size: int | None = option(None, "ViT models: side of the square patches (the image "
                                    "side must be a multiple of it)", "model",
                                    default_text="the model's own (16)")
    reduction: int | None = option(None, "SE reduction ratio r: the excitation's hidden width "
                                   "is channels / r (rounded as the model does)", "model",
                                   default_text="the model's own (16)")
    zero_init_last_bn: bool = option(False, "zero the scale of each block's last BatchNorm",
                                     "model")
    dtype: str = option("float32", "compute dtype; parameters stay float32 (float16 adds "
                        "dynamic loss scaling)", "model", DTYPES)
    impl: str = option("auto", "how the model is compiled (same numbers): auto = cpu on the "
                       "CPU backend, xla elsewhere; see se_flax.implementation", "model",
                       IMPL_CHOICES)
    api: str = option("linen", "which Flax API computes the model: linen modules or their nnx "
                      "twins (same variables, checkpoints and numbers)", "model", APIS)
    optimizer: str = option("sgd", "sgd (momentum/Nesterov, PyTorch SGD semantics) or adamw",
                            "optimisation", OPTIMIZERS)
    lr: float = option(0.1, "peak learning rate, after the warm-up", "optimisation")
    lr_base_batch: int | None = option(None, "linear scaling: the peak rate is lr * batch_size "
                                       "/ lr_base_batch", "optimisation",
                                       default_text="lr as given")
    momentum: float = option(0.9, "SGD momentum", "optimisation")
    nesterov: bool = option(True, "Nesterov momentum (SGD)", "optimisation")
    weight_decay: float = option(5e-4, "weight decay, not on BatchNorm parameters or biases",
                                 "optimisation")
    adam_b1: float = option(0.9, "AdamW beta1", "optimisation")
    adam_b2: float = option(0.999, "AdamW beta2", "optimisation")
    warmup_epochs: float = option(1.0, "linear warm-up, then cosine decay to zero",
                                  "optimisation")
    epochs: int = option(6, "epochs the schedule spans", "optimisation")
    batch_size: int = option(64, "global batch over all devices and processes",
                             "optimisation")
    label_smoothing: float = option(0.1, "label smoothing of the cross-entropy",
                                    "optimisation")
    crop: str = option("resize", "host crop of images: resize (whole image to image_size) "
                       "or random_resized (ImageNet: 8-100% area, ratio 3/4-4/3; evaluation "
                       "resizes the shorter side to eval_resize, then centre-crops)",
                       "augmentation", CROPS)
    eval_resize: int | None = option(None, "random_resized: shorter side before the central "
                                     "evaluation crop", "augmentation",
                                     default_text="image_size * 256 / 224")
    crop_padding: int = option(1, "pad-N random crop on the device (CIFAR uses 4; 0: none)",
                               "augmentation")
    flip: bool = option(False, "random horizontal flip (not for digits)", "augmentation")
    mean: list[float] | None = option(None, "per-channel input mean", "augmentation",
                                      default_text="measured on the training set")
    std: list[float] | None = option(None, "per-channel input std", "augmentation",
                                     default_text="measured on the training set")
    parallel: str = option("shard_map", "shard_map (jax.jit over jax.shard_map on a Mesh) or "
                           "pmap; the same per-device step", "parallelism", PARALLEL)
    coordinator_address: str | None = option(None, "multi-host: HOST:PORT of process 0 "
                                             "(jax.distributed.initialize)", "parallelism")
    num_processes: int | None = option(None, "multi-host: number of processes",
                                       "parallelism")
    process_id: int | None = option(None, "multi-host: this process's index", "parallelism")
    peer_timeout: int = option(30, "multi-host: seconds without a heartbeat after which a "
                               "process counts as lost (the others then stop, status 7)",
                               "parallelism")
    seed: int = option(0, "initialisation, batch order and augmentation", "run")
    output_dir: str = option("runs/default", "checkpoints, logs, export and plots", "run",
                             metavar="DIR")
    init_from: str | None = option(None, "start from this run's newest weights (SE widths "
                                   "adapted with widen_se); optimiser and schedule start "
                                   "afresh", "run", metavar="RUN_DIR")
    resume: bool = option(False, "continue from the newest checkpoint in output_dir", "run")
    log_every: int = option(10, "steps between metric lines", "run")
    checkpoint_every: int = option(100, "steps between checkpoints (the last step is always "
                                   "saved; 0: only the last)", "run")
    keep_checkpoints: int = option(3, "checkpoints kept", "run")
    max_steps: int | None = option(None, "stop early (the schedule still spans all epochs)",
                                   "run", default_text="all steps of all epochs")
    export: bool = option(True, "PyTorch export, logits parity check and SE gate plot at the "
                          "end", "run")
    progress: bool = option(True, "progress bar", "run")
    profile_steps: str | None = option(None, "A:B writes a jax.profiler trace of steps A to "
                                       "B-1 to output_dir/profile", "run", metavar="A:B")
    tensorboard: bool = option(True, "TensorBoard event files", "run")

    def validate(self) -> TrainConfig:
        """Check every value and resolve the model's stem; return self."""
        def need(cond: bool, name: str, expected: str) -> None:
            if not cond:
                raise ConfigError(f"config: {name}={getattr(self, name)!r} is invalid; "
                                  f"expected {expected}")

        for name in ("parallel", "optimizer", "dtype", "impl", "api"):
            allowed = FIELDS[name].metadata["choices"]
            need(getattr(self, name) in allowed, name,
                 "one of " + ", ".join(map(repr, allowed)))
        for name in ("batch_size", "epochs", "log_every", "keep_checkpoints", "frames",
                     "frame_stride"):
            need(_is_int(getattr(self, name)) and getattr(self, name) >= 1, name,
                 "an integer >= 1")
        for name in ("checkpoint_every", "crop_padding"):
            need(_is_int(getattr(self, name)) and getattr(self, name) >= 0, name,
                 "an integer >= 0")
        if self.max_steps is not None:
            need(_is_int(self.max_steps) and self.max_steps >= 1, "max_steps", "an integer >= 1")
        if self.image_size is not None:
            need(_is_int(self.image_size) and self.image_size >= 1, "image_size",
                 "an integer >= 1")
        if self.reduction is not None:
            need(_is_int(self.reduction) and self.reduction >= 1, "reduction", "an integer >= 1")
        if self.patch_size is not None:
            need(_is_int(self.patch_size) and self.patch_size >= 1, "patch_size",
                 "an integer >= 1")
        if self.workers is not None:
            need(_is_int(self.workers) and self.workers >= 0, "workers", "an integer >= 0")
        if self.lr_base_batch is not None:
            need(_is_int(self.lr_base_batch) and self.lr_base_batch >= 1, "lr_base_batch",
                 "an integer >= 1")
        need(self.crop in CROPS, "crop", "one of " + ", ".join(map(repr, CROPS)))
        need(self.crop != "random_resized" or self.image_size is not None, "crop",
             "'resize' when image_size is not set (random_resized needs image_size)")
        if self.eval_resize is not None:
            need(_is_int(self.eval_resize) and self.eval_resize >= (self.image_size or 1),
                 "eval_resize", "an integer >= image_size")
        if self.profile_steps is not None:
            need(_profile_range(self.profile_steps) is not None, "profile_steps",
                 "A:B with integers 0 <= A < B")
        need(self.lr > 0, "lr", "a number > 0")
        need(self.weight_decay >= 0, "weight_decay", "a number >= 0")
        need(0 <= self.momentum < 1, "momentum", "a number in [0, 1)")
        need(0 <= self.label_smoothing < 1, "label_smoothing", "a number in [0, 1)")
        need(self.warmup_epochs >= 0, "warmup_epochs", "a number >= 0")
        need(0 < self.eval_fraction < 1, "eval_fraction", "a number in (0, 1)")
        for name in ("mean", "std"):
            v = getattr(self, name)
            need(v is None or (len(v) > 0 and all(isinstance(x, int | float) for x in v)),
                 name, "a list of per-channel numbers")
        need(self.std is None or all(s > 0 for s in self.std), "std", "positive numbers")
        need(self.peer_timeout >= 1, "peer_timeout", "a number of seconds >= 1")
        multi = (self.coordinator_address, self.num_processes, self.process_id)
        need(all(v is None for v in multi) or all(v is not None for v in multi),
             "coordinator_address", "coordinator_address, num_processes and process_id "
             "given together (or none of them)")
        self._resolve_model()
        return self

    def _resolve_model(self) -> None:
        """Registry name, stem and attention checked; the stem resolved for the model family."""
        try:
            family = model_spec(self.model).family
        except ValueError as e:
            raise ConfigError(f"config: model={self.model!r} is invalid; {e}") from None
        if self.patch_size is not None and family != vit.FAMILY:
            raise ConfigError(f"config: patch_size={self.patch_size!r} is invalid; expected no "
                              f"patch_size for {self.model} (only ViT models have patches)")
        default_stem = self.stem is None
        if default_stem:
            stems = FAMILY_STEMS[family]
            self.stem = IMAGE_STEM_DEFAULT if IMAGE_STEM_DEFAULT in stems else stems[0]
        if self.dataset == "digits" and self.image_size is None and default_stem:
            side = self._smallest_side(family)
            if side > DIGITS_SIDE or family == vit.FAMILY:  # a ViT's img_size is the side
                self.image_size = side
        if family == vit.FAMILY and self.image_size is None:
            raise ConfigError(f"config: image_size=None is invalid for {self.model}; expected "
                              "the image side (the ViT's img_size, a multiple of patch_size)")
        try:
            resolved = resolve_options(self.model, stem=self.stem, attn=self.attn,
                                       attn_kwargs=self._attn_kwargs(),
                                       zero_init_last_bn=self.zero_init_last_bn,
                                       **self._family_options())
        except (ValueError, TypeError) as e:
            raise ConfigError(f"config: {e}") from None
        layer = VARIANT_SPECS.get(resolved["attn"], ("",))[0]
        if self.reduction is not None and layer not in RATIO_LAYERS:
            raise ConfigError(f"config: reduction={self.reduction!r} is invalid; expected a "
                              f"model whose attention has a reduction ratio ({self.model} "
                              f"with attn {resolved['attn']!r} has none)")

    def _smallest_side(self, family: str) -> int:
        """Smallest digits side the model accepts (its stride; a ViT: a multiple of the patch)."""
        if family == vit.FAMILY:
            patch = self.patch_size or vit.DEFAULT_PATCH_SIZE
            return -(-DIGITS_SIDE // patch) * patch
        strides = mobilenet.NETWORK_STRIDE if family == mobilenet.FAMILY else NETWORK_STRIDE
        return strides[self.stem]

    def _family_options(self) -> dict[str, Any]:
        """`img_size` (the image side) and `patch_size` of ViT models; nothing for others."""
        if model_spec(self.model).family != vit.FAMILY:
            return {}
        options = {"img_size": self.image_size}
        if self.patch_size is not None:
            options["patch_size"] = self.patch_size
        return options

    def model_options(self, num_classes: int, in_chans: int) -> dict[str, Any]:
        """The `create_model` options both frameworks share, for a validated configuration."""
        options = {"num_classes": num_classes, "stem": self.stem, "in_chans": in_chans,
                   "zero_init_last_bn": self.zero_init_last_bn, **self._family_options()}
        if self.attn is not None:
            options["attn"] = self.attn
        if self.reduction is not None:
            options["attn_kwargs"] = self._attn_kwargs()
        return options

    def _attn_kwargs(self) -> dict[str, Any] | None:
        """The attention options the config sets (the reduction ratio), or None."""
        return None if self.reduction is None else {"rd_ratio": 1 / self.reduction}

    def peak_lr(self) -> float:
        """The learning rate after the warm-up (scaled by the batch when lr_base_batch is set)."""
        if self.lr_base_batch is None:
            return self.lr
        return self.lr * self.batch_size / self.lr_base_batch

    def profile_range(self) -> tuple[int, int] | None:
        """`(first, stop)` steps of the profiler trace, or None."""
        return None if self.profile_steps is None else _profile_range(self.profile_steps)

    def is_video_model(self) -> bool:
        """Whether the model takes clips `(N, T, H, W, C)` (the `r3d` family)."""
        return model_spec(self.model).family == "r3d"


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _profile_range(text: str) -> tuple[int, int] | None:
    """`"A:B"` → `(A, B)` when `0 <= A < B`, else None."""
    parts = str(text).split(":")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        return None
    first, stop = int(parts[0]), int(parts[1])
    return (first, stop) if first < stop else None


FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}


def base_type(name: str) -> tuple[type, bool]:
    """`(element type, is_list)` of a field annotation such as `int | None` or `list[float]`."""
    hint = typing.get_type_hints(TrainConfig)[name]
    args = [a for a in typing.get_args(hint) if a is not type(None)] \
        if isinstance(hint, types.UnionType) else [hint]
    inner = args[0]
    if typing.get_origin(inner) is list:
        return typing.get_args(inner)[0], True
    return inner, False


def parse_value(name: str, text: str) -> Any:
    """Parse one command-line string for field `name` (`none` gives None)."""
    if name not in FIELDS:
        raise ConfigError(f"config: unknown option {name!r}; expected one of "
                          f"{', '.join(FIELDS)}")
    kind, is_list = base_type(name)
    if text.lower() in ("none", "null") and name != "dataset":
        return None
    try:
        if is_list:
            return [kind(v) for v in text.replace(",", " ").split()]
        if kind is bool:
            if text.lower() in ("1", "true", "yes", "on"):
                return True
            if text.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(text)
        return kind(text)
    except ValueError:
        raise ConfigError(f"config: {name}={text!r} is invalid; expected "
                          f"{'a list of ' if is_list else 'a '}{kind.__name__}") from None


def from_mapping(values: dict[str, Any], base: TrainConfig | None = None) -> TrainConfig:
    """Apply a mapping of field values (from a file) to `base`, checking names and types."""
    cfg = dataclasses.replace(base or TrainConfig())
    for key, value in values.items():
        name = key.replace("-", "_")
        if name not in FIELDS:
            raise ConfigError(f"config: unknown option {key!r}; expected one of "
                              f"{', '.join(FIELDS)}")
        kind, is_list = base_type(name)
        ok = value is None or (isinstance(value, list) if is_list else
                               isinstance(value, kind) and not (kind is not bool and
                                                                isinstance(value, bool))
                               or (kind is float and _is_int(value)))
        if not ok:
            raise ConfigError(f"config: {name}={value!r} has the wrong type; expected "
                              f"{'a list' if is_list else kind.__name__}")
        setattr(cfg, name, float(value) if kind is float and _is_int(value) else value)
    return cfg


def load_file(path: str | Path) -> dict[str, Any]:
    """Read a TOML (`.toml`) or JSON file of field values."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config: file {str(p)!r} does not exist")
    try:
        if p.suffix == ".toml":
            return tomllib.loads(p.read_text())
        if p.suffix == ".json":
            return json.loads(p.read_text())
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as e:
        raise ConfigError(f"config: cannot parse {p}: {e}") from None
    raise ConfigError(f"config: {p} has suffix {p.suffix!r}; expected .toml or .json")


def to_dict(cfg: TrainConfig) -> dict[str, Any]:
    """The configuration as a JSON-serialisable dict."""
    return dataclasses.asdict(cfg)


def builtin_config(name: str) -> Path:
    """Path of a configuration shipped in `train/configs` (e.g. `cifar10`)."""
    return Path(__file__).parent / "configs" / f"{name}.toml"


__all__ = ["TrainConfig", "ConfigError", "parse_value", "from_mapping", "load_file", "to_dict",
           "builtin_config"]
