"""`python -m parity_tests --model NAME`: per-layer parity report of one registered model.

Runs the model in both frameworks with the same weights and input and prints, for each residual
block in forward order, the block output's max absolute and scaled error and its gates' error;
then the logits, the BatchNorm running statistics and the gradients. Names the first layer that
exceeds its tolerance and exits with status 1 if any does.
"""

from __future__ import annotations

import argparse
import sys

from parity_tests.harness import ParityReport, Row
from parity_tests.networks import compare_model
from se_flax.convert import flax_name
from se_flax.models import list_models

MODES = {
    "eval": {"train": False, "grads": False, "dtype": "float32"},
    "train": {"train": True, "grads": False, "dtype": "float32"},
    "grads": {"train": True, "grads": True, "dtype": "float64"},
}


def layer_rows(report: ParityReport) -> list[tuple[str, Row, Row | None]]:
    """`(layer, output row, worst gate row or None)` per probed block, in forward order."""
    gates = report.of_kind("gate")
    rows = []
    for probe in report.of_kind("probe"):
        prefix = "/".join(flax_name(probe.name)) + "/"
        mine = [g for g in gates if g.name.startswith(prefix)]
        rows.append((probe.name, probe, max(mine, key=lambda g: g.max_rel, default=None)))
    return rows


def format_report(report: ParityReport, title: str) -> str:
    """The per-layer table plus one summary line per other kind of tensor."""
    lines = [title, f"{'layer':<20} {'max abs':>10} {'max rel':>10} {'gate err':>10}  ok"]
    for name, out, gate in layer_rows(report):
        ok = out.ok and (gate is None or gate.ok)
        gate_err = f"{gate.max_rel:>10.2e}" if gate else f"{'-':>10}"
        lines.append(f"{name:<20} {out.max_abs:>10.2e} {out.max_rel:>10.2e} {gate_err}  "
                     f"{'yes' if ok else 'NO'}")
    for kind in ("output", "running_stat", "grad"):
        rows = report.of_kind(kind)
        if rows:
            worst = max(rows, key=lambda r: r.max_rel)
            ok = all(r.ok for r in rows)
            label = "logits" if kind == "output" else f"{kind}s ({len(rows)})"
            lines.append(f"{label:<20} {worst.max_abs:>10.2e} {worst.max_rel:>10.2e} "
                         f"{'':>10}  {'yes' if ok else 'NO'}   worst: {worst.name}")
    first = report.first_failure()
    lines.append(f"first layer over tolerance: {first.name} ({first.kind}, {first.max_rel:.2e} > "
                 f"{first.tol:.0e})" if first else "all within tolerance")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the comparison and print the report; return 1 if any tensor is over tolerance."""
    parser = argparse.ArgumentParser(prog="python -m parity_tests", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, choices=list_models(), metavar="NAME",
                        help=f"registered model: {', '.join(list_models())}")
    parser.add_argument("--mode", choices=[*MODES, "all"], default="all",
                        help="eval (fp32), train (fp32, running stats), grads (fp64 gradients)")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--size", type=int, default=None, help="input side (default 64/32)")
    parser.add_argument("--stem", choices=["imagenet", "cifar"], default=None,
                        help="2D models: imagenet (default) or cifar")
    parser.add_argument("--frames", type=int, default=8, help="clip length of video models")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--api", choices=["linen", "nnx"], default="linen",
                        help="the Flax side: Linen modules or their NNX twins (se_flax.nnx)")
    args = parser.parse_args(argv)
    failed = False
    for mode in MODES if args.mode == "all" else [args.mode]:
        report = compare_model(args.model, batch=args.batch, size=args.size, seed=args.seed,
                               stem=args.stem, frames=args.frames, api=args.api, **MODES[mode])
        opts = MODES[mode]
        print(format_report(report, f"\n== {args.model} ({args.api}): {mode} mode "
                                    f"({opts['dtype']}) =="))
        failed |= not report.ok
    return int(failed)


if __name__ == "__main__":
    sys.exit(main())
