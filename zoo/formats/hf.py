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
            try:
                shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
            except (ValueError, KeyError) as exc:
                raise WeightsSourceError(f"{str(index)!r} is not a valid shard index: {exc}") from exc
            return [folder / s for s in shards], kind
    if (folder / SAFETENSORS_NAME).is_file():
        return [folder / SAFETENSORS_NAME], "safetensors"
    if (folder / TORCH_NAME).is_file():
        return [folder / TORCH_NAME], "torch"
    raise WeightsSourceError(
        f"folder {str(folder)!r} holds no {SAFETENSORS_NAME} or {TORCH_NAME}; "
        "pass a folder written by save_pretrained(), or the weight file itself"
    )


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
