"""PyTorch checkpoint layouts of the (SE-)ResNet family, detected from keys. NumPy only.

Every layout uses the naming rule of `se_flax.convert.naming` (timm's and torchvision's module
names: `conv1`, `bn1`, `layer1.0.conv1`, `layer1.0.downsample.0`, `fc`). They differ in the
attention module of each block:

- `timm`: attention modules under `se.`: `layer1.0.se.fc1.weight` / `.bias` (1x1 convs with
  bias, timm's `SEModule`), `se.conv` (ECA), `se.fc` (EffectiveSE), `se.channel.fc1` /
  `se.spatial.conv` (CBAM). Detected by any `se.` module, or by Selective Kernel units
  (`layer1.0.conv1.paths.0.conv`, `layer1.0.conv1.attn.fc_select`; timm's `skresnet*`).
- `torchvision`: no attention modules (torchvision's `resnet*`, `resnext*`). Detected by no
  `se.` module and no Selective Kernel unit.
- `article`: the article's `SE_Block`, `se.fc = nn.Sequential(Linear, ReLU, Linear, Sigmoid)`
  without bias: `layer1.0.se.fc.0.weight` `(C/r, C)` and `se.fc.2.weight` `(C, C/r)`.
  Detected by `fc.0.weight` / `fc.2.weight` keys.

`se_torch_ref` models use the `timm` names; their SE kernels are 1x1 convs or, for the article's
variant (`se_article_*`), `nn.Linear` — both load, since a Linear weight fits a 1x1 kernel.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

import numpy as np

from se_flax.convert.errors import ConversionError

AUTO = "auto"
LAYOUTS = ("timm", "torchvision", "article")
# The article's SE layout `se.fc = Sequential(Linear, ReLU, Linear, Sigmoid)` → `fc1`/`fc2`.
ARTICLE_SE_RENAMES: tuple[tuple[str, str], ...] = (
    (r"(^|\.)fc\.0\.", r"\1fc1."),
    (r"(^|\.)fc\.2\.", r"\1fc2."),
)

_ATTENTION = re.compile(r"(?:^|\.)se\.")
_SELECTIVE_KERNEL = re.compile(r"(?:^|\.)(?:paths\.\d+|attn)\.")
_ARTICLE_FC = re.compile(r"(?:^|\.)fc\.[02]\.weight$")
_TIMM_FC = re.compile(r"(?:^|\.)fc[12]\.weight$")
_SE_FC = re.compile(r"^(?P<prefix>(?:.*\.)?)fc(?P<index>[12])\.(?P<leaf>[^.]+)$")


def check_layout(layout: str, allow_auto: bool = True) -> str:
    """Return `layout` if known, else raise a ValueError listing the choices."""
    allowed = (AUTO, *LAYOUTS) if allow_auto else LAYOUTS
    if layout not in allowed:
        raise ValueError(f"layout={layout!r} is not supported; expected one of "
                         f"{', '.join(repr(a) for a in allowed)}")
    return layout


def detect_layout(keys: Iterable[str]) -> str:
    """`article`, `timm` or `torchvision` from a state dict's keys (see the module docstring).

    A state dict that mixes the article's `fc.0`/`fc.2` keys with timm's `fc1`/`fc2` is
    ambiguous and raises a `ConversionError` naming one key of each.
    """
    keys = list(keys)
    article = [k for k in keys if _ARTICLE_FC.search(k)]
    timm = [k for k in keys if _TIMM_FC.search(k)]
    if article and timm:
        raise ConversionError([f"state dict mixes the article's SE keys (e.g. {article[0]}) "
                               f"with timm's (e.g. {timm[0]})"], "detecting the layout",
                              ["convert one layout at a time, or pass layout= explicitly"])
    if article:
        return "article"
    attention = any(_ATTENTION.search(k) or _SELECTIVE_KERNEL.search(k) for k in keys)
    return "timm" if attention or timm else "torchvision"


def import_renames(layout: str) -> tuple[tuple[str, str], ...]:
    """Key renames that bring a state dict of `layout` to the naming rule."""
    return ARTICLE_SE_RENAMES if check_layout(layout, allow_auto=False) == "article" else ()


def export_layout(state_dict: Mapping[str, np.ndarray], layout: str) -> dict[str, np.ndarray]:
    """A state dict in the naming rule (`timm` names) rewritten into `layout`.

    `torchvision` has no attention modules and `article` has only bias-free Linear SE blocks
    (`se.fc.0`, `se.fc.2`, 2-D weights); a model that does not fit raises one `ConversionError`
    listing every key that has no place in the layout.
    """
    check_layout(layout, allow_auto=False)
    if layout == "timm":
        return dict(state_dict)
    if layout == "torchvision":
        attention = [k for k in state_dict
                     if _ATTENTION.search(k) or _SELECTIVE_KERNEL.search(k)]
        if attention:
            raise ConversionError(
                [f"layout 'torchvision' has no place for {k}" for k in attention],
                "exporting to the torchvision layout",
                ["torchvision ResNets have no attention modules or Selective Kernel units; "
                 "use layout='timm'"])
        return dict(state_dict)
    out: dict[str, np.ndarray] = {}
    problems: list[str] = []
    shapes: dict[str, dict[str, tuple[int, ...]]] = {}
    for key, value in state_dict.items():
        m = _SE_FC.match(key)
        prefix = m["prefix"] if m else ""
        if m and (prefix == "" or prefix.endswith("se.")):
            if m["leaf"] != "weight":
                problems.append(f"layout 'article' has no place for {key} (the article's SE "
                                "block is two bias-free Linear layers)")
                continue
            if value.ndim < 2 or any(d != 1 for d in value.shape[2:]):
                problems.append(f"layout 'article' has no place for {key} of shape "
                                f"{tuple(value.shape)} (expected a Linear or 1x1 weight)")
                continue
            matrix = value.reshape(value.shape[:2])
            shapes.setdefault(prefix, {})[m["index"]] = matrix.shape
            out[f"{prefix}fc.{0 if m['index'] == '1' else 2}.weight"] = matrix
        elif _ATTENTION.search(key) or _SELECTIVE_KERNEL.search(key):
            problems.append(f"layout 'article' has no place for {key} (only SE blocks with "
                            "fc1/fc2 exist in the article's layout)")
        else:
            out[key] = value
    for prefix, pair in shapes.items():
        fc1, fc2 = pair.get("1"), pair.get("2")
        if fc1 and fc2 and (fc1[1] != fc2[0] or fc1[0] != fc2[1]):
            problems.append(f"layout 'article' has no place for {prefix}fc1/fc2 of shapes "
                            f"{fc1} and {fc2} (a grouped 1x1 conv is not a Linear layer)")
    if problems:
        raise ConversionError(problems, "exporting to the article layout",
                              ["only bias-free SqueezeExcite models (se_article_*) and models "
                               "without attention fit it; use layout='timm'"])
    return out
