"""`se-train` / `python -m train`: train an SE network, export it to PyTorch, plot its gates.

With no arguments it trains SE-ResNet-18 (CIFAR stem) on the embedded digits dataset into
`runs/default`. Every field of `train.config.TrainConfig` is an option (`--batch-size 128`,
`--lr=0.05`, `--mean 0.49 0.48 0.45`, `--flip` or `--flip false`); `--config cifar10` uses a
shipped config file. Exit status: 0 done, 2 bad configuration, 3 dataset unavailable,
4 non-finite loss, 5 PyTorch parity check failed, 6 interrupted by SIGTERM/SIGINT (a checkpoint
of the step reached was saved; continue with --resume), 7 a process of a multi-process run was
lost (the survivors stop; resume every process from the last complete checkpoint).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from train.config import (
    FIELDS,
    ConfigError,
    TrainConfig,
    base_type,
    builtin_config,
    from_mapping,
    load_file,
    parse_value,
)

EXIT_CONFIG, EXIT_DATA, EXIT_NONFINITE, EXIT_PARITY, EXIT_INTERRUPTED = 2, 3, 4, 5, 6
GROUPS = {"data": "data", "model": "model", "optimisation": "optimisation",
          "augmentation": "augmentation (on the device, inside the compiled step)",
          "parallelism": "parallelism", "run": "run"}


def _show(value: object) -> str:
    """A default as it is typed on the command line."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return " ".join(map(str, value))
    return "none" if value is None else str(value)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser: `--config` plus one option per config field, grouped."""
    p = argparse.ArgumentParser(prog="se-train", description=__doc__.split("\n\n")[0],
                                epilog="Options given on the command line override --config.")
    p.add_argument("--config", metavar="FILE|NAME",
                   help="TOML/JSON file of options, or a shipped name (cifar10, cifar100)")
    groups = {key: p.add_argument_group(title) for key, title in GROUPS.items()}
    defaults = TrainConfig()
    for name, f in FIELDS.items():
        kind, is_list = base_type(name)
        choices = f.metadata["choices"]
        flags = [f"--{name.replace('_', '-')}"] + ([f"--{name}"] if "_" in name else [])
        metavar = "{" + ",".join(choices) + "}" if choices else \
            f.metadata["metavar"] or kind.__name__.upper()
        what = f"list of {kind.__name__}" if is_list else kind.__name__
        default = f.metadata["default_text"] or _show(getattr(defaults, name))
        text = f"{f.metadata['help']} ({what}; default: {default})"
        group = groups[f.metadata["group"]]
        if kind is bool and not is_list:
            group.add_argument(*flags, dest=name, nargs="?", const="true", default=None,
                               metavar="BOOL", help=text)
        else:
            group.add_argument(*flags, dest=name, nargs="+" if is_list else None, default=None,
                               metavar=metavar, help=text)
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
    try:
        cfg = config_from_args(argv)
    except ConfigError as e:
        print(f"se-train: {e}", file=sys.stderr)
        return EXIT_CONFIG
    from train import supervisor

    if cfg.coordinator_address is not None and not supervisor.supervised():
        command = [sys.executable, "-m", "train", *(sys.argv[1:] if argv is None else argv)]
        return supervisor.supervise(command, cfg.process_id, cfg.num_processes,
                                    cfg.output_dir)
    from train.data import DatasetUnavailable
    from train.folder import ImageError
    from train.loop import Interrupted, run
    from train.monitor import NonFiniteLoss

    try:
        result = run(cfg)
    except Interrupted as e:
        print(f"se-train: {e}", file=sys.stderr, flush=True)
        return EXIT_INTERRUPTED
    except supervisor.PeerLost as e:
        peer = supervisor.lost_peer_name(e.cause, cfg.process_id, cfg.num_processes)
        print(supervisor.lost_line(cfg.process_id, cfg.num_processes, e.step,
                                   f"lost {peer} ({e.cause})", cfg.output_dir),
              file=sys.stderr, flush=True)
        os._exit(supervisor.EXIT_LOST_PEER)  # JAX's shutdown would wait for the lost peer
    except ConfigError as e:
        print(f"se-train: {e}", file=sys.stderr)
        return EXIT_CONFIG
    except (DatasetUnavailable, ImageError) as e:
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
