"""`--init-from RUN_DIR`: start a run from another run's weights (fine-tuning).

Parameters and BatchNorm statistics come from the newest checkpoint of `RUN_DIR`; the optimiser,
the schedule and the step start afresh. If the two runs' models differ only in SE widths (e.g.
`--reduction 16` there, `--reduction 8` here: the SENet article's "train with 16, fine-tune with
8"), the weights are adapted with `se_flax.widen_se`, which keeps the network's function; any
other difference is an error naming the first key that differs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import flax.linen as nn

from se_flax.models import create_model
from se_flax.widen import widen_se
from train.config import ConfigError, from_mapping


def initial_variables(run_dir: str | Path, model: nn.Module, num_classes: int,
                      image_shape: tuple[int, ...]) -> tuple[dict[str, Any], str]:
    """`({"params", "batch_stats"}, report)` of `run_dir`'s newest checkpoint, for `model`."""
    from train.loop import final_params

    run = Path(run_dir)
    config_file = run / "config.json"
    if not config_file.is_file():
        raise ConfigError(f"config: init_from={str(run)!r} is invalid; expected the output "
                          "directory of a training run (it has no config.json)")
    source_cfg = from_mapping(json.loads(config_file.read_text())).validate()
    try:
        state = final_params(run)
    except FileNotFoundError:
        raise ConfigError(f"config: init_from={str(run)!r} has no checkpoint to start from")\
            from None
    source = create_model(source_cfg.model, **source_cfg.model_options(num_classes,
                                                                       image_shape[-1]))
    variables = {"params": state["params"], "batch_stats": state["batch_stats"]}
    try:
        change = widen_se(variables, source, model, input_shape=(1, *image_shape))
    except ValueError as e:
        raise ConfigError(f"config: init_from={str(run)!r}: {e}") from None
    return change.weights, f"initialised from {run} (step {state['step']}): {change.report()}"
