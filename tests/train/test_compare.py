"""`python -m train.compare`: rows trained over seeds, a table whose costs come from the models."""

import json

import jax
import numpy as np
import pytest

import se_flax
from train.compare import main, rows_of


def flax_params(name: str) -> int:
    model = se_flax.create_model(name, num_classes=10, stem="cifar", in_chans=1)
    shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), np.zeros((1, 8, 8, 1))))
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(shapes["params"]))


def test_presets_name_their_rows():
    assert [o["model"] for _, o in rows_of("article-table", 50)] == ["resnet50", "se_resnet50"]
    sweep = rows_of("ratio-sweep", 18)
    assert [o["reduction"] for _, o in sweep] == [4, 8, 16, 32]
    assert sweep[0][0] == "SE-ResNet-18, r=4"


@pytest.mark.slow  # two short trainings (~70 s on 2 cores)
def test_a_tiny_comparison_writes_the_table_and_resumes(tmp_path, capsys):
    argv = ["--preset", "article-table", "--seeds", "1", "--set", "max_steps=2",
            "--set", "batch_size=32", "--set", "log_every=1", "--output-dir", str(tmp_path)]
    assert main(argv) == 0
    table = (tmp_path / "comparison.md").read_text().splitlines()
    assert table[0].startswith("| model | params | MACs | test accuracy")
    assert [line.split("|")[1].strip() for line in table[2:]] == ["ResNet-18", "SE-ResNet-18"]
    results = json.loads((tmp_path / "comparison.json").read_text())
    assert [r["params"] for r in results] == [flax_params("resnet18"), flax_params("se_resnet18")]
    assert results[1]["macs"] > results[0]["macs"] > 0
    assert all(0 <= r["accuracy_mean"] <= 1 and r["seconds_per_epoch"] > 0 for r in results)
    assert (tmp_path / "comparison.png").stat().st_size > 5_000
    capsys.readouterr()
    assert main(argv) == 0  # finished runs are read back, not trained again
    again = json.loads((tmp_path / "comparison.json").read_text())
    assert [r["accuracy"] for r in again] == [r["accuracy"] for r in results]
    assert "steps 0→2" not in capsys.readouterr().err


@pytest.mark.slow  # three short trainings and a pretraining run (~90 s on 2 cores)
def test_ratio_finetune_widens_the_pretrained_network(tmp_path, capsys):
    argv = ["--preset", "ratio-finetune", "--seeds", "1", "--set", "epochs=2", "--set",
            "max_steps=2", "--set", "batch_size=32", "--set", "log_every=1", "--output-dir",
            str(tmp_path)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "initialised from" in out and "exact: no hidden unit" in out
    results = json.loads((tmp_path / "comparison.json").read_text())
    assert [r["pretrain_reduction"] for r in results] == [None, None, 16]
    assert results[1]["params"] == results[2]["params"] > results[0]["params"]


def test_init_from_a_directory_without_a_run_is_a_config_error(tmp_path):
    from train.config import ConfigError
    from train.init_from import initial_variables

    with pytest.raises(ConfigError, match="init_from=.*no config.json"):
        initial_variables(tmp_path, None, 10, (8, 8, 1))
