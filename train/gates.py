"""SE gate analysis of a trained run: `python -m train.gates RUN_DIR`.

Reads the run's configuration and newest checkpoint (or a weights file that `se-convert` reads,
with `--model` and `--set option=value` for the model and the data), runs the evaluation images
through the network in eval mode and collects the gate `s` of the last SE block of each stage.
Writes `gates_heatmap.png` (per stage, class x channel mean gate, channels ordered by their variance
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

from se_flax.convert.files import CheckpointError
from train.augment import normalize
from train.config import ConfigError, TrainConfig, from_mapping, parse_value
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
                             impl=cfg.impl, api=cfg.api)
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


def _dataset(cfg: TrainConfig) -> Any:
    return load_dataset(cfg.dataset, data_dir=cfg.data_dir, train_split=cfg.train_split,
                        eval_split=cfg.eval_split, image_size=cfg.image_size,
                        eval_fraction=cfg.eval_fraction, seed=cfg.seed, frames=cfg.frames,
                        frame_stride=cfg.frame_stride, crop=cfg.crop,
                        eval_resize=cfg.eval_resize)


def load_weights(source: Path, cfg: TrainConfig, num_classes: int, in_chans: int
                 ) -> tuple[dict[str, Any], str]:
    """`({"params", "batch_stats"}, what)` from a run directory or a weights file.

    Weights files are those `se-convert` reads and writes: Flax `.msgpack` / Orbax directories,
    or PyTorch `.pth` / `.safetensors` state dicts (converted with `torch_to_flax`).
    """
    from se_flax.convert import torch_to_flax
    from se_flax.convert.files import checkpoint_format, read_state_dict, read_variables
    from train.loop import final_params

    if (source / "config.json").is_file():
        state = final_params(source)
        return ({"params": state["params"], "batch_stats": state["batch_stats"]},
                f"step {state['step']}")
    if checkpoint_format(source) in ("msgpack", "orbax"):
        variables, _ = read_variables(source)
    else:
        state_dict, _ = read_state_dict(source)
        variables = torch_to_flax(state_dict, cfg.model,
                                  **cfg.model_options(num_classes, in_chans))
    return {"params": variables["params"], "batch_stats": variables["batch_stats"]}, source.name


def analyse(source: str | Path, max_examples: int = DEFAULT_EXAMPLES,
            out_dir: str | Path | None = None, cfg: TrainConfig | None = None
            ) -> dict[str, Any]:
    """Gate statistics and plots of a run directory (its newest checkpoint) or a weights file.

    A weights file needs `cfg` for the model and the dataset; a run directory brings its own.
    """
    from train.loop import mean_std

    path = Path(source)
    if (path / "config.json").is_file():
        cfg = from_mapping(json.loads((path / "config.json").read_text())).validate()
    elif cfg is None or not path.exists():
        raise ConfigError(f"gates: {path} has no config.json; expected the output directory "
                          "of a training run, or a weights file (.msgpack, Orbax, .pth, "
                          ".safetensors) with --model")
    dataset = _dataset(cfg)
    mean, std = mean_std(cfg, dataset)
    variables, what = load_weights(path, cfg, dataset.num_classes, dataset.image_shape[-1])
    n = min(len(dataset.eval), max_examples)
    images, labels = dataset.eval.get(np.arange(n))
    gates = collect_gates(cfg, variables, images, mean, std, dataset.num_classes)
    if not gates:
        raise ConfigError(f"gates: model {cfg.model!r} has no SE gates to analyse")
    stages = {s: (block, *class_means(g, labels)) for s, (block, g) in gates.items()}
    out = Path(out_dir) if out_dir else (path if path.is_dir() else path.parent)
    out.mkdir(parents=True, exist_ok=True)
    title = f"{cfg.model} on {cfg.dataset}, {what}, {n} evaluation examples"
    plot_heatmaps(stages, out / "gates_heatmap.png", title)
    plot_gates(gates, labels, out / "gates.png", title)
    summary = {"weights": what, "examples": n, "out": str(out), "stages": {
        s: {"block": block, "channels": int(means.shape[1]),
            "class_specificity": class_specificity(means)}
        for s, (block, _, means) in stages.items()}}
    (out / "gates.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def main(argv: list[str] | None = None) -> int:
    """Command line: analyse a run directory, print the per-stage numbers."""
    p = argparse.ArgumentParser(prog="python -m train.gates", description=__doc__.split("\n")[0])
    p.add_argument("source", help="output directory of a training run, or a weights file "
                   "(.msgpack, Orbax directory, .pth, .safetensors) with --model")
    p.add_argument("--model", default=None, help="weights files: the registered model name")
    p.add_argument("--set", action="append", default=[], metavar="OPTION=VALUE",
                   help="weights files: training options for the model and the data, e.g. "
                   "dataset=cifar10, stem=cifar, reduction=8 (repeatable)")
    p.add_argument("--examples", type=int, default=DEFAULT_EXAMPLES,
                   help="evaluation examples to use (default %(default)s)")
    p.add_argument("--out", default=None, help="where to write the plots (default: beside "
                   "the source)")
    args = p.parse_args(argv)
    try:
        cfg = None
        if args.model is not None:
            cfg = TrainConfig(model=args.model)
            for item in args.set:
                name, _, text = item.partition("=")
                name = name.replace("-", "_")
                setattr(cfg, name, parse_value(name, text))
            cfg.validate()
        summary = analyse(args.source, args.examples, args.out, cfg)
    except (ConfigError, FileNotFoundError, CheckpointError) as e:
        print(f"se-gates: {e}", file=sys.stderr)
        return 2
    print(f"{summary['weights']}, {summary['examples']} evaluation examples")
    print(f"{'stage':<16} {'block':<10} {'channels':>8} {'class specificity':>18}")
    for stage, row in summary["stages"].items():
        print(f"{stage:<16} {row['block']:<10} {row['channels']:>8} "
              f"{row['class_specificity']:>18.4f}")
    out = Path(summary["out"])
    print(f"wrote {out / 'gates_heatmap.png'}, {out / 'gates.png'}, {out / 'gates.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
