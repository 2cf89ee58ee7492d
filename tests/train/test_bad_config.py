"""Every invalid option fails with a message naming it and what is allowed, before anything is
compiled; NaN/Inf in the loss or the gradients stop the run naming the step; float16 loss
scaling skips (and counts) overflowing steps instead."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import train.loop
from train.cli import config_from_args
from train.config import FIELDS, ConfigError, TrainConfig
from train.data import DatasetUnavailable
from train.monitor import NonFiniteLoss, check_finite

# one invalid command-line value per option, and the text the error must contain
BAD = {
    "dataset": None, "data_dir": None, "train_split": None, "eval_split": None,  # checked
    "output_dir": None, "coordinator_address": None,  # by the run below, or free-form text
    "init_from": None,
    "model": "se_resnet19", "stem": "tiny", "attn": "sse", "impl": "fast", "api": "haiku",
    "image_size": "0", "eval_fraction": "1.5", "zero_init_last_bn": "perhaps",
    "dtype": "float8", "optimizer": "lamb", "lr": "0", "momentum": "1", "nesterov": "2",
    "weight_decay": "-1", "adam_b1": "x", "adam_b2": "y", "warmup_epochs": "-1", "epochs": "0",
    "batch_size": "0", "label_smoothing": "1", "crop_padding": "-1", "flip": "maybe",
    "mean": "a b", "std": "0", "parallel": "pjit", "num_processes": "two", "process_id": "one",
    "peer_timeout": "0",
    "seed": "1.5", "resume": "sometimes", "log_every": "0", "checkpoint_every": "-5",
    "keep_checkpoints": "0", "max_steps": "0", "export": "nah", "progress": "2",
    "tensorboard": "x", "frames": "0", "frame_stride": "0", "workers": "-1",
    "crop": "centre", "eval_resize": "0", "lr_base_batch": "0", "profile_steps": "5:2",
    "reduction": "0", "patch_size": "0",
}


def test_the_table_covers_every_option():
    assert set(BAD) == set(FIELDS), set(FIELDS) ^ set(BAD)


@pytest.mark.parametrize("name", sorted(k for k, v in BAD.items() if v is not None))
def test_every_bad_cli_value_names_the_option(name):
    with pytest.raises(ConfigError) as e:
        config_from_args([f"--{name.replace('_', '-')}", *BAD[name].split()])
    assert f"{name}=" in str(e.value), str(e.value)
    assert "expected" in str(e.value), str(e.value)


@pytest.fixture
def no_compilation(monkeypatch):
    def refuse(*a, **k):
        raise AssertionError("compilation started before the configuration was checked")
    for name in ("jit", "pmap"):
        monkeypatch.setattr(jax, name, refuse)


@pytest.mark.parametrize("overrides, pattern", [
    ({"model": "se_resnet19"}, r"unknown model 'se_resnet19'.*se_resnet18"),
    ({"stem": "tiny"}, r"stem='tiny' is not supported; expected one of 'imagenet', 'cifar'"),
    ({"attn": "sse"}, r"attn='sse' is invalid.*did you mean se"),
    ({"stem": "imagenet"}, r"input of size \(8, 8\).*smaller than the total stride \(32, 32\)"),
    ({"dataset": "folder:/nonexistent/images"}, r"/nonexistent/images"),
])
def test_bad_run_options_fail_before_compilation(tmp_path, no_compilation, overrides, pattern):
    cfg = TrainConfig(output_dir=str(tmp_path), export=False, tensorboard=False,
                      progress=False, **overrides)
    with pytest.raises((ConfigError, DatasetUnavailable), match=pattern):
        train.loop.train(cfg)


def test_batch_not_divisible_by_devices_fails_before_compilation(tmp_path, no_compilation,
                                                                 monkeypatch):
    monkeypatch.setattr(train.loop.jax, "device_count", lambda: 3)
    cfg = TrainConfig(output_dir=str(tmp_path), batch_size=16, export=False, progress=False)
    with pytest.raises(ConfigError, match=r"batch_size=16 is not divisible by the 3 devices"):
        train.loop.train(cfg)


# ---- numerical faults ----

@pytest.mark.parametrize("values, what", [
    ({"loss": float("nan"), "grad_norm": 1.0}, "loss is nan"),
    ({"loss": 2.3, "grad_norm": float("inf")}, "gradient norm is inf"),
    ({"loss": 2.3, "grad_norm": float("nan")}, "gradient norm is nan"),
])
def test_non_finite_loss_or_gradients_stop_naming_the_step(tmp_path, values, what):
    with pytest.raises(NonFiniteLoss, match=rf"{what} at step 7; stopped\. the last good "
                                            r"checkpoint is step 5"):
        check_finite(7, values, 5, tmp_path)


def test_float16_overflow_is_a_skipped_step_not_a_failure(tmp_path):
    assert check_finite(3, {"loss": float("inf"), "grad_norm": float("inf"), "skipped": 1.0},
                        2, tmp_path)
    assert not check_finite(4, {"loss": 2.0, "grad_norm": 1.0, "skipped": 0.0}, 2, tmp_path)


def test_float16_step_skips_and_reports_overflow():
    """The real train step with float16 loss scaling: an overflowing scale skips the update."""
    import flax.linen as nn
    from flax.training.dynamic_scale import DynamicScale

    from train.step import create_state, make_optimizer, make_train_step, warmup_cosine

    class Tiny(nn.Module):
        @nn.compact
        def __call__(self, x, train=False):
            x = nn.BatchNorm(use_running_average=not train, axis_name="batch")(x)
            return nn.Dense(3, dtype=jnp.float16)(x.reshape(x.shape[0], -1))

    model, schedule = Tiny(), warmup_cosine(0.1, 0, 10)
    tx = make_optimizer("sgd", schedule)
    state = create_state(model, tx, jax.random.key(0), (4, 4, 1), float16=True)
    step = jax.vmap(make_train_step(model, tx, schedule, num_classes=3, mean=[0.5], std=[0.25],
                                    dtype=jnp.float16), axis_name="batch",
                    in_axes=(None, 0, 0), out_axes=(None, None))
    images = np.arange(1 * 8 * 16, dtype=np.uint8).reshape(1, 8, 4, 4, 1)
    labels = (np.arange(8) % 3).reshape(1, 8)
    huge = state.replace(dynamic_scale=DynamicScale(scale=jnp.float32(3e38)))
    after, m = step(huge, images, labels)
    assert float(m["skipped"]) == 1.0 and float(m["loss_scale"]) == pytest.approx(1.5e38)
    for a, b in zip(jax.tree.leaves(after.params), jax.tree.leaves(huge.params), strict=True):
        np.testing.assert_array_equal(a, b)  # the update was not applied
    assert float(after.dynamic_scale.scale) == pytest.approx(1.5e38)  # and the scale backs off
    after, m = step(state.replace(dynamic_scale=DynamicScale(scale=jnp.float32(1.0))), images,
                    labels)
    assert float(m["skipped"]) == 0.0
    assert any(not np.array_equal(a, b) for a, b in
               zip(jax.tree.leaves(after.params), jax.tree.leaves(state.params), strict=True))
