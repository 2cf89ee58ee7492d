"""End of training: PyTorch export, logits parity with `se_torch_ref`, SE gate plot.

* `model.pth` — `torch.save` of a PyTorch state dict (timm key layout, `num_batches_tracked`
  recreated) produced by `se_flax.convert.flax_to_torch`; it loads with `strict=True` into
  `se_torch_ref.create_model(<same name and options>)`.
* The parity check loads that file into the reference model and compares eval-mode logits on a
  batch of evaluation images with the Flax model's (float32, highest matmul precision), as
  `max|Δ| / max(1, max|torch|)` against the eval tolerance of `se_spec.tolerances`.
* `gates.png` — the article's channel-weight visualisation done on the SE gate `s` (the sigmoid
  output, `(N, C)`), not on the rescaled feature map: for the last block of each stage, the mean
  gate of every channel per class, over the evaluation images. Selective Kernel networks add
  one panel per stage for the selection weights: the weight of the first (3x3) path, `(N, C)`
  (the other path's is one minus it with two paths).

Video models (`r3d_*`, clips `(N, T, H, W, C)`) go through the same three steps; the reference
model gets the clips as `(N, C, T, H, W)`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from se_flax.convert import flax_to_torch
from se_spec.tolerances import EVAL_TOL, scaled_error
from se_spec.variables import SELECTION
from train.api import compute_model
from train.augment import normalize


def export_torch(variables: dict[str, Any], path: str | Path) -> dict[str, np.ndarray]:
    """Write the PyTorch state dict of `variables` to `path` with `torch.save`."""
    import torch

    state_dict = flax_to_torch(variables)
    torch.save({k: torch.from_numpy(np.array(v)) for k, v in state_dict.items()},
               str(path))
    return state_dict


def flax_eval(model_name: str, options: dict[str, Any], variables: dict[str, Any],
              x: np.ndarray, *, intermediates: bool = False,
              impl: str = "auto", api: str = "linen") -> tuple[np.ndarray, Any]:
    """Eval-mode float32 logits (and the sown gates) of the Flax model on `x` (N[T]HWC).

    `api` picks the module that computes them: Linen's or its NNX twin (`train.api`).
    """
    model = compute_model(api, model_name, **options, impl=impl)

    def run(v: dict[str, Any], x: jax.Array) -> tuple[jax.Array, Any]:
        if intermediates:
            return model.apply(v, x, train=False, mutable=["intermediates"])
        return model.apply(v, x, train=False), {}

    with jax.default_matmul_precision("highest"):
        logits, state = jax.jit(run)(variables, x)
    return np.asarray(logits), state.get("intermediates", {})


def parity_check(model_name: str, options: dict[str, Any], checkpoint: str | Path,
                 variables: dict[str, Any], x: np.ndarray,
                 flax_logits: np.ndarray | None = None) -> dict[str, Any]:
    """Load `checkpoint` into `se_torch_ref`; compare eval logits with Flax on `x` (N[T]HWC).

    `flax_logits`: the Flax logits of `x` when already computed (else computed here).
    """
    import torch

    import se_torch_ref.models as torch_models

    ref = torch_models.create_model(model_name, **options)
    ref.load_state_dict(torch.load(str(checkpoint), weights_only=True), strict=True)
    ref.eval()
    with torch.no_grad():
        # A copy: with one channel the moved axis is already contiguous, and `x` may be a
        # read-only view of a JAX array, which torch warns about.
        torch_logits = ref(torch.from_numpy(np.moveaxis(x, -1, 1).copy()))
    torch_logits = torch_logits.numpy().astype(np.float64)
    if flax_logits is None:
        flax_logits, _ = flax_eval(model_name, options, variables, x)
    max_abs, max_rel = scaled_error(flax_logits, torch_logits)
    return {"batch": int(x.shape[0]), "max_abs": max_abs, "max_rel": max_rel,
            "tolerance": EVAL_TOL, "ok": max_rel <= EVAL_TOL,
            "same_predictions": float(np.mean(flax_logits.argmax(-1) ==
                                              torch_logits.argmax(-1)))}


def stage_gates(inter: dict[str, Any], max_panels: int = 4
                ) -> dict[str, tuple[str, np.ndarray]]:
    """`{stage: (block name, gates (N, C))}`: the last SE block of each stage.

    ResNet blocks (`layer{s}_{i}`) group by stage; Selective Kernel units add
    `{"<stage> selection": (block, w[:, 0, :])}`, the weight of the first path (the undilated
    3x3) per channel from the selection weights `(N, paths, C)`. Networks whose blocks form one
    numbered sequence (MobileNetV3 `features_N`, with the SE at `features_N/block_M`; ViT
    `blocks_N`) are cut into up to `max_panels` equal runs of gated blocks, each shown by its
    last block.
    """
    gated, found = [], {}
    for block in sorted(inter, key=_block_key):
        gate = _block_gate(inter[block])
        stage = block.split("_")[0]
        if gate is not None:
            gated.append((block, np.asarray(gate[0])))
            if block.startswith("layer"):
                found[stage] = (block, np.asarray(gate[0]))
        modules = inter[block] if isinstance(inter[block], dict) else {}
        for module in modules.values():
            selection = module.get(SELECTION) if isinstance(module, dict) else None
            if selection is not None:
                found[f"{stage} {SELECTION}"] = (block, np.asarray(selection[0])[:, 0, :])
    if all(block.startswith("layer") for block, _ in gated):
        return found
    count = min(max_panels, len(gated))
    picks = [gated[round((i + 1) * len(gated) / count) - 1] for i in range(count)]
    return {block: (block, g) for block, g in picks}


def _block_gate(node: Any) -> Any:
    """The sown gate of a block's attention module (`se/gate`, or `<module>/gate`), or None."""
    if not isinstance(node, dict):
        return None
    if isinstance(node.get("se"), dict) and "gate" in node["se"]:
        return node["se"]["gate"]
    return next((child["gate"] for child in node.values()
                 if isinstance(child, dict) and "gate" in child), None)


def _block_key(name: str) -> tuple[int, int]:
    stage, _, idx = name.partition("_")
    digits = "".join(c for c in stage if c.isdigit())
    return (int(digits) if digits else 0, int(idx) if idx.isdigit() else 0)


def plot_gates(gates: dict[str, tuple[str, np.ndarray]], labels: np.ndarray, path: str | Path,
               title: str = "") -> None:
    """One panel per stage (and SK selection): mean gate per channel, one line per class."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(gates), 1, figsize=(10, 2.6 * len(gates)), squeeze=False)
    classes = np.unique(labels)[:10]
    colors = plt.get_cmap("tab10")
    for ax, (stage, (block, g)) in zip(axes[:, 0], gates.items(), strict=True):
        channels = np.arange(g.shape[1])
        for i, c in enumerate(classes):
            ax.plot(channels, g[labels == c].mean(0), lw=0.8, color=colors(i), label=str(c))
        ax.plot(channels, g.mean(0), lw=1.6, color="black", label="all")
        ax.set_ylim(0, 1)
        ax.set_xlim(0, g.shape[1] - 1)
        selection = stage.endswith(SELECTION)
        ax.set_ylabel("3x3 path weight" if selection else "gate s")
        what = "weight of the 3x3 path" if selection else "SE gate"
        ax.set_title(f"{stage} (block {block}): mean {what} per channel and class", fontsize=9)
    axes[-1, 0].set_xlabel("channel")
    axes[0, 0].legend(ncol=11, fontsize=7, loc="upper right", title="class", title_fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(str(path), dpi=110)
    plt.close(fig)


def export_all(cfg: Any, variables: dict[str, Any], images: np.ndarray, labels: np.ndarray,
               mean: list[float], std: list[float], num_classes: int,
               out_dir: str | Path) -> dict[str, Any]:
    """Export, check parity and plot; returns what was written and the parity numbers."""
    out = Path(out_dir)
    variables = {"params": variables["params"], "batch_stats": variables["batch_stats"]}
    in_chans = int(images.shape[-1])
    options = cfg.model_options(num_classes, in_chans)
    x = np.asarray(normalize(jnp.asarray(images), mean, std), np.float32)
    result: dict[str, Any] = {}
    logits, inter = flax_eval(cfg.model, options, variables, x, intermediates=True,
                              impl=cfg.impl, api=cfg.api)
    try:
        import torch  # noqa: F401
    except ImportError:
        result["torch_export"] = "skipped: PyTorch is not installed (pip install torch)"
    else:
        pth = out / "model.pth"
        export_torch(variables, pth)
        result["torch_export"] = str(pth)
        result["parity"] = parity_check(cfg.model, options, pth, variables, x[:64],
                                        logits[:64])
    gates = stage_gates(inter)
    if gates:
        png = out / "gates.png"
        plot_gates(gates, labels, png, f"{cfg.model} on {cfg.dataset}: SE channel gates")
        result["gate_plot"] = str(png)
    else:
        result["gate_plot"] = f"skipped: {cfg.model} has no SE gates"
    return result
