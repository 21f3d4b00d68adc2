"""A ``save_pretrained`` folder: ``config.json`` beside safetensors (one file or shards), or beside the
``pytorch_model.bin`` files older versions of transformers wrote.

A folder is this format; the zoo writes ``config.json`` and one
``model.safetensors``, which ``GPT2LMHeadModel.from_pretrained`` loads.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .._config import GPT2Config
from .._errors import WeightsSourceError
from ..weight_map import HF, CanonicalWeights, Layout
from . import safetensors, torchfile
from ._base import Prepared
from ._state_dict import canonical

__all__ = ["DESCRIPTION", "SAFETENSORS_INDEX", "SAFETENSORS_NAME", "read", "recognise", "write"]

#: what this module reads, as errors name it
DESCRIPTION = "a folder written by save_pretrained"
SAFETENSORS_NAME = "model.safetensors"
SAFETENSORS_INDEX = "model.safetensors.index.json"
TORCH_NAME = "pytorch_model.bin"
TORCH_INDEX = "pytorch_model.bin.index.json"


def _folder_files(folder: Path) -> tuple[list[Path], str]:
    """The weight files of a ``save_pretrained`` folder, safetensors first."""
    for index_name, kind in ((SAFETENSORS_INDEX, "safetensors"), (TORCH_INDEX, "torch")):
        index = folder / index_name
        if index.is_file():
            return [folder / s for s in _shards(index)], kind
    if (folder / SAFETENSORS_NAME).is_file():
        return [folder / SAFETENSORS_NAME], "safetensors"
    if (folder / TORCH_NAME).is_file():
        return [folder / TORCH_NAME], "torch"
    raise WeightsSourceError(
        f"folder {str(folder)!r} holds no {SAFETENSORS_NAME} or {TORCH_NAME}; "
        "pass a folder written by save_pretrained(), or the weight file itself"
    )


def _shards(index: Path) -> list[str]:
    """The shard file names an index's ``weight_map`` names: plain names of files in its folder."""
    try:
        data = json.loads(index.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as exc:  # RecursionError: JSON nested too deep
        raise WeightsSourceError(f"cannot read the shard index {str(index)!r}: {exc}") from exc
    weight_map = data.get("weight_map") if isinstance(data, dict) else None
    if not isinstance(weight_map, dict) or not weight_map:
        raise WeightsSourceError(
            f"{str(index)!r} is not a valid shard index: it needs a 'weight_map' object of tensor name -> "
            "shard file; write the folder again with save_pretrained, or remove the index"
        )
    names = list(weight_map.values())
    bad = sorted({repr(s) for s in names if not isinstance(s, str) or not s or Path(s).name != s or s in (".", "..")})
    if bad:
        raise WeightsSourceError(
            f"{str(index)!r} names shards that are not file names in its folder: {', '.join(bad[:5])}; "
            "write the folder again with save_pretrained"
        )
    return sorted(set(names))


def recognise(path: Path, head: bytes) -> bool:
    """A folder."""
    return path.is_dir()


def read(
    path: Path, *, config: GPT2Config | None, layout: Layout | None, dequantize: bool
) -> tuple[GPT2Config, CanonicalWeights]:
    """The config (``config.json``) and checked canonical weights of a ``save_pretrained`` folder."""
    files, kind = _folder_files(path)
    tensors: Mapping[str, Any]
    if kind == "safetensors":
        tensors = safetensors.SafetensorsSource(files)
    else:
        merged: dict[str, Any] = {}  # memory-mapped tensors, read on access
        for file in files:
            shard, _, _ = torchfile.unwrap(torchfile.load(file), repr(str(file)), layout)
            merged.update(shard)
        tensors = merged
    return canonical(tensors, layout or HF, config=config, found=None, beside=path / "config.json")


def write(weights: Prepared, config: GPT2Config, path: Path, dtype: str) -> None:
    """``config.json`` and ``model.safetensors`` in a new folder at ``path``."""
    path.mkdir()
    config.to_hf(architectures=["GPT2LMHeadModel"]).to_json_file(str(path / "config.json"))
    safetensors.write(weights, config, path / SAFETENSORS_NAME, dtype)
