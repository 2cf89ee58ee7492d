"""Training configuration: one flat dataclass, read from a TOML/JSON file plus CLI overrides.

Every field is a command-line option (`--batch-size 256` or `--batch_size=256`); `--config FILE`
loads a TOML or JSON file first, and options given on the command line override it. Values are
validated before anything is compiled, so a bad configuration fails in milliseconds with a
message that names the field.
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

PARALLEL = ("shard_map", "pmap")
OPTIMIZERS = ("sgd", "adamw")
DTYPES = ("float32", "bfloat16", "float16")


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the field and what is expected."""


@dataclass
class TrainConfig:
    """Everything a run needs. The defaults train SE-ResNet-18 on scikit-learn's digits."""

    # Data: "digits" (embedded), "folder:/path" (class per sub-folder) or a TFDS name.
    dataset: str = "digits"
    data_dir: str | None = None  # TFDS data_dir (default: TFDS's own, ~/tensorflow_datasets)
    train_split: str = "train"
    eval_split: str = "test"
    image_size: int | None = None  # resize folder images / video frames to this square size
    frames: int = 16  # video datasets: frames per clip (video models need >= 8)
    frame_stride: int = 2  # video datasets: take every `frame_stride`-th frame
    eval_fraction: float = 0.2  # held-out share for sources without a test split
    # Model.
    model: str = "se_resnet18"
    stem: str = "cifar"  # image models; video models (r3d_*) always use their "r3d" stem
    attn: str | None = None  # override the model's attention variant
    zero_init_last_bn: bool = False
    dtype: str = "float32"  # compute dtype; parameters are always float32
    # Optimisation.
    optimizer: str = "sgd"
    lr: float = 0.1  # peak learning rate (after warm-up)
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4  # not applied to BatchNorm parameters and biases
    adam_b1: float = 0.9
    adam_b2: float = 0.999
    warmup_epochs: float = 1.0
    epochs: int = 6
    batch_size: int = 64  # global batch, over all devices and processes
    label_smoothing: float = 0.1
    # Augmentation, done on the device inside the compiled step.
    crop_padding: int = 1  # pad-p random crop (CIFAR uses 4)
    flip: bool = False  # random horizontal flip (not for digits)
    mean: list[float] | None = None  # per-channel; None: measured on the training set
    std: list[float] | None = None
    # Parallelism.
    parallel: str = "shard_map"
    coordinator_address: str | None = None  # multi-host: jax.distributed.initialize
    num_processes: int | None = None
    process_id: int | None = None
    # Run.
    seed: int = 0
    output_dir: str = "runs/default"
    resume: bool = False
    log_every: int = 10
    checkpoint_every: int = 100  # steps; the last step is always saved
    keep_checkpoints: int = 3
    max_steps: int | None = None  # stop early (the schedule still spans all epochs)
    export: bool = True  # PyTorch export, parity check and gate plot at the end
    progress: bool = True
    tensorboard: bool = True

    def validate(self) -> TrainConfig:
        """Check ranges and choices; return self."""
        def need(cond: bool, name: str, expected: str) -> None:
            if not cond:
                raise ConfigError(f"config: {name}={getattr(self, name)!r} is invalid; "
                                  f"expected {expected}")

        choice = lambda name, allowed: need(  # noqa: E731
            getattr(self, name) in allowed, name, "one of " + ", ".join(map(repr, allowed)))
        choice("parallel", PARALLEL)
        choice("optimizer", OPTIMIZERS)
        choice("dtype", DTYPES)
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
        multi = (self.coordinator_address, self.num_processes, self.process_id)
        need(all(v is None for v in multi) or all(v is not None for v in multi),
             "coordinator_address", "coordinator_address, num_processes and process_id "
             "given together (or none of them)")
        return self


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}


def _base_type(annotation: Any) -> tuple[type, bool]:
    """`(element type, is_list)` of a field annotation such as `int | None` or `list[float]`."""
    hint = typing.get_type_hints(TrainConfig)[annotation]
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
    kind, is_list = _base_type(name)
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
        kind, is_list = _base_type(name)
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
