"""Weight files: PyTorch state dicts (`.safetensors`, `.pth`/`.pt`/`.bin`) and Flax variables.

- `*.safetensors`: PyTorch state dict (needs `safetensors`);
- `*.pth`, `*.pt`, `*.bin`: PyTorch state dict (needs `torch`);
- `*.msgpack`: Flax variables (`flax.serialization`);
- a directory, or a path without suffix or ending in `.orbax`: Flax variables as an Orbax
  checkpoint (needs `orbax-checkpoint`).

PyTorch files are read with `torch.load(weights_only=True)`, after checking every entry of the
zip archive (and every loaded tensor's bytes) against its CRC-32 — torch itself does not, so a
flipped bit would load silently. A pickle that would import or call anything beyond tensors and
plain containers (i.e. run code) is refused with an `UnsafeCheckpointError` naming the file.
Wrapped state dicts (`{"state_dict": ...}`) and shared `module.` prefixes are unwrapped (see
`se_flax.convert.unwrap`). Flax files may hold a training state: its `params` and
`batch_stats` are taken and the rest is ignored (noted). dtypes are preserved,
bfloat16 included (NumPy arrays of `ml_dtypes.bfloat16`). torch is imported only inside the
`.pth` functions, so this module, like all of `se_flax`, works without it.
"""

from __future__ import annotations

import pickle
import re
import zipfile
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import ml_dtypes
import numpy as np

from se_flax.convert.naming import flatten, unflatten
from se_flax.convert.tensors import to_numpy
from se_flax.convert.unwrap import unwrap_state_dict
from se_spec.variables import COLLECTIONS, PARAMS

TORCH_SUFFIXES = (".pth", ".pt", ".bin")
FORMATS = {".safetensors": "safetensors", ".msgpack": "msgpack",
           **{s: "torch" for s in TORCH_SUFFIXES}}
FRAMEWORK = {"safetensors": "torch", "torch": "torch", "msgpack": "flax", "orbax": "flax"}
_SAFETENSORS_DTYPES = {
    "F64": np.float64, "F32": np.float32, "F16": np.float16, "BF16": ml_dtypes.bfloat16,
    "I64": np.int64, "I32": np.int32, "I16": np.int16, "I8": np.int8, "U8": np.uint8,
    "BOOL": np.bool_,
}


class CheckpointError(ValueError):
    """A file cannot be read or written as a checkpoint; the message names the file."""


class UnsafeCheckpointError(CheckpointError):
    """A pickle that would execute code (import or call a non-tensor global) was refused."""


def checkpoint_format(path: str | Path) -> str:
    """`safetensors`, `torch`, `msgpack` or `orbax` from a path (see the module docstring)."""
    p = Path(path)
    if p.is_dir() or p.suffix in ("", ".orbax"):
        return "orbax"
    if p.suffix in FORMATS:
        return FORMATS[p.suffix]
    raise CheckpointError(f"{path}: unknown checkpoint format {p.suffix!r}; expected "
                          f"{', '.join(FORMATS)} or an Orbax directory")


def load_torch_checkpoint(path: str | Path) -> Any:
    """What a `.safetensors` or `.pth`/`.pt`/`.bin` file holds, as stored (maybe wrapped).

    Tensors come back as NumPy arrays (safetensors) or torch tensors (`.pth`); pass the result
    to `torch_to_flax`, which unwraps it once, or use `read_state_dict`.
    """
    kind = checkpoint_format(path)
    if not Path(path).is_file():
        raise CheckpointError(f"{path}: no such file")
    if kind == "safetensors":
        return _read_safetensors(Path(path))
    if kind == "torch":
        return _torch_load(Path(path))
    raise CheckpointError(f"{path}: a {kind} file holds Flax variables, not a PyTorch state dict")


def read_state_dict(path: str | Path) -> tuple[dict[str, np.ndarray], list[str]]:
    """The PyTorch state dict in a weight file, unwrapped into NumPy arrays, plus notes."""
    return unwrap_state_dict(load_torch_checkpoint(path))


def _read_safetensors(path: Path) -> dict[str, np.ndarray]:
    from safetensors import deserialize

    try:
        entries = deserialize(path.read_bytes())
    except Exception as e:  # safetensors raises its own SafetensorError
        raise CheckpointError(f"{path}: not a readable safetensors file: {e}") from e
    state = {}
    for name, info in entries:
        if info["dtype"] not in _SAFETENSORS_DTYPES:
            raise CheckpointError(f"{path}: tensor {name} has unsupported dtype {info['dtype']}")
        dtype = np.dtype(_SAFETENSORS_DTYPES[info["dtype"]])
        state[name] = np.frombuffer(bytes(info["data"]), dtype).reshape(info["shape"]).copy()
    return state


def _check_zip_crc(path: Path) -> set[int] | None:
    """Verify each entry of a zip-format `.pth` against its CRC-32 (torch.load does not).

    Returns the CRC-32s of the tensor-data entries (None: not a zip, or CRCs not written), so
    the storages torch actually loaded can be checked too: a flipped offset in the zip's
    central directory can make torch's reader and Python's disagree about where data lies.
    """
    try:
        if not zipfile.is_zipfile(path):
            return None  # a legacy (non-zip) pickle: torch.load judges it
        crcs: set[int] | None = set()
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                if info.CRC == 0 and info.file_size:
                    crcs = None  # written with torch's CRC computation switched off
                    continue
                with archive.open(info) as f:
                    while f.read(1 << 24):
                        pass
                if crcs is not None and "/data/" in info.filename:
                    crcs.add(info.CRC)
        return crcs
    except zipfile.BadZipFile as e:  # raised for a CRC mismatch and for broken structures
        raise CheckpointError(f"{path}: the file is corrupt (a flipped, overwritten or "
                              f"missing byte): {e}") from None
    except (OSError, EOFError, ValueError, NotImplementedError, zlib.error) as e:
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint: {e}") from None


def _torch_load(path: Path) -> Any:
    import torch

    crcs = _check_zip_crc(path)
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
        if crcs is not None:
            _check_storages(path, loaded, crcs)
        return loaded
    except CheckpointError:
        raise
    except pickle.UnpicklingError as e:
        found = re.search(r"(?:unsupported|blocked|Unsupported)[^\n]*GLOBAL[^\n]*|"
                          r"Unsupported (?:global|operand)[^\n]*", str(e))
        detail = f" ({found.group(0).strip().rstrip('.')})" if found else ""
        raise UnsafeCheckpointError(
            f"{path}: refused to load: the pickle would import or call something that is not "
            f"a tensor{detail}. It is loaded with torch.load(weights_only=True), which never "
            "runs code from a file; this one is malicious or holds Python objects. If you "
            "trust it, load it yourself with weights_only=False and save its state_dict() "
            "again.") from None
    except Exception as e:
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint: {e}") from e


def _check_storages(path: Path, tree: Any, crcs: set[int]) -> None:
    """Every tensor's storage must be one of the archive's verified data entries."""
    import torch

    def walk(node: Any) -> None:
        if isinstance(node, torch.Tensor):
            # The storage's bytes as a NumPy view (`bytes(storage)` reads them one by one).
            data = torch.empty(0, dtype=torch.uint8).set_(node.untyped_storage()).numpy()
            if zlib.crc32(data) not in crcs:
                raise CheckpointError(f"{path}: the file is corrupt: a tensor's data does not "
                                      "match any CRC-32 in the archive (damaged zip directory)")
        elif isinstance(node, Mapping):
            for v in node.values():
                walk(v)
        elif isinstance(node, list | tuple):
            for v in node:
                walk(v)

    walk(tree)


def write_state_dict(state_dict: Mapping[str, Any], path: str | Path) -> None:
    """Write a PyTorch state dict to `.safetensors` or `.pth`/`.pt`/`.bin`."""
    kind = checkpoint_format(path)
    arrays = {k: np.require(to_numpy(v), requirements="C") for k, v in state_dict.items()}
    if kind == "safetensors":
        from safetensors.numpy import save_file

        save_file(arrays, str(path), metadata={"format": "pt"})
    elif kind == "torch":
        import torch

        def tensor(a: np.ndarray) -> torch.Tensor:
            if a.dtype == ml_dtypes.bfloat16:
                return torch.from_numpy(a.view(np.int16).copy()).view(torch.bfloat16)
            return torch.from_numpy(a.copy())

        torch.save({k: tensor(a) for k, a in arrays.items()}, path)
    else:
        raise CheckpointError(f"{path}: a {kind} file holds Flax variables, not a PyTorch "
                              "state dict")


def read_variables(path: str | Path) -> tuple[dict[str, Any], list[str]]:
    """Flax `{"params", "batch_stats"}` from `.msgpack` or an Orbax directory, plus notes.

    A saved training state (`{"params", "batch_stats", "opt_state", "step", ...}`, possibly one
    level down) is accepted: only `params` and `batch_stats` are taken.
    """
    return find_variables(read_tree(path), str(path))


def read_tree(path: str | Path) -> Any:
    """The whole tree of a `.msgpack` file or an Orbax directory, as stored."""
    kind = checkpoint_format(path)
    if not Path(path).exists():
        raise CheckpointError(f"{path}: no such file or directory")
    if kind == "msgpack":
        from flax import serialization

        try:
            return serialization.msgpack_restore(Path(path).read_bytes())
        except Exception as e:
            raise CheckpointError(f"{path}: not a readable Flax msgpack file: {e}") from e
    if kind == "orbax":
        import orbax.checkpoint as ocp

        try:
            with ocp.StandardCheckpointer() as checkpointer:
                return checkpointer.restore(Path(path).absolute())
        except Exception as e:
            raise CheckpointError(f"{path}: not a readable Orbax checkpoint: {e}") from e
    raise CheckpointError(f"{path}: a {kind} file holds a PyTorch state dict, not Flax "
                          "variables")


def find_variables(tree: Any, where: str | Path) -> tuple[dict[str, Any], list[str]]:
    """The `params`/`batch_stats` of a read tree (top level or one level down), plus notes."""
    candidates = [(tree, "")]
    if isinstance(tree, Mapping):
        candidates += [(v, f"[{k!r}]") for k, v in tree.items() if isinstance(v, Mapping)]
    for node, key in candidates:
        if isinstance(node, Mapping) and isinstance(node.get(PARAMS), Mapping):
            variables = {c: unflatten({p: to_numpy(v) for p, v in flatten(node[c]).items()})
                         for c in COLLECTIONS if c in node}
            ignored = sorted(str(k) for k in node if k not in variables)
            notes = [f"took {where}{key} params/batch_stats"
                     + (f" (ignored {', '.join(ignored)})" if ignored else "")] \
                if key or ignored else []
            return variables, notes
    found = sorted(tree) if isinstance(tree, Mapping) else type(tree).__name__
    raise CheckpointError(f"{where}: no Flax variables (a 'params' collection) found; top "
                          f"level holds {found}")


def write_variables(variables: Mapping[str, Any], path: str | Path,
                    overwrite: bool = False) -> None:
    """Write Flax variables to `.msgpack` or an Orbax directory (NumPy arrays, dtypes kept)."""
    write_tree({c: variables[c] for c in COLLECTIONS if c in variables}, path, overwrite)


def write_tree(tree: Mapping[Any, Any], path: str | Path, overwrite: bool = False) -> None:
    """Write a nested dict of arrays to `.msgpack` or an Orbax directory, dtypes kept."""
    kind = checkpoint_format(path)
    tree = _to_numpy_tree(tree)
    if kind == "msgpack":
        from flax import serialization

        Path(path).write_bytes(serialization.msgpack_serialize(tree))
    elif kind == "orbax":
        import orbax.checkpoint as ocp

        with ocp.StandardCheckpointer() as checkpointer:
            checkpointer.save(Path(path).absolute(), tree, force=overwrite)
            checkpointer.wait_until_finished()
    else:
        raise CheckpointError(f"{path}: a {kind} file holds a PyTorch state dict, not Flax "
                              "variables")


def _to_numpy_tree(tree: Mapping[Any, Any]) -> dict[Any, Any]:
    """Nested dicts with C-contiguous NumPy leaves (keys kept as they are)."""
    return {k: _to_numpy_tree(v) if isinstance(v, Mapping)
            else np.require(to_numpy(v), requirements="C") for k, v in tree.items()}
