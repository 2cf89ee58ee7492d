"""Compare configurations over seeds: `python -m train.compare --preset article-table --seeds 2`.

Trains every row of a preset with the same recipe (the training program's defaults, or
`--config FILE` and `--set option=value` overrides) over `--seeds N`, then writes
`comparison.md` (table), `comparison.json` and `comparison.png` (accuracy with error bars) to
`--output-dir`. Per row: parameters and MACs (counted on the Flax model for one input), test
accuracy mean ± std over seeds, train seconds per epoch (from the logged images/s, the first
logged interval — compilation — left out) and its ratio to the first row. Each run keeps its
own output directory, so an interrupted comparison resumes: finished runs are read back,
unfinished ones continue from their newest checkpoint.

Presets: `article-table` (ResNet vs SE-ResNet of one depth, the article's §4 table),
`ratio-sweep` (SE reduction r = 4, 8, 16, 32: the article's §5.1, the SENet paper's Table 5) and
`ratio-finetune` (the article's closing tip: train with r = 16, widen to r = 8 with `widen_se`
and fine-tune, against r = 16 and r = 8 trained for the same total epochs).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
from pathlib import Path
from typing import Any

from train.config import (
    ConfigError,
    TrainConfig,
    builtin_config,
    from_mapping,
    load_file,
    parse_value,
)

PRESETS: dict[str, list[tuple[str, dict[str, Any]]]] = {
    "article-table": [("ResNet-{depth}", {"model": "resnet{depth}"}),
                      ("SE-ResNet-{depth}", {"model": "se_resnet{depth}"})],
    "ratio-sweep": [(f"SE-ResNet-{{depth}}, r={r}", {"model": "se_resnet{depth}", "reduction": r})
                    for r in (4, 8, 16, 32)],
    # The article's tip: half the epochs with r = 16, widened to r = 8 (`widen_se`, same
    # function), the other half fine-tuned with a fresh schedule; against either ratio alone.
    "ratio-finetune": [("SE-ResNet-{depth}, r=16", {"model": "se_resnet{depth}", "reduction": 16}),
                       ("SE-ResNet-{depth}, r=8", {"model": "se_resnet{depth}", "reduction": 8}),
                       ("SE-ResNet-{depth}, r=16 then 8", {"model": "se_resnet{depth}",
                                                           "reduction": 8, "pretrain": 16})],
}


def rows_of(preset: str, depth: int) -> list[tuple[str, dict[str, Any]]]:
    """The `(label, overrides)` rows of `preset` for networks of `depth` layers."""
    if preset not in PRESETS:
        raise ConfigError(f"compare: preset {preset!r} is unknown; expected one of "
                          f"{', '.join(PRESETS)}")
    return [(label.format(depth=depth), {k: v.format(depth=depth) if isinstance(v, str) else v
                                         for k, v in over.items()})
            for label, over in PRESETS[preset]]


def model_cost(cfg: TrainConfig, num_classes: int, shape: tuple[int, ...]) -> tuple[int, int]:
    """`(parameters, MACs)` of the configured Flax model for one input of `shape`."""
    from se_flax.flops import model_cost as flax_cost
    from se_flax.models import create_model

    model = create_model(cfg.model, **cfg.model_options(num_classes, shape[-1]))
    return flax_cost(model, (1, *shape))


def seconds_per_epoch(run_dir: Path, images_per_epoch: int) -> float:
    """Training seconds per epoch from the logged images/s (first interval left out)."""
    rates = [json.loads(line)["images_per_sec"] for line in
             (run_dir / "metrics.jsonl").read_text().splitlines()
             if json.loads(line)["split"] == "train"]
    steady = rates[1:] or rates
    return images_per_epoch / statistics.median(steady)


def run_one(cfg: TrainConfig) -> dict[str, Any]:
    """Train `cfg` (or read back a finished run; resume an unfinished one); its summary."""
    from train.loop import run

    out = Path(cfg.output_dir)
    summary = out / "summary.json"
    if not summary.exists():
        cfg.resume = (out / "checkpoints").is_dir()
        run(cfg)
    return json.loads(summary.read_text())


def compare(base: TrainConfig, rows: list[tuple[str, dict[str, Any]]], seeds: int,
            out_dir: Path) -> list[dict[str, Any]]:
    """Train every row over `seeds` seeds; one result dict per row."""
    from train.data import load_dataset

    results = []
    for label, overrides in rows:
        accs, secs, cost = [], [], None
        for seed in range(seeds):
            slug = label.lower().replace(" ", "").replace(",", "_").replace("=", "")
            run_dir = out_dir / slug / f"seed{seed}"
            options = {k: v for k, v in overrides.items() if k != "pretrain"}
            cfg = dataclasses.replace(base, **options, seed=seed, output_dir=str(run_dir))
            if "pretrain" in overrides:  # first half with the pretraining ratio, then widen
                first = max(1, base.epochs // 2)
                pre = dataclasses.replace(cfg, reduction=overrides["pretrain"], epochs=first,
                                          output_dir=str(run_dir / "pretrain")).validate()
                run_one(pre)
                cfg = dataclasses.replace(cfg, epochs=max(1, base.epochs - first),
                                          init_from=pre.output_dir,
                                          output_dir=str(run_dir / "finetune"))
            cfg = cfg.validate()
            summary = run_one(cfg)
            accs.append(summary["eval"]["accuracy"])
            if cost is None:
                data = load_dataset(cfg.dataset, data_dir=cfg.data_dir, image_size=cfg.image_size,
                                    eval_fraction=cfg.eval_fraction, seed=cfg.seed)
                cost = model_cost(cfg, data.num_classes, data.image_shape)
                per_epoch = len(data.train) // cfg.batch_size * cfg.batch_size
            secs.append(seconds_per_epoch(Path(cfg.output_dir), per_epoch))
        results.append({"label": label, "model": overrides["model"],
                        "pretrain_reduction": overrides.get("pretrain"),
                        "reduction": overrides.get("reduction"), "params": cost[0],
                        "macs": cost[1], "accuracy": accs,
                        "accuracy_mean": statistics.fmean(accs),
                        "accuracy_std": statistics.stdev(accs) if len(accs) > 1 else 0.0,
                        "seconds_per_epoch": statistics.fmean(secs)})
    return results


def table(results: list[dict[str, Any]], seeds: int) -> str:
    """The Markdown table of `results`."""
    first = results[0]["seconds_per_epoch"]
    lines = [f"| model | params | MACs | test accuracy (mean ± std, {seeds} seeds) | "
             "s / epoch | time vs first row |", "|---|---:|---:|---:|---:|---:|"]
    for r in results:
        lines.append(f"| {r['label']} | {r['params'] / 1e6:.2f}M | {r['macs'] / 1e6:.1f}M | "
                     f"{100 * r['accuracy_mean']:.2f} ± {100 * r['accuracy_std']:.2f} % | "
                     f"{r['seconds_per_epoch']:.2f} | {r['seconds_per_epoch'] / first:.2f}x |")
    return "\n".join(lines) + "\n"


def plot(results: list[dict[str, Any]], path: Path, title: str) -> None:
    """Accuracy per row with the spread over seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(1.8 + 1.4 * len(results), 3.4))
    labels = [r["label"] for r in results]
    means = [100 * r["accuracy_mean"] for r in results]
    ax.bar(labels, means, yerr=[100 * r["accuracy_std"] for r in results], capsize=4,
           color="#6a8fbf")
    for i, r in enumerate(results):
        ax.scatter([i] * len(r["accuracy"]), [100 * a for a in r["accuracy"]], color="black",
                   s=10, zorder=3)
    low = min(100 * min(r["accuracy"]) for r in results)
    ax.set_ylim(max(0, low - 2), min(100, max(means) + 1.5))
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(title, fontsize=9)
    ax.tick_params(axis="x", labelsize=7)
    fig.tight_layout()
    fig.savefig(str(path), dpi=110)
    plt.close(fig)


def parse(argv: list[str] | None) -> tuple[argparse.Namespace, TrainConfig]:
    """Arguments and the base training configuration."""
    p = argparse.ArgumentParser(prog="python -m train.compare", description=__doc__.split("\n")[0])
    p.add_argument("--preset", required=True, choices=list(PRESETS))
    p.add_argument("--seeds", type=int, default=2, help="seeds per row (default %(default)s)")
    p.add_argument("--depth", type=int, default=18, choices=(18, 34, 50, 101, 152))
    p.add_argument("--config", default=None, help="training config file or shipped name")
    p.add_argument("--set", action="append", default=[], metavar="OPTION=VALUE",
                   help="override a training option for every run (repeatable)")
    p.add_argument("--output-dir", default=None, help="default: runs/compare-<preset>")
    args = p.parse_args(argv)
    base = TrainConfig(progress=False, tensorboard=False, export=False)
    if args.config:
        path = Path(args.config)
        base = from_mapping(load_file(path if path.exists() else builtin_config(args.config)),
                            base)
    for item in args.set:
        name, _, text = item.partition("=")
        setattr(base, name.replace("-", "_"), parse_value(name.replace("-", "_"), text))
    if args.seeds < 1:
        raise ConfigError(f"compare: --seeds {args.seeds} is invalid; expected >= 1")
    return args, base


def main(argv: list[str] | None = None) -> int:
    """Command line entry point; SIGTERM/SIGINT stop the current run with a checkpoint (6)."""
    from train.loop import Interrupted

    try:
        args, base = parse(argv)
        rows = rows_of(args.preset, args.depth)
        out = Path(args.output_dir or f"runs/compare-{args.preset}")
        results = compare(base, rows, args.seeds, out)
    except ConfigError as e:
        print(f"se-compare: {e}", file=sys.stderr)
        return 2
    except Interrupted as e:
        print(f"se-compare: {e}; the same command continues the comparison", file=sys.stderr)
        return 6
    text = table(results, args.seeds)
    out.mkdir(parents=True, exist_ok=True)
    (out / "comparison.md").write_text(text)
    (out / "comparison.json").write_text(json.dumps(results, indent=2) + "\n")
    plot(results, out / "comparison.png", f"{args.preset} on {base.dataset}, {args.seeds} seeds")
    print(text)
    print(f"wrote {out / 'comparison.md'}, comparison.json, comparison.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
