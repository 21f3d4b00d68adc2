"""Torch files: state dicts, nanoGPT and build-nanogpt checkpoints; the nanoGPT checkpoint writer.

A file is recognised by ``torch.save``'s own start: a zip archive, or a
(legacy) pickle. It is read with ``torch.load(weights_only=True)``, so only
tensors and plain containers are unpickled, memory-mapped where the file
allows. A training checkpoint is unwrapped to its state dict and config:
nanoGPT's ``train.py`` saves ``{'model': sd, 'model_args': {...}, ...}``;
build-nanogpt's ``train_gpt2.py`` saves ``{'model': sd, 'config': GPTConfig(...), ...}``,
whose pickled ``GPTConfig`` is read as a plain record of its fields, never
imported. In-memory state dicts and checkpoints are read by the same rules.
"""

from __future__ import annotations

import pickle
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .._config import GPT2Config
from .._errors import ConfigError, WeightsSourceError
from ..weight_map import HF, NANOGPT, CanonicalWeights, Layout, from_canonical
from ._base import Prepared
from ._state_dict import canonical

__all__ = ["DESCRIPTION", "EPSILON", "load", "read", "read_state_dict", "recognise", "unwrap", "write"]

#: what this module reads, as errors name it
DESCRIPTION = "a torch file (zip or pickle)"
#: nanoGPT's LayerNorm hard-codes it, and its checkpoints have no field for another
EPSILON = 1e-5


class _RecordedGPTConfig:
    """Stands in for build-nanogpt's ``GPTConfig`` dataclass while unpickling: it keeps the fields, runs nothing."""

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, dict):
            self.__dict__.update(state)


# build-nanogpt's train_gpt2.py pickles its GPTConfig object (from __main__) beside the state dict
_GPT_CONFIG_GLOBAL = re.compile(r"GLOBAL ([\w.]+\.GPTConfig) was not an allowed global")


def load(path: Path) -> Any:
    """``torch.load`` that unpickles only tensors and plain containers, memory-mapped where it can."""
    import torch

    def attempt(**kwargs: Any) -> Any:
        try:
            return torch.load(path, map_location="cpu", weights_only=True, mmap=True, **kwargs)
        except RuntimeError as exc:
            if "mmap" not in str(exc):
                raise
            # the legacy (non-zip) format cannot be memory-mapped: read it whole
            return torch.load(path, map_location="cpu", weights_only=True, **kwargs)

    try:
        try:
            return attempt()
        except pickle.UnpicklingError as exc:
            found = _GPT_CONFIG_GLOBAL.search(str(exc))
            if found is None:
                raise
            with torch.serialization.safe_globals([(_RecordedGPTConfig, found.group(1))]):
                return attempt()
    except pickle.UnpicklingError as exc:
        lines = str(exc).splitlines()
        reason = next((line.strip() for line in lines if "WeightsUnpickler error" in line), lines[0])
        raise WeightsSourceError(
            f"{str(path)!r} pickles Python objects that could run code, so it is refused "
            f"(only plain tensors and containers are read, with torch.load(weights_only=True)): "
            f"{reason} If you trust the file, re-save its state dict with "
            "torch.save(state_dict, path) or as safetensors"
        ) from exc
    except Exception as exc:  # torch raises many types for files that are not its own
        raise WeightsSourceError(f"cannot read {str(path)!r} as a torch file: {exc}") from exc


def _nanogpt_config(args: Any, where: str) -> GPT2Config:
    if not isinstance(args, Mapping):
        raise WeightsSourceError(f"{where}: 'model_args' is not a dict")
    if args.get("bias") is False:
        raise ConfigError(f"{where} was trained with bias=False; GPT-2 has biases everywhere")
    try:
        return GPT2Config(
            vocab_size=int(args["vocab_size"]),
            n_positions=int(args["block_size"]),
            n_embd=int(args["n_embd"]),
            n_layer=int(args["n_layer"]),
            n_head=int(args["n_head"]),
            layer_norm_epsilon=EPSILON,
        )
    except KeyError as exc:
        raise WeightsSourceError(f"{where}: 'model_args' lacks {exc}") from exc
    except (TypeError, ValueError) as exc:
        raise WeightsSourceError(f"{where}: 'model_args' holds a value that is not a size: {exc}") from exc


def unwrap(
    data: Any, where: str, layout: Layout | None
) -> tuple[Mapping[str, Any], GPT2Config | None, Layout | None]:
    """A training checkpoint -> its state dict, config and layout; any other dict is a state dict."""
    if not isinstance(data, Mapping):
        raise WeightsSourceError(f"{where} holds a {type(data).__name__}, not a state dict")
    if "model" in data and isinstance(data["model"], Mapping):
        if "model_args" in data:
            args = data["model_args"]
        elif isinstance(data.get("config"), _RecordedGPTConfig):
            args = vars(data["config"])
        else:
            raise WeightsSourceError(
                f"{where} looks like a training checkpoint but has no 'model_args'; "
                "pass config=zoo.GPT2Config(...) with its state dict instead"
            )
        return data["model"], _nanogpt_config(args, where), layout or NANOGPT
    return data, None, layout


def recognise(path: Path, head: bytes) -> bool:
    """``torch.save``'s zip archive, or a (legacy) pickle."""
    return head[:4] == b"PK\x03\x04" or head[:1] == b"\x80"


def read(
    path: Path, *, config: GPT2Config | None, layout: Layout | None, dequantize: bool
) -> tuple[GPT2Config, CanonicalWeights]:
    """The config and checked canonical weights of a torch file (``hf`` layout unless a checkpoint says)."""
    tensors, found, chosen = unwrap(load(path), repr(str(path)), layout)
    return canonical(tensors, chosen or HF, config=config, found=found, beside=path.parent / "config.json")


def read_state_dict(
    data: Mapping[str, Any], *, config: GPT2Config | None, layout: Layout | None
) -> tuple[GPT2Config, CanonicalWeights]:
    """An in-memory state dict or training checkpoint, read as a torch file's contents are."""
    tensors, found, chosen = unwrap(data, "the given dict", layout)
    return canonical(tensors, chosen or HF, config=config, found=found, beside=None)


def write(weights: Prepared, config: GPT2Config, path: Path, dtype: str) -> None:
    """A nanoGPT checkpoint: ``torch.save({'model': state_dict, 'model_args': {...}})``."""
    import torch

    # contiguous() returns a contiguous tensor itself, so lm_head.weight stays wte.weight: stored once
    state = {key: t.contiguous() for key, t in from_canonical(weights, NANOGPT)}
    model_args = {"n_layer": config.n_layer, "n_head": config.n_head, "n_embd": config.n_embd,
                  "block_size": config.n_positions, "bias": True, "vocab_size": config.vocab_size, "dropout": 0.0}
    torch.save({"model": state, "model_args": model_args}, path)
