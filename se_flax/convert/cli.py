"""`se-convert SRC DST --model NAME`: convert weights between PyTorch and Flax files.

The direction follows the file types (see `se_flax.convert.files`): `.safetensors`, `.pth`, `.pt`,
`.bin` hold PyTorch state dicts; `.msgpack` and Orbax directories hold Flax variables: Linen's
`{params, batch_stats}`, or the state of the `se_flax.nnx` model
(`nnx.to_pure_dict(nnx.state(model))`), written with `--api nnx` and detected when read. Every
conversion goes through the Flax variables of `--model` and is checked against it, so PyTorch →
PyTorch (e.g. `.pth` → `.safetensors`, or `--out-layout article` → `timm`) and Flax → Flax work
too. `--layout` is the PyTorch layout of SRC when SRC is a PyTorch file (default: detected),
else of DST (default: the timm / se_torch_ref names). Prints one summary line, e.g.

    se-convert: se_resnet50 torch→flax: 320 tensors, 28,088,024 parameters, layout timm
    (detected), float32, 53 num_batches_tracked dropped; w.pth → w.msgpack

and exits 1 with every problem listed when the weights do not fit the model.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from se_flax.convert.errors import ConversionError
from se_flax.convert.files import (
    FRAMEWORK,
    CheckpointError,
    checkpoint_format,
    find_variables,
    load_torch_checkpoint,
    read_tree,
    write_state_dict,
    write_tree,
    write_variables,
)
from se_flax.convert.layouts import AUTO, LAYOUTS
from se_flax.convert.naming import flatten, unflatten
from se_flax.convert.network import flax_to_torch, summarize, torch_to_flax, validate_variables
from se_flax.convert.tensors import to_numpy
from se_spec.models import MODEL_SPECS, STEMS
from se_spec.variables import PARAMS


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    parser = argparse.ArgumentParser(
        prog="se-convert", description=__doc__.split("\n\n")[0],
        epilog="formats: .safetensors .pth .pt .bin (PyTorch); .msgpack, Orbax directory (Flax)")
    parser.add_argument("src", help="weights to read")
    parser.add_argument("dst", help="file or directory to write")
    parser.add_argument("--model", required=True, choices=list(MODEL_SPECS), metavar="NAME",
                        help=f"registered model: {', '.join(MODEL_SPECS)}")
    parser.add_argument("--layout", choices=[AUTO, *LAYOUTS], default=AUTO,
                        help="PyTorch layout of SRC if it is a PyTorch file, else of DST")
    parser.add_argument("--out-layout", choices=[AUTO, *LAYOUTS], default=None,
                        help="PyTorch → PyTorch only: layout of DST (default: SRC's)")
    parser.add_argument("--strict", action=argparse.BooleanOptionalAction, default=True,
                        help="fail on any missing, unexpected or mis-shaped tensor (default); "
                        "--no-strict converts what matches and lists the rest")
    parser.add_argument("--num-classes", type=int, default=None,
                        help="default: read from the weights")
    parser.add_argument("--in-chans", type=int, default=None,
                        help="default: read from the weights")
    parser.add_argument("--stem", choices=STEMS, default=None,
                        help="default: read from the weights (7x7 conv1: imagenet, 3x3: cifar)")
    parser.add_argument("--attn-kwargs", type=json.loads, default=None, metavar="JSON",
                        help='attention options, e.g. \'{"bias": false}\'')
    parser.add_argument("--api", choices=["linen", "nnx"], default="linen",
                        help="layout of a Flax DST: linen variables {params, batch_stats} "
                        "(default) or nnx, the state of se_flax.nnx's model "
                        "(nnx.to_pure_dict(nnx.state(model))); a Flax SRC's is detected")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing DST")
    return parser


def _model_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    given = {"num_classes": args.num_classes, "in_chans": args.in_chans, "stem": args.stem,
             "attn_kwargs": args.attn_kwargs}
    return {k: v for k, v in given.items() if v is not None}


NNX_NOTE = "read as an NNX state"


def read_flax(path: str) -> tuple[dict[str, Any], list[str]]:
    """Linen variables and notes from a Flax file of either layout (detected).

    Linen variables have a `params` collection (at the top or one level down, in a training
    state); anything else is read as an NNX state (`se_flax.nnx.convert.nnx_tree_to_linen`).
    """
    tree = read_tree(path)
    if not isinstance(tree, dict) or _holds_linen_variables(tree):
        return find_variables(tree, path)
    from se_flax.nnx.convert import nnx_tree_to_linen

    variables = nnx_tree_to_linen(tree)
    return ({c: unflatten({p: to_numpy(v) for p, v in flatten(variables[c]).items()})
             for c in variables}, [NNX_NOTE])


def _holds_linen_variables(tree: dict[Any, Any]) -> bool:
    return PARAMS in tree or any(isinstance(v, dict) and PARAMS in v for v in tree.values())


def convert_file(args: argparse.Namespace) -> tuple[str, list[str]]:
    """Run one conversion; returns the summary line and the problems (`--no-strict`)."""
    src_fw = FRAMEWORK[checkpoint_format(args.src)]
    dst_fw = FRAMEWORK[checkpoint_format(args.dst)]
    if Path(args.dst).exists() and not args.overwrite:
        raise CheckpointError(f"{args.dst} exists; pass --overwrite to replace it")
    if args.out_layout is not None and not src_fw == dst_fw == "torch":
        raise CheckpointError("--out-layout is for PyTorch → PyTorch conversions; use --layout")
    kwargs = {"strict": args.strict, "return_report": True, **_model_kwargs(args)}
    layout = ""
    if src_fw == "torch":
        checkpoint = load_torch_checkpoint(args.src)
        variables, report = torch_to_flax(checkpoint, args.model, layout=args.layout, **kwargs)
        layout = f"{report.layout} ({'detected' if report.detected else 'given'})"
    else:
        variables, notes = read_flax(args.src)
        variables, report = validate_variables(variables, args.model, **kwargs)
        report.notes = notes + report.notes
    problems = list(report.problems)
    if dst_fw == "torch":
        out_layout = args.layout if src_fw == "flax" else (args.out_layout or report.layout)
        state, out = flax_to_torch(variables, args.model, layout=out_layout, **kwargs)
        if src_fw == "flax":
            layout = f"{out.layout} ({'default' if out.detected else 'given'})"
        elif out.layout != report.layout:
            layout += f" → {out.layout}"
        write_state_dict(state, args.dst)
    elif args.api == "nnx":
        from se_flax.nnx.convert import linen_to_nnx_tree

        write_tree(linen_to_nnx_tree(variables), args.dst, overwrite=args.overwrite)
    else:
        write_variables(variables, args.dst, overwrite=args.overwrite)
    info = summarize(report, variables)
    extras = [f"layout {layout}"] if layout else []
    extras.append("+".join(info["dtypes"]))
    if info["dropped"]:
        extras.append(f"{info['dropped']} num_batches_tracked dropped")
    if dst_fw == "torch" and (made := sum(k.endswith(".num_batches_tracked") for k in state)):
        extras.append(f"{made} num_batches_tracked recreated")
    extras += report.notes
    if problems:
        extras.append(f"{len(problems)} problem(s) listed above")
    src_fw += " nnx" if NNX_NOTE in report.notes else ""
    dst_fw += " nnx" if dst_fw == "flax" and args.api == "nnx" else ""
    line = (f"se-convert: {args.model} {src_fw}→{dst_fw}: {info['tensors']} tensors, "
            f"{info['parameters']:,} parameters, {', '.join(extras)}; {args.src} → {args.dst}")
    return line, problems


def main(argv: list[str] | None = None) -> int:
    """Entry point of `se-convert` and `python -m se_flax.convert`."""
    args = build_parser().parse_args(argv)
    try:
        line, problems = convert_file(args)
    except (ConversionError, CheckpointError, ValueError) as e:
        print(f"se-convert: error: {e}", file=sys.stderr)
        return 1
    for problem in problems:
        print(f"se-convert: not converted: {problem}", file=sys.stderr)
    print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
