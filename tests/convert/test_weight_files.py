"""Weight files that are truncated, bit-flipped or lie about their layout are refused with an
error naming the file and what is wrong (safetensors, Flax msgpack, Orbax; `.pth` is in
`parity_tests/test_reliability_torch.py`)."""

import json
import struct

import numpy as np
import pytest

from se_flax.convert import (
    CheckpointError,
    read_state_dict,
    read_variables,
    write_state_dict,
    write_variables,
)

STATE = {"conv1.weight": np.arange(24, dtype=np.float32).reshape(2, 3, 2, 2),
         "fc.bias": np.ones(5, np.float32)}
VARIABLES = {"params": {"conv1": {"kernel": np.random.default_rng(0).standard_normal(
    (3, 3, 4, 8)).astype(np.float32)}}, "batch_stats": {"bn": {"mean": np.zeros(8, np.float32)}}}


def safetensors_bytes(header, data):
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + data


def test_intact_files_read_back(tmp_path):
    write_state_dict(STATE, tmp_path / "w.safetensors")
    state, _ = read_state_dict(tmp_path / "w.safetensors")
    np.testing.assert_array_equal(state["conv1.weight"], STATE["conv1.weight"])
    hand = safetensors_bytes({"t": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}},
                             np.array([1, 2], np.float32).tobytes())
    (tmp_path / "hand.safetensors").write_bytes(hand)
    assert read_state_dict(tmp_path / "hand.safetensors")[0]["t"].tolist() == [1.0, 2.0]


@pytest.mark.parametrize("keep", [0.0, 0.05, 0.5, 0.99])
def test_truncated_safetensors(tmp_path, keep):
    path = tmp_path / "w.safetensors"
    write_state_dict(STATE, path)
    path.write_bytes(path.read_bytes()[: int(path.stat().st_size * keep)])
    with pytest.raises(CheckpointError, match=r"w\.safetensors: not a readable safetensors"):
        read_state_dict(path)


LIES = {
    "header longer than the file": (
        struct.pack("<Q", 10 ** 6) + b'{"t": {}}', "header"),
    "header size of 2**63": (struct.pack("<Q", 2 ** 63) + b"{}", ""),
    "offsets past the end of the data": (safetensors_bytes(
        {"t": {"dtype": "F32", "shape": [2], "data_offsets": [0, 4096]}}, bytes(8)), ""),
    "offsets disagree with the shape": (safetensors_bytes(
        {"t": {"dtype": "F32", "shape": [4], "data_offsets": [0, 8]}}, bytes(8)), ""),
    "overlapping tensors": (safetensors_bytes(
        {"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
         "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}, bytes(12)), ""),
    "a gap before the data": (safetensors_bytes(
        {"t": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}, bytes(8)), ""),
    "reversed offsets": (safetensors_bytes(
        {"t": {"dtype": "F32", "shape": [0], "data_offsets": [8, 0]}}, bytes(8)), ""),
    "shape overflows": (safetensors_bytes(
        {"t": {"dtype": "F32", "shape": [2 ** 62, 2 ** 62], "data_offsets": [0, 8]}},
        bytes(8)), ""),
    "negative shape": (safetensors_bytes(
        {"t": {"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}}, bytes(8)), ""),
    "unknown dtype": (safetensors_bytes(
        {"t": {"dtype": "X99", "shape": [2], "data_offsets": [0, 8]}}, bytes(8)), ""),
    "header is not JSON": (struct.pack("<Q", 6) + b"{{{{{{" + bytes(8), ""),
    "trailing bytes after the data": (safetensors_bytes(
        {"t": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, bytes(16)), ""),
}


@pytest.mark.parametrize("lie", LIES, ids=list(LIES))
def test_safetensors_headers_that_lie_are_refused(tmp_path, lie):
    data, _ = LIES[lie]
    path = tmp_path / "lie.safetensors"
    path.write_bytes(data)
    with pytest.raises(CheckpointError, match=r"lie\.safetensors: not a readable safetensors "
                                              r"file: \S") as e:
        read_state_dict(path)
    print(f"{lie}: {e.value}")


def test_bit_flip_in_a_safetensors_header_is_refused(tmp_path):
    path = tmp_path / "w.safetensors"
    write_state_dict(STATE, path)
    data = bytearray(path.read_bytes())
    header_len = struct.unpack("<Q", bytes(data[:8]))[0]
    found = 0
    for offset in range(8, 8 + header_len, 3):  # every third header byte, one at a time
        flipped = bytearray(data)
        flipped[offset] ^= 0x40
        path.write_bytes(bytes(flipped))
        try:
            state, _ = read_state_dict(path)
        except CheckpointError as e:
            assert "w.safetensors: " in str(e)
            found += 1
            continue
        # the only flips that read are those that change no tensor (e.g. inside a key name,
        # which then fails to load by name) — never different numbers under the same key
        for key, value in state.items():
            if key in STATE:
                np.testing.assert_array_equal(value, STATE[key])
    assert found > header_len // 6


@pytest.mark.parametrize("keep", [0.0, 0.3, 0.9])
def test_truncated_msgpack(tmp_path, keep):
    path = tmp_path / "v.msgpack"
    write_variables(VARIABLES, path)
    path.write_bytes(path.read_bytes()[: int(path.stat().st_size * keep)])
    with pytest.raises(CheckpointError, match=r"v\.msgpack: (not a readable Flax msgpack|no "
                                              r"Flax variables)"):
        read_variables(path)


@pytest.mark.parametrize("damage", ["truncate", "delete"])
def test_damaged_orbax_directory(tmp_path, damage):
    path = tmp_path / "vars"
    write_variables(VARIABLES, path)
    big = max((p for p in path.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
    if damage == "truncate":
        big.write_bytes(big.read_bytes()[: big.stat().st_size // 2])
    else:
        big.unlink()
    with pytest.raises(CheckpointError, match=r"vars: not a readable Orbax checkpoint: \S"):
        read_variables(path)
