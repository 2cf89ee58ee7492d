"""SE gate analysis of a trained run: `python -m train.gates RUN_DIR`.

Reads the run's configuration and newest checkpoint, runs the evaluation images through the
network in eval mode and collects the gate `s` of the last SE block of each stage. Writes
`gates_heatmap.png` (per stage, class x channel mean gate, channels ordered by their variance
across classes) and `gates.png` (per stage, the per-class mean gate curves of the SENet paper's
figure), and prints each stage's class specificity: the mean over channels of the standard
deviation of the per-class mean gate. The SENet paper observes that early stages excite
channels in a class-agnostic way and later stages in a class-specific one; this number lets a
reader check that on their own run.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import jax.numpy as jnp
import numpy as np

from train.augment import normalize
from train.config import ConfigError, TrainConfig, from_mapping
from train.data import load_dataset
from train.export import flax_eval, plot_gates, stage_gates

DEFAULT_EXAMPLES = 1024
BATCH = 128


def class_means(gates: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`(classes, means (K, C))`: the mean gate per channel of each class present."""
    classes = np.unique(labels)
    return classes, np.stack([gates[labels == c].mean(axis=0) for c in classes])


def class_specificity(means: np.ndarray) -> float:
    """Mean over channels of the standard deviation across classes of the mean gate."""
    return float(means.std(axis=0).mean()) if len(means) > 1 else 0.0


def collect_gates(cfg: TrainConfig, variables: dict[str, Any], images: np.ndarray,
                  mean: list[float], std: list[float], num_classes: int
                  ) -> dict[str, tuple[str, np.ndarray]]:
    """`{stage: (block, gates (N, C))}` of the last SE block per stage, in batches."""
    options = cfg.model_options(num_classes, int(images.shape[-1]))
    parts: dict[str, list[np.ndarray]] = {}
    blocks: dict[str, str] = {}
    for start in range(0, len(images), BATCH):
        x = np.asarray(normalize(jnp.asarray(images[start:start + BATCH]), mean, std))
        _, inter = flax_eval(cfg.model, options, variables, x, intermediates=True,
                             impl=cfg.impl)
        for stage, (block, g) in stage_gates(inter).items():
            parts.setdefault(stage, []).append(g)
            blocks[stage] = block
    return {stage: (blocks[stage], np.concatenate(p)) for stage, p in parts.items()}


def plot_heatmaps(stages: dict[str, tuple[str, np.ndarray, np.ndarray]], path: Path,
                  title: str) -> None:
    """One heat map per stage: classes x channels (sorted by variance across classes)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(stages), 1, figsize=(10, 1.2 + 1.6 * len(stages)),
                             squeeze=False)
    for ax, (stage, (block, classes, means)) in zip(axes[:, 0], stages.items(), strict=True):
        order = np.argsort(-means.var(axis=0), kind="stable")
        im = ax.imshow(means[:, order], aspect="auto", vmin=0, vmax=1, cmap="viridis",
                       interpolation="nearest")
        ax.set_yticks(range(len(classes)), [str(c) for c in classes], fontsize=6)
        ax.set_ylabel("class")
        ax.set_title(f"{stage} (block {block}): mean gate, channels by variance across "
                     f"classes; specificity {class_specificity(means):.4f}", fontsize=9)
        fig.colorbar(im, ax=ax, fraction=0.02, pad=0.01)
    axes[-1, 0].set_xlabel("channel (sorted)")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(str(path), dpi=110)
    plt.close(fig)


def analyse(run_dir: str | Path, max_examples: int = DEFAULT_EXAMPLES,
            out_dir: str | Path | None = None) -> dict[str, Any]:
    """Gate statistics and plots of the newest checkpoint of `run_dir`; returns the numbers."""
    from train.loop import final_params, mean_std

    run = Path(run_dir)
    config_file = run / "config.json"
    if not config_file.is_file():
        raise ConfigError(f"gates: {run} has no config.json; expected the output directory of "
                          "a training run (python -m train --output-dir ...)")
    cfg = from_mapping(json.loads(config_file.read_text())).validate()
    dataset = load_dataset(cfg.dataset, data_dir=cfg.data_dir, train_split=cfg.train_split,
                           eval_split=cfg.eval_split, image_size=cfg.image_size,
                           eval_fraction=cfg.eval_fraction, seed=cfg.seed, frames=cfg.frames,
                           frame_stride=cfg.frame_stride, crop=cfg.crop,
                           eval_resize=cfg.eval_resize)
    mean, std = mean_std(cfg, dataset)
    state = final_params(run)
    n = min(len(dataset.eval), max_examples)
    images, labels = dataset.eval.get(np.arange(n))
    variables = {"params": state["params"], "batch_stats": state["batch_stats"]}
    gates = collect_gates(cfg, variables, images, mean, std, dataset.num_classes)
    if not gates:
        raise ConfigError(f"gates: model {cfg.model!r} has no SE gates to analyse")
    stages = {s: (block, *class_means(g, labels)) for s, (block, g) in gates.items()}
    out = Path(out_dir) if out_dir else run
    out.mkdir(parents=True, exist_ok=True)
    title = f"{cfg.model} on {cfg.dataset}, step {state['step']}, {n} evaluation examples"
    plot_heatmaps(stages, out / "gates_heatmap.png", title)
    plot_gates(gates, labels, out / "gates.png", title)
    summary = {"step": int(state["step"]), "examples": n, "stages": {
        s: {"block": block, "channels": int(means.shape[1]),
            "class_specificity": class_specificity(means)}
        for s, (block, _, means) in stages.items()}}
    (out / "gates.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def main(argv: list[str] | None = None) -> int:
    """Command line: analyse a run directory, print the per-stage numbers."""
    p = argparse.ArgumentParser(prog="python -m train.gates", description=__doc__.split("\n")[0])
    p.add_argument("run_dir", help="output directory of a training run")
    p.add_argument("--examples", type=int, default=DEFAULT_EXAMPLES,
                   help="evaluation examples to use (default %(default)s)")
    p.add_argument("--out", default=None, help="where to write the plots (default: run_dir)")
    args = p.parse_args(argv)
    try:
        summary = analyse(args.run_dir, args.examples, args.out)
    except (ConfigError, FileNotFoundError) as e:
        print(f"se-gates: {e}", file=sys.stderr)
        return 2
    print(f"step {summary['step']}, {summary['examples']} evaluation examples")
    print(f"{'stage':<8} {'block':<10} {'channels':>8} {'class specificity':>18}")
    for stage, row in summary["stages"].items():
        print(f"{stage:<8} {row['block']:<10} {row['channels']:>8} "
              f"{row['class_specificity']:>18.4f}")
    out = Path(args.out or args.run_dir)
    print(f"wrote {out / 'gates_heatmap.png'}, {out / 'gates.png'}, {out / 'gates.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
