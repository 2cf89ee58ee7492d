import json

import pytest

from train.cli import EXIT_CONFIG, config_from_args, main
from train.config import ConfigError, TrainConfig, builtin_config, from_mapping, load_file
from train.parallel import check_batch_size


def test_defaults_are_the_digits_run():
    cfg = TrainConfig().validate()
    assert (cfg.dataset, cfg.model, cfg.stem, cfg.parallel) == \
        ("digits", "se_resnet18", "cifar", "shard_map")


def test_file_then_command_line_overrides(tmp_path):
    f = tmp_path / "run.toml"
    f.write_text('lr = 0.2\nbatch_size = 32\nmean = [0.5]\nflip = true\n')
    cfg = config_from_args(["--config", str(f), "--batch-size", "16", "--std", "0.25"])
    assert (cfg.lr, cfg.batch_size, cfg.mean, cfg.std, cfg.flip) == (0.2, 16, [0.5], [0.25], True)
    j = tmp_path / "run.json"
    j.write_text(json.dumps({"epochs": 3, "parallel": "pmap"}))
    cfg = config_from_args(["--config", str(j), "--flip", "--max_steps=7"])
    assert (cfg.epochs, cfg.parallel, cfg.flip, cfg.max_steps) == (3, "pmap", True, 7)


def test_shipped_cifar_configs_load():
    for name in ("cifar10", "cifar100"):
        cfg = config_from_args(["--config", name])
        assert cfg.dataset == name and cfg.crop_padding == 4 and cfg.flip
        assert builtin_config(name).exists()


def test_imagenet_recipe():
    cfg = config_from_args(["--config", "imagenet", "--batch-size", "1024"])
    assert (cfg.model, cfg.stem, cfg.crop, cfg.image_size, cfg.dtype) == \
        ("se_resnet50", "imagenet", "random_resized", 224, "bfloat16")
    assert (cfg.optimizer, cfg.momentum, cfg.nesterov, cfg.weight_decay) == \
        ("sgd", 0.9, False, 1e-4)
    assert (cfg.label_smoothing, cfg.epochs, cfg.zero_init_last_bn) == (0.1, 100, True)
    assert cfg.peak_lr() == pytest.approx(0.4)  # 0.1 x 1024 / 256
    assert cfg.crop_padding == 0 and cfg.flip


@pytest.mark.parametrize("argv, fragment", [
    (["--crop", "random_resized"], "random_resized needs image_size"),
    (["--image-size", "64", "--eval-resize", "32"], "eval_resize=32"),
    (["--profile-steps", "3"], "profile_steps='3'"),
    (["--workers", "-2"], "workers=-2"),
])
def test_input_options_are_checked(argv, fragment):
    with pytest.raises(ConfigError, match="config: ") as e:
        config_from_args(argv)
    assert fragment in str(e.value)


@pytest.mark.parametrize("argv, fragment", [
    (["--parallel", "pjit"], "parallel='pjit'"),
    (["--optimizer", "lamb"], "optimizer='lamb'"),
    (["--batch-size", "0"], "batch_size=0"),
    (["--batch-size", "many"], "batch_size='many'"),
    (["--lr", "-1"], "lr=-1.0"),
    (["--momentum", "1.5"], "momentum=1.5"),
    (["--dtype", "float8"], "dtype='float8'"),
    (["--std", "0", "1"], "std=[0.0, 1.0]"),
    (["--flip", "maybe"], "flip='maybe'"),
    (["--coordinator-address", "localhost:1234"], "num_processes and process_id"),
])
def test_bad_values_name_the_option(argv, fragment):
    with pytest.raises(ConfigError, match="config: ") as e:
        config_from_args(argv)
    assert fragment in str(e.value)


def test_bad_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_file(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("lr = = 3")
    with pytest.raises(ConfigError, match="cannot parse"):
        load_file(bad)
    with pytest.raises(ConfigError, match="unknown option 'learning_rate'"):
        from_mapping({"learning_rate": 0.1})
    with pytest.raises(ConfigError, match="wrong type"):
        from_mapping({"epochs": "ten"})
    yaml = tmp_path / "c.yaml"
    yaml.write_text("lr: 1")
    with pytest.raises(ConfigError, match="expected .toml or .json"):
        load_file(yaml)


def test_cli_reports_config_errors_without_a_traceback(capsys):
    assert main(["--epochs", "0"]) == EXIT_CONFIG
    err = capsys.readouterr().err
    assert "epochs=0 is invalid" in err and "Traceback" not in err


def test_batch_not_divisible_by_devices():
    assert check_batch_size(64, 4) == 16
    with pytest.raises(ValueError, match="batch_size=10 is not divisible by the 4 devices"):
        check_batch_size(10, 4)
    with pytest.raises(ValueError, match="not divisible by the 3 processes"):
        check_batch_size(8, 4, 3)


def test_help_describes_every_option_with_type_default_and_choices():
    from train.cli import build_parser
    from train.config import FIELDS

    parser = build_parser()
    actions = {a.dest: a for a in parser._actions}
    for name in FIELDS:
        text = actions[name].help
        assert text and "default: " in text and not text.startswith("("), (name, text)
    assert actions["parallel"].metavar == "{shard_map,pmap}"
    assert "default: shard_map" in actions["parallel"].help
    assert actions["impl"].metavar == "{auto,xla,cpu}"
    assert "default: digits" in actions["dataset"].help
    assert "(default: None)" not in parser.format_help()


def test_video_models_resolve_their_own_stem_and_image_models_the_cifar_one():
    assert TrainConfig(model="se_r3d_18").validate().stem == "r3d"
    assert TrainConfig().validate().stem == "cifar"
    with pytest.raises(ConfigError, match=r"stem='cifar' is not supported; expected one of 'r3d'"):
        TrainConfig(model="se_r3d_18", stem="cifar").validate()
    options = TrainConfig(model="se_r3d_18").validate().model_options(101, 3)
    assert options == {"num_classes": 101, "stem": "r3d", "in_chans": 3,
                       "zero_init_last_bn": False}


def test_mobilenet_and_vit_on_digits_get_the_smallest_side_they_accept():
    cfg = TrainConfig(model="mobilenet_v3_small").validate()
    assert (cfg.stem, cfg.image_size) == ("cifar", 16)
    cfg = TrainConfig(model="se_vit_tiny_patch16_224").validate()
    assert (cfg.stem, cfg.image_size) == ("patch", 16)
    assert cfg.model_options(10, 1)["img_size"] == 16
    cfg = TrainConfig(model="se_vit_tiny_patch16_224", patch_size=2).validate()
    assert cfg.image_size == 8
    options = TrainConfig(model="se_vit_tiny_patch16_224", patch_size=4,
                          image_size=32).validate().model_options(10, 1)
    assert (options["img_size"], options["patch_size"]) == (32, 4)
    assert TrainConfig().validate().image_size is None  # ResNets keep the stored 8x8


@pytest.mark.parametrize("overrides,fragment", [
    ({"model": "se_resnet18", "patch_size": 4}, "patch_size=4 is invalid; expected no "
                                               "patch_size for se_resnet18"),
    ({"model": "vit_tiny_patch16_224", "image_size": 40}, "img_size=40 is not a multiple of "
                                                          "patch_size=16"),
    ({"model": "vit_tiny_patch16_224", "dataset": "cifar10"}, "image_size=None is invalid for "
                                                              "vit_tiny_patch16_224"),
])
def test_bad_vit_options_name_the_option(overrides, fragment):
    with pytest.raises(ConfigError, match=fragment.replace("(", r"\(")):
        TrainConfig(**overrides).validate()
