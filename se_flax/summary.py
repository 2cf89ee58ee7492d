"""`python -m se_flax.summary`: parameters and MACs of registered models, and the SE tables.

Prints Markdown tables, every number computed from the models themselves:
  * each requested model's parameters and multiply-accumulates at the given input size;
  * the article's §4 comparison done with the same head on both sides (ResNet-50 vs
    SE-ResNet-50: the article's 25.56M is ResNet-50 with 1000 classes, its 26.04M SE-ResNet-50
    with 10, so its +1.8% mixes heads);
  * the article's §5.1 reduction-ratio sweep, beside the SENet paper's Table 5 for reference.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from se_flax.flops import model_cost
from se_flax.models import create_model, list_models
from se_spec import vit
from se_spec.models import FAMILY_STEMS, input_shape, model_spec

# Hu et al., SENet (TPAMI version), Table 5: SE-ResNet-50 parameters (millions) by ratio r.
SENET_PAPER_PARAMS_M = {2: 45.7, 4: 35.7, 8: 30.7, 16: 28.1, 32: 26.9}
SENET_PAPER_RESNET50_M = 25.6


def cost(name: str, size: int, num_classes: int | None = None, frames: int = 16,
         **kwargs: object) -> tuple[int, int]:
    """`(parameters, MACs)` of a registered model on one `size x size` image or clip.

    A `stem` the model's family does not have is dropped (ViTs have one, the patch embedding);
    a ViT is built for `img_size=size`.
    """
    family = model_spec(name).family
    if kwargs.get("stem") not in FAMILY_STEMS[family]:
        kwargs.pop("stem", None)
    if family == vit.FAMILY:
        kwargs["img_size"] = size
    model = create_model(name, num_classes=num_classes, **kwargs)
    return model_cost(model, input_shape(name, size, frames=frames))


def model_table(names: Sequence[str], size: int, num_classes: int,
                stem: str = "imagenet") -> str:
    """Markdown table: model, parameters, GMACs."""
    lines = [f"| model | params | GMACs ({size}x{size}, {stem} stem) |", "|---|---:|---:|"]
    for name in names:
        params, macs = cost(name, size, num_classes, stem=stem)
        lines.append(f"| `{name}` | {params:,} | {macs / 1e9:.2f} |")
    return "\n".join(lines)


def video_table(names: Sequence[str], size: int, frames: int) -> str:
    """Markdown table of video models: model, parameters (400 classes), GMACs per clip."""
    lines = [f"| model | params | GMACs ({frames}x{size}x{size} clip) |", "|---|---:|---:|"]
    for name in names:
        params, macs = cost(name, size, frames=frames)
        lines.append(f"| `{name}` | {params:,} | {macs / 1e9:.2f} |")
    return "\n".join(lines)


def se_overhead_table() -> str:
    """ResNet-50 vs SE-ResNet-50 with the same head, for 1000 and 10 classes."""
    lines = ["| head | ResNet-50 params | SE-ResNet-50 params | Δ params | ResNet-50 GMACs | "
             "SE-ResNet-50 GMACs | Δ MACs |", "|---|---:|---:|---:|---:|---:|---:|"]
    for classes, size, stem in ((1000, 224, "imagenet"), (10, 224, "imagenet"),
                                (10, 32, "cifar")):
        (p0, m0), (p1, m1) = (cost(n, size, classes, stem=stem)
                              for n in ("resnet50", "se_resnet50"))
        lines.append(f"| {classes} classes, {stem} stem, {size}x{size} | {p0 / 1e6:.2f}M | "
                     f"{p1 / 1e6:.2f}M | "
                     f"+{(p1 - p0) / 1e6:.2f}M (+{100 * (p1 - p0) / p0:.1f}%) | {m0 / 1e9:.3f} | "
                     f"{m1 / 1e9:.3f} | +{100 * (m1 - m0) / m0:.2f}% |")
    return "\n".join(lines)


def ratio_table() -> str:
    """SE-ResNet-50 parameters for reduction ratios 2…32, beside the SENet paper's."""
    p0, _ = cost("resnet50", 224)
    lines = ["| reduction r | SE-ResNet-50 params | Δ vs ResNet-50 | SENet paper |",
             "|---:|---:|---:|---:|",
             f"| (no SE) | {p0 / 1e6:.2f}M | — | {SENET_PAPER_RESNET50_M}M |"]
    for r, paper in SENET_PAPER_PARAMS_M.items():
        params, _ = cost("se_resnet50", 224, attn_kwargs={"rd_ratio": 1 / r})
        lines.append(f"| {r} | {params / 1e6:.2f}M | +{(params - p0) / 1e6:.2f}M | {paper}M |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Print the tables."""
    parser = argparse.ArgumentParser(prog="python -m se_flax.summary", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", nargs="*", default=None, metavar="NAME",
                        help="models to list (default: all registered)")
    parser.add_argument("--size", type=int, default=224, help="input side (default 224)")
    parser.add_argument("--num-classes", type=int, default=None,
                        help="default: 1000 for image models, 400 for video models")
    parser.add_argument("--stem", choices=["imagenet", "cifar"], default="imagenet")
    parser.add_argument("--video-size", type=int, default=112, help="clip side (default 112)")
    parser.add_argument("--frames", type=int, default=16, help="clip length (default 16)")
    parser.add_argument("--no-se-tables", action="store_true",
                        help="only the model table, not the §4 and §5.1 tables")
    args = parser.parse_args(argv)
    names = args.model or list_models()
    unknown = [n for n in names if n not in list_models()]
    if unknown:
        create_model(unknown[0])  # raises with the close matches
    images = [n for n in names if model_spec(n).family != "r3d"]
    videos = [n for n in names if model_spec(n).family == "r3d"]
    if images:
        print(f"## Models\n\n{model_table(images, args.size, args.num_classes, args.stem)}\n")
    if videos:
        print(f"## Video models\n\n{video_table(videos, args.video_size, args.frames)}\n")
    if not args.no_se_tables:
        print("## SE overhead, same head on both sides (article §4)\n")
        print(f"{se_overhead_table()}\n")
        print("## Reduction ratio (article §5.1, SENet paper Table 5)\n")
        print(ratio_table())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
