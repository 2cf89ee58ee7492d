"""Training on video: TFDS `ucf101` through `tfds.testing.mock_data` (random clips, no files).

The end-to-end run trains `se_r3d_18` for two steps on 8-frame 16x16 clips, evaluates, writes an
Orbax checkpoint and exports to PyTorch with the logits parity check and the gate plot.
"""

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from train.augment import augment
from train.config import ConfigError, TrainConfig
from train.data import TFDSVideoSource, load_dataset

tfds = pytest.importorskip("tensorflow_datasets")

CLIPS = dict(frames=8, frame_stride=2, image_size=16)


def test_clip_sampling_is_fixed_stride_and_a_function_of_seed_and_step():
    # Frame t of every video is filled with the value t, so a clip shows its frame indices.
    videos = [{"video": np.broadcast_to(np.arange(n, dtype=np.uint8)[:, None, None, None],
                                        (n, 20, 30, 3)).copy(), "label": i}
              for i, n in enumerate((40, 33, 6))]
    src = TFDSVideoSource(videos, "video", "label", frames=8, stride=2, size=16, seed=3)
    clips, labels = src.get(np.array([0, 1, 2]), step=5)
    assert clips.shape == (3, 8, 16, 16, 3) and clips.dtype == np.uint8
    assert labels.tolist() == [0, 1, 2]
    starts = clips[:, 0, 0, 0, 0].astype(int)
    for clip, start, n in zip(clips[:2], starts[:2], (40, 33), strict=True):
        assert 0 <= start <= n - 15
        np.testing.assert_array_equal(clip[:, 8, 8, 0], start + 2 * np.arange(8))
    np.testing.assert_array_equal(clips[2, :, 0, 0, 0], (starts[2] + 2 * np.arange(8)) % 6)
    np.testing.assert_array_equal(src.get(np.array([0, 1, 2]), step=5)[0], clips)
    other = [src.get(np.array([0]), step=s)[0][0, 0, 0, 0, 0] for s in range(6, 16)]
    assert len(set(other) | {starts[0]}) > 1  # the start frame moves with the step
    centred, _ = src.get(np.array([0]))  # evaluation: the centred span
    np.testing.assert_array_equal(centred[0, :, 0, 0, 0], 12 + 2 * np.arange(8))


def test_mock_ucf101_loads_as_clips():
    with tfds.testing.mock_data(num_examples=4):
        ds = load_dataset("ucf101", **CLIPS)
        x, y = ds.train.get(np.array([0, 3]), step=0)
        xe, _ = ds.eval.get(np.array([1]))
    assert ds.is_video and (ds.num_classes, ds.image_shape, len(ds.train)) == \
        (101, (8, 16, 16, 3), 4)
    assert x.shape == (2, 8, 16, 16, 3) and x.dtype == np.uint8 and y.dtype == np.int32
    assert xe.shape == (1, 8, 16, 16, 3) and 0 <= y.min() and y.max() < 101


def test_clip_augmentation_is_the_same_for_every_frame_and_matches_images():
    rng = np.random.default_rng(0)
    images = jnp.asarray(rng.integers(0, 255, (6, 16, 16, 3), dtype=np.uint8))
    clips = jnp.repeat(images[:, None], 4, axis=1)  # 4 identical frames per clip
    key, ids = jax.random.key(1), jnp.arange(6)
    out_images = augment(images, key, ids, 2, True)
    out_clips = augment(clips, key, ids, 2, True)
    assert out_clips.shape == clips.shape
    for t in range(4):
        np.testing.assert_array_equal(out_clips[:, t], out_images)
    assert not np.array_equal(out_images, images)


def test_video_model_and_image_data_mismatch_is_rejected_before_compiling(tmp_path):
    from train.loop import train

    cfg = TrainConfig(model="se_r3d_18", output_dir=str(tmp_path / "a"), export=False)
    with pytest.raises(ConfigError, match="video model"):
        train(cfg)
    cfg = TrainConfig(model="se_resnet18", dataset="ucf101", output_dir=str(tmp_path / "b"),
                      **CLIPS)
    with tfds.testing.mock_data(num_examples=4), pytest.raises(ConfigError, match="image model"):
        train(cfg)
    cfg = TrainConfig(model="se_r3d_18", dataset="ucf101", output_dir=str(tmp_path / "c"),
                      **{**CLIPS, "frames": 4})
    with tfds.testing.mock_data(num_examples=4), pytest.raises(ConfigError, match="frames"):
        train(cfg)
    assert not (tmp_path / "c" / "checkpoints").exists()


@pytest.mark.slow  # compiles and exports SE-R3D-18 (~100 s on 2 cores)
def test_se_r3d_18_short_run_on_mock_ucf101(tmp_path):
    from train.loop import train

    out = tmp_path / "run"
    cfg = TrainConfig(model="se_r3d_18", dataset="ucf101", batch_size=2, epochs=1,
                      crop_padding=2, flip=True, log_every=1, tensorboard=False,
                      progress=False, output_dir=str(out), **CLIPS)
    with tfds.testing.mock_data(num_examples=4):
        result = train(cfg)
    assert result.steps == 2
    assert (out / "checkpoints" / "2").is_dir()
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    train_rows = [r for r in rows if r["split"] == "train"]
    assert [r["step"] for r in train_rows] == [1, 2]
    assert all(math.isfinite(r["loss"]) for r in train_rows)
    assert [r["examples"] for r in rows if r["split"] == "eval"] == [4]
    parity = result.export["parity"]
    assert parity["ok"] and parity["batch"] == 4, parity
    assert (out / "model.pth").is_file() and (out / "gates.png").is_file()
