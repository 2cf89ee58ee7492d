"""`python -m train.gates`: per-stage gate heat maps and class specificity of a trained run."""

import json

import numpy as np
import pytest

from train.config import ConfigError, TrainConfig
from train.gates import analyse, class_means, class_specificity, main


def test_class_specificity_is_zero_for_shared_gates_and_grows_with_class_differences():
    labels = np.array([0, 0, 1, 1, 2, 2])
    shared = np.tile(np.linspace(0.1, 0.9, 4), (6, 1))
    classes, means = class_means(shared, labels)
    assert classes.tolist() == [0, 1, 2] and class_specificity(means) == pytest.approx(0, abs=1e-12)
    distinct = shared + 0.1 * labels[:, None]
    _, means = class_means(distinct, labels)
    assert class_specificity(means) == pytest.approx(np.std([0.0, 0.1, 0.2]))


def test_weights_from_a_file_are_analysed(tmp_path, capsys):
    import jax

    import se_flax
    from se_flax.convert.files import write_variables

    model = se_flax.create_model("se_resnet18", num_classes=10, stem="cifar", in_chans=1)
    variables = model.init(jax.random.key(0), np.zeros((1, 8, 8, 1)))
    write_variables(variables, tmp_path / "weights.msgpack")
    assert main([str(tmp_path / "weights.msgpack"), "--model", "se_resnet18", "--examples",
                 "40"]) == 0
    summary = json.loads((tmp_path / "gates.json").read_text())
    assert summary["weights"] == "weights.msgpack" and summary["examples"] == 40
    assert [r["channels"] for r in summary["stages"].values()] == [64, 128, 256, 512]
    assert "layer4" in capsys.readouterr().out
    assert (tmp_path / "gates_heatmap.png").stat().st_size > 10_000


@pytest.mark.slow  # a short training run first (~30 s on 2 cores)
def test_a_short_run_is_analysed(tmp_path, capsys):
    from train.loop import train

    run = tmp_path / "run"
    train(TrainConfig(epochs=1, max_steps=2, batch_size=16, export=False, tensorboard=False,
                      progress=False, output_dir=str(run)))
    assert main([str(run), "--examples", "40"]) == 0
    printed = capsys.readouterr().out
    summary = json.loads((run / "gates.json").read_text())
    assert summary["weights"] == "step 2" and summary["examples"] == 40
    assert [r["channels"] for r in summary["stages"].values()] == [64, 128, 256, 512]
    assert all(r["class_specificity"] > 0 for r in summary["stages"].values())
    assert "layer4" in printed and "class specificity" in printed
    assert (run / "gates_heatmap.png").stat().st_size > 10_000 and (run / "gates.png").is_file()


    # the same weights as a file `se-convert` reads give the same numbers
    from se_flax.convert.files import write_variables
    from train.loop import final_params

    state = final_params(run)
    write_variables({"params": state["params"], "batch_stats": state["batch_stats"]},
                    tmp_path / "weights.msgpack")
    assert main([str(tmp_path / "weights.msgpack"), "--model", "se_resnet18", "--examples",
                 "40", "--out", str(tmp_path / "file")]) == 0
    from_file = json.loads((tmp_path / "file" / "gates.json").read_text())
    assert from_file["stages"] == summary["stages"]


def test_a_directory_without_a_run_is_named():
    with pytest.raises(ConfigError, match="has no config.json"):
        analyse("/nonexistent/run")


def test_gate_stages_of_resnet_mobilenet_and_vit_intermediates():
    from train.export import stage_gates

    def g(c):
        return (np.full((2, c), 0.5, np.float32),)

    resnet = {f"layer{s}_{i}": {"se": {"gate": g(8 * s)}} for s in (1, 2) for i in (0, 1)}
    assert {k: v[0] for k, v in stage_gates(resnet).items()} == {"layer1": "layer1_1",
                                                                 "layer2": "layer2_1"}
    # MobileNetV3: the SE is a block's `block_M` child, only in some blocks.
    mobilenet = {f"features_{i}": {"block_2": {"gate": g(i)}} for i in (4, 5, 6, 11, 12)}
    mobilenet["features_2"] = {}
    stages = stage_gates(mobilenet, max_panels=4)
    assert list(stages) == ["features_4", "features_5", "features_11", "features_12"]
    assert stages["features_12"][1].shape == (2, 12)
    vit = {f"blocks_{i}": {"se": {"gate": g(16)}} for i in range(12)}
    assert list(stage_gates(vit)) == ["blocks_2", "blocks_5", "blocks_8", "blocks_11"]


def test_selective_kernel_selections_are_plotted_as_the_3x3_path_weight():
    from train.export import stage_gates

    w = np.random.default_rng(0).dirichlet([1, 1], size=(4, 8)).transpose(0, 2, 1)  # (N, 2, C)
    inter = {"layer1_0": {"conv1": {"selection": (w,)}},
             "layer1_1": {"conv1": {"selection": (w * 0 + 0.5,)}, "se": {"gate": (w[:, 0],)}}}
    found = stage_gates(inter)
    assert list(found) == ["layer1 selection", "layer1"]
    block, g = found["layer1 selection"]
    assert block == "layer1_1" and g.shape == (4, 8) and np.all(g == 0.5)
