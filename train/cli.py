"""Command line: `se-train` / `python -m train [--config FILE] [--FIELD VALUE ...] [--resume]`.

With no arguments it trains SE-ResNet-18 (CIFAR stem) on the embedded digits dataset into
`runs/default`. Every field of `train.config.TrainConfig` is an option (`--batch-size 128`,
`--lr=0.05`, `--mean 0.49 0.48 0.45`); `--config cifar10` uses a shipped config file.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from train.config import (
    FIELDS,
    ConfigError,
    TrainConfig,
    _base_type,
    builtin_config,
    from_mapping,
    load_file,
    parse_value,
)

EXIT_CONFIG, EXIT_DATA, EXIT_NONFINITE, EXIT_PARITY = 2, 3, 4, 5


def build_parser() -> argparse.ArgumentParser:
    """The argument parser: `--config` plus one option per config field."""
    p = argparse.ArgumentParser(prog="se-train", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--config", help="TOML/JSON file of options, or a shipped name (cifar10, "
                                    "cifar100); command-line options override it")
    defaults = TrainConfig()
    for name in FIELDS:
        kind, is_list = _base_type(name)
        flags = [f"--{name.replace('_', '-')}"] + ([f"--{name}"] if "_" in name else [])
        if kind is bool and not is_list:
            p.add_argument(*flags, dest=name, nargs="?", const="true", default=None,
                           metavar="BOOL", help=f"(default {getattr(defaults, name)})")
        else:
            p.add_argument(*flags, dest=name, nargs="+" if is_list else None, default=None,
                           metavar=kind.__name__.upper(),
                           help=f"(default {getattr(defaults, name)})")
    return p


def config_from_args(argv: list[str] | None = None) -> TrainConfig:
    """Parse `argv` into a validated `TrainConfig`."""
    args = build_parser().parse_args(argv)
    cfg = TrainConfig()
    if args.config:
        path = Path(args.config)
        if not path.exists() and builtin_config(args.config).exists():
            path = builtin_config(args.config)
        cfg = from_mapping(load_file(path), cfg)
    for name in FIELDS:
        raw = getattr(args, name)
        if raw is None:
            continue
        value = parse_value(name, " ".join(raw)) if isinstance(raw, list) else \
            parse_value(name, raw)
        setattr(cfg, name, value)
    return cfg.validate()


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    from train.data import DatasetUnavailable

    try:
        cfg = config_from_args(argv)
    except ConfigError as e:
        print(f"se-train: {e}", file=sys.stderr)
        return EXIT_CONFIG
    from train.loop import NonFiniteLoss, train

    try:
        result = train(cfg)
    except ConfigError as e:
        print(f"se-train: {e}", file=sys.stderr)
        return EXIT_CONFIG
    except DatasetUnavailable as e:
        print(f"se-train: {e}", file=sys.stderr)
        return EXIT_DATA
    except NonFiniteLoss as e:
        print(f"se-train: {e}", file=sys.stderr)
        return EXIT_NONFINITE
    acc = "n/a" if result.eval_accuracy is None else f"{result.eval_accuracy:.4f}"
    print(f"done: {result.steps} steps in {result.seconds:.0f} s, eval accuracy {acc}, "
          f"outputs in {result.output_dir}")
    parity = result.export.get("parity")
    for key, value in result.export.items():
        if key != "parity":
            print(f"  {key}: {value}")
    if parity is not None:
        print(f"  PyTorch logits parity: max rel {parity['max_rel']:.2e} (tolerance "
              f"{parity['tolerance']:.0e}) {'ok' if parity['ok'] else 'FAILED'}")
        if not parity["ok"]:
            return EXIT_PARITY
    return 0
