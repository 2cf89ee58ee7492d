"""Whole-network weight conversion PyTorch ⇄ Flax for every registered model. Never imports torch.

```python
variables = torch_to_flax(state_dict, "se_resnet50")          # strict; layout detected
state_dict = flax_to_torch(variables, "se_resnet50")          # se_torch_ref / timm names
variables, report = torch_to_flax(state_dict, "se_resnet50", strict=False, return_report=True)
```

* `model` is a registered name (`se_flax.list_models()`) or a template of variables
  (e.g. from `model_template` or `jax.eval_shape` of `init`). With a name, `num_classes`,
  `in_chans` and `stem` default to what the weights say (`fc`, `conv1`); other options of
  `create_model` pass through as keyword arguments.
* `layout` is one of `se_flax.convert.LAYOUTS` or `"auto"`: on import it is detected from the
  keys; on export `"auto"` writes the names of `se_torch_ref`/timm (`"article"` writes the
  article's `se.fc.0`/`se.fc.2` Linear weights, `"torchvision"` refuses attention modules).
* Strict by default: every missing key, unexpected key, shape mismatch and non-floating tensor is
  listed in one `ConversionError`, decided here once per call. `strict=False` loads what matches
  and requires `return_report=True`, so a partial load always comes with the
  `ConversionReport` that lists what was not loaded; with a model name, what was not loaded
  keeps its initial value (`model.init` with `seed`, which compiles the initialisers).
* Wrapped checkpoints (`{"state_dict": ...}`, `{"model": ...}`) and shared `module.` /
  `_orig_mod.` / `model.` prefixes are accepted and recorded in `report.notes`; the checkpoint
  is unwrapped and turned into NumPy arrays once, on entry.
* dtypes are preserved tensor by tensor (float32, float16, bfloat16); `num_batches_tracked` is
  dropped on import and recreated (int64 zero) on export. torch → flax → torch and
  flax → torch → flax reproduce every tensor bit for bit.

Only names and shapes are checked: a tensor replaced by another of the same shape (a square
kernel transposed, two equally shaped tensors swapped) cannot be detected by any converter.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from se_flax.convert.errors import ConversionError, ConversionReport
from se_flax.convert.layouts import (
    AUTO,
    check_layout,
    detect_layout,
    export_layout,
    import_renames,
)
from se_flax.convert.naming import flatten, unflatten
from se_flax.convert.state import (
    check_variables,
    fill_template,
    rename_keys,
    variables_to_state_dict,
)
from se_flax.convert.templates import flax_options, init_variables, model_template, torch_options
from se_flax.convert.tensors import to_numpy
from se_flax.convert.unwrap import unwrap_state_dict
from se_spec.models import resolve_options
from se_spec.variables import COLLECTIONS, PARAMS


def _resolve(model: Any, inferred: Mapping[str, Any], kwargs: dict[str, Any]
             ) -> tuple[str, dict[str, Any], list[str]]:
    """`(label, template, notes)` for a model name or a template."""
    if isinstance(model, Mapping):
        if kwargs:
            raise TypeError(f"model options {sorted(kwargs)} need a model name, not a template")
        return "the template", dict(model), []
    if not isinstance(model, str):
        raise TypeError(f"model must be a registered model name or a template of variables, "
                        f"got {type(model).__name__}")
    options = {**inferred, **kwargs}
    defaults = resolve_options(model)
    notes = [f"{k}={v!r} (from the weights)" for k, v in inferred.items()
             if k not in kwargs and v != defaults[k]]
    if notes:
        notes = ["model options " + ", ".join(notes)]
    return model, model_template(model, **options), notes


def _check_strictness(strict: bool, return_report: bool, fn: str) -> None:
    if not strict and not return_report:
        raise TypeError(f"{fn}(strict=False) loads only what matches; pass return_report=True "
                        "to receive the ConversionReport listing what was not loaded")


def _is_abstract(leaf: Any) -> bool:
    return not isinstance(leaf, np.ndarray) and type(leaf).__name__ == "ShapeDtypeStruct"


def _hints(report: ConversionReport, label: str) -> list[str]:
    hints = []
    missing_bias = [k for k in report.missing if k.endswith(("se.fc1.bias", "se.fc2.bias"))]
    if report.layout == "article" and missing_bias:
        hints.append(f"the article's SE has no bias but {label} expects one; use a "
                     "se_article_* model or attn_kwargs={'bias': False}")
    if report.layout == "torchvision" and any(".se." in k for k in report.missing):
        hints.append(f"the state dict has no attention modules but {label} has; use the model "
                     "without attention (e.g. resnet50 for se_resnet50)")
    if any(".se." in k for k in report.unexpected) and not any(".se." in k
                                                              for k in report.loaded):
        hints.append(f"the state dict has attention modules but {label} has none; use an "
                     "se_* / eca_* / cbam_* / ese_* model")
    return hints


def torch_to_flax(state_dict: Mapping[str, Any], model: Any, *, layout: str = AUTO,
                  strict: bool = True, renames: Iterable[tuple[str, str]] = (),
                  return_report: bool = False, seed: int = 0, **model_kwargs: Any) -> Any:
    """PyTorch state dict → Flax `{"params", "batch_stats"}` of `model` (a name or a template).

    Returns the variables, or `(variables, report)` with `return_report=True`. Extra `renames`
    (regex pairs) are applied after the layout's own. See the module docstring.
    """
    _check_strictness(strict, return_report, "torch_to_flax")
    state, notes = unwrap_state_dict(state_dict)
    used = detect_layout(state) if check_layout(layout) == AUTO else layout
    inferred = torch_options(state) if isinstance(model, str) else {}
    label, template, option_notes = _resolve(model, inferred, model_kwargs)
    variables, report = fill_template(
        rename_keys(state, (*import_renames(used), *renames)), template)
    report.layout, report.detected = used, layout == AUTO
    report.notes = notes + option_notes
    context = f"converting a {used}-layout state dict into {label}"
    if report.problems and strict:
        raise ConversionError(report.problems, context, _hints(report, label))
    flat = flatten(variables)
    abstract = [p for p, leaf in flat.items() if _is_abstract(leaf)]
    if abstract:
        if not isinstance(model, str):
            raise ConversionError([f"no value for {'/'.join(p)}: the template holds shapes "
                                   "only" for p in abstract], context,
                                  ["pass a template of arrays to keep its values"])
        fresh = flatten(init_variables(model, seed, **{**inferred, **model_kwargs}))
        for p in abstract:
            flat[p] = fresh[p]
        report.notes.append(f"{len(abstract)} variable(s) kept their initial values "
                            f"(seed {seed})")
        variables = unflatten(flat)
    return (variables, report) if return_report else variables


def _select_collections(variables: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """`params`/`batch_stats` as NumPy arrays (converted once, here), plus a note on the rest."""
    if not isinstance(variables, Mapping) or not any(c in variables for c in COLLECTIONS):
        found = sorted(variables) if isinstance(variables, Mapping) else type(variables).__name__
        raise ConversionError([f"expected Flax variables (a 'params' and/or 'batch_stats' "
                               f"collection), got {found}"], "reading the Flax variables")
    ignored = sorted(str(k) for k in variables if k not in COLLECTIONS)
    notes = [f"ignored the collection(s) {', '.join(ignored)}"] if ignored else []
    selected = {k: variables[k] for k in COLLECTIONS if k in variables}
    return unflatten({p: to_numpy(v) for p, v in flatten(selected).items()}), notes


def _validate(selected: dict[str, Any], notes: list[str], model: Any, strict: bool,
              model_kwargs: dict[str, Any]) -> tuple[dict[str, Any], ConversionReport]:
    label, template, option_notes = _resolve(model, flax_options(selected), model_kwargs)
    good, report = check_variables(selected, template)
    report.notes = notes + option_notes
    if report.problems and strict:
        raise ConversionError(report.problems, f"checking Flax variables of {label}")
    return unflatten(good), report


def validate_variables(variables: Mapping[str, Any], model: Any, *, strict: bool = True,
                       return_report: bool = False, **model_kwargs: Any) -> Any:
    """Flax variables checked against `model` (a name or a template): the matching ones.

    Strict by default (one `ConversionError` listing every missing, unexpected and mis-shaped
    variable); `strict=False` drops what does not match and needs `return_report=True`. Other
    collections than `params`/`batch_stats` are ignored (noted). Leaves come back as NumPy.
    """
    _check_strictness(strict, return_report, "validate_variables")
    result, report = _validate(*_select_collections(variables), model, strict, model_kwargs)
    return (result, report) if return_report else result


def flax_to_torch(variables: Mapping[str, Any], model: Any = None, *, layout: str = AUTO,
                  strict: bool = True, return_report: bool = False, **model_kwargs: Any) -> Any:
    """Flax variables → PyTorch-named NumPy arrays in `layout`.

    With `model` (a name or a template) the variables are first checked against it
    (`validate_variables`); without, every `params`/`batch_stats` leaf is exported as is.
    Returns the state dict, or `(state_dict, report)` with `return_report=True`.
    """
    _check_strictness(strict, return_report, "flax_to_torch")
    selected, notes = _select_collections(variables)
    if model is not None:
        selected, report = _validate(selected, notes, model, strict, model_kwargs)
    elif model_kwargs:
        raise TypeError(f"model options {sorted(model_kwargs)} need a model name")
    else:
        report = ConversionReport(notes=notes)
    state = variables_to_state_dict(selected)
    if check_layout(layout) == AUTO:
        layout, report.detected = ("timm" if detect_layout(state) == "timm"
                                   else "torchvision"), True
    state = export_layout(state, layout)
    report.layout = layout
    report.loaded = list(state)
    return (state, report) if return_report else state


def summarize(report: ConversionReport, variables: Mapping[str, Any]) -> dict[str, Any]:
    """Counts for a one-line summary: tensors, parameters, dtypes, layout, dropped keys."""
    flat = flatten(variables)
    params = [v for p, v in flat.items() if p[0] == PARAMS]
    dtypes = sorted({str(np.dtype(v.dtype)) for v in flat.values()})
    return {"tensors": len(flat), "parameters": int(sum(int(np.prod(v.shape)) for v in params)),
            "dtypes": dtypes, "layout": report.layout, "detected": report.detected,
            "dropped": len(report.dropped)}
