"""Torch files: state dicts, nanoGPT and build-nanogpt checkpoints; the nanoGPT checkpoint writer.

A file is recognised by ``torch.save``'s own start: a zip archive, or a
(legacy) pickle. It is read with ``torch.load(weights_only=True)``, so only
tensors and plain containers are unpickled, memory-mapped where the file
allows. A training checkpoint is unwrapped to its state dict and config:
nanoGPT's ``train.py`` saves ``{'model': sd, 'model_args': {...}, ...}``;
build-nanogpt's ``train_gpt2.py`` saves ``{'model': sd, 'config': GPTConfig(...), ...}``,
whose pickled ``GPTConfig`` is read as a plain record of its fields, never
imported. A state dict saved from a ``torch.compile``d model has every key
prefixed ``_orig_mod.``; the prefix is dropped, whatever the layout.
In-memory state dicts and checkpoints are read by the same rules.
"""

from __future__ import annotations

import logging
import numbers
import pickle
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from .._config import GPT2Config
from .._errors import ConfigError, WeightsSourceError
from ..weight_map import HF, IGNORED_BUFFERS, NANOGPT, CanonicalWeights, Layout, from_canonical
from ._base import Prepared
from ._state_dict import canonical

__all__ = [
    "COMPILED_PREFIX", "DESCRIPTION", "EPSILON", "load", "read", "read_state_dict", "recognise", "unwrap", "write",
]

#: what this module reads, as errors name it
DESCRIPTION = "a torch file (zip or pickle)"
#: what ``torch.compile``'s wrapper puts before every key of the module it wraps
COMPILED_PREFIX = "_orig_mod."

log = logging.getLogger("zoo")
#: nanoGPT's LayerNorm hard-codes it, and its checkpoints have no field for another
EPSILON = 1e-5


class _RecordedGPTConfig:
    """Stands in for build-nanogpt's ``GPTConfig`` dataclass while unpickling: it keeps the fields, runs nothing."""

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, dict):
            self.__dict__.update(state)


# the causal-mask buffers some checkpoints carry (bool or uint8 in older transformers): not weights
_BUFFERS = tuple(
    re.compile(r"(?:^|\.)" + re.escape(t).replace(re.escape("{i}"), r"\d+") + r"\Z") for t in IGNORED_BUFFERS
)
_ZIP_CHUNK = 1 << 24
# build-nanogpt's train_gpt2.py pickles its GPTConfig object (from __main__) beside the state dict
_GPT_CONFIG_GLOBAL = re.compile(r"GLOBAL ([\w.]+\.GPTConfig) was not an allowed global")


def _check_zip(path: Path) -> None:
    """Every member of a zip archive read once, in chunks, against its CRC-32.

    ``torch.load(mmap=True)`` maps the tensors' bytes where the archive's
    headers say they are and checks nothing, so a flipped byte in those
    headers or in the data would load wrong numbers; this pass refuses it, at
    the cost of reading the file once (no copy is kept).
    """
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                with archive.open(info) as member:
                    while member.read(_ZIP_CHUNK):
                        pass
    except Exception as exc:  # zipfile raises BadZipFile, OSError, ValueError, EOFError... for corrupt archives
        raise WeightsSourceError(
            f"{str(path)!r} is a corrupt torch zip archive ({type(exc).__name__}: {exc}); nothing was "
            "loaded from it. Save the weights again (or fetch a fresh copy)"
        ) from exc


def load(path: Path) -> Any:
    """``torch.load`` that unpickles only tensors and plain containers, memory-mapped where it can.

    A zip archive is checked against its CRC-32s first (:func:`_check_zip`).
    """
    import torch

    with open(path, "rb") as f:
        if f.read(4) == b"PK\x03\x04":
            _check_zip(path)

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
            # a subclass named as the checkpoint names the class: torch before 2.6 takes no (class, name) pair
            module, _, name = found.group(1).rpartition(".")
            stand_in = type(name, (_RecordedGPTConfig,), {"__module__": module, "__qualname__": name})
            with torch.serialization.safe_globals([stand_in]):
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
    sizes: dict[str, int] = {}
    for field, arg in (("vocab_size", "vocab_size"), ("n_positions", "block_size"), ("n_embd", "n_embd"),
                       ("n_layer", "n_layer"), ("n_head", "n_head")):
        if arg not in args:
            raise WeightsSourceError(f"{where}: 'model_args' lacks {arg!r}; pass config=zoo.GPT2Config(...)")
        value = args[arg]
        whole = isinstance(value, numbers.Integral) or (isinstance(value, float) and value.is_integer())
        if isinstance(value, bool) or not whole:
            raise WeightsSourceError(
                f"{where}: 'model_args' holds {arg}={value!r:.60}, not a size; the checkpoint is corrupt: "
                "pass config=zoo.GPT2Config(...)"
            )
        sizes[field] = int(value)
    try:
        return GPT2Config(**sizes, layer_norm_epsilon=EPSILON)
    except ConfigError as exc:
        raise WeightsSourceError(f"{where}: 'model_args' {args!r:.200} is no GPT-2: {exc}") from None


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
        state = _tensors(_uncompiled(data["model"], where), where)
        return state, _nanogpt_config(args, where), layout or NANOGPT
    return _tensors(_uncompiled(data, where), where), None, layout


class _Unprefixed(Mapping[str, Any]):
    """A lazy state dict seen without the prefix every one of its keys has."""

    def __init__(self, state: Mapping[str, Any], prefix: str) -> None:
        self._state, self._prefix = state, prefix
        shape_of = getattr(state, "shape_of", None)
        if shape_of is not None:
            self.shape_of = lambda key: shape_of(prefix + key)

    def __getitem__(self, key: str) -> Any:
        return self._state[self._prefix + key]

    def __iter__(self) -> Iterator[str]:
        return (key.removeprefix(self._prefix) for key in self._state)

    def __len__(self) -> int:
        return len(self._state)


def _uncompiled(state: Mapping[Any, Any], where: str) -> Mapping[Any, Any]:
    """``state`` without ``_orig_mod.`` if every key has it: the state dict of a ``torch.compile``d model."""
    keys = list(state.keys())  # a lazy mapping may offer keys() alone
    if not keys or not all(isinstance(key, str) and key.startswith(COMPILED_PREFIX) for key in keys):
        return state
    log.info("%s was saved from a torch.compile'd model: dropped %r from its keys", where, COMPILED_PREFIX)
    if isinstance(state, dict):
        return {key.removeprefix(COMPILED_PREFIX): value for key, value in state.items()}
    return _Unprefixed(state, COMPILED_PREFIX)


def _problem(key: Any, value: Any) -> str | None:
    """Why ``value`` under ``key`` is no GPT-2 weight, or ``None`` if it may be one."""
    import numpy as np
    import torch

    if not isinstance(key, str):
        return f"key {key!r:.60} is a {type(key).__name__}, not a name"
    if isinstance(value, torch.Tensor):
        if not value.is_floating_point() and not any(p.search(key) for p in _BUFFERS):
            return f"{key} is {str(value.dtype).removeprefix('torch.')}"
        return None
    if isinstance(value, np.ndarray):
        return None if value.dtype.kind == "f" else f"{key} is a NumPy array of {value.dtype}"
    return f"{key} is a {type(value).__name__}, not a tensor"


def _refuse(problems: list[str], where: str) -> WeightsSourceError:
    return WeightsSourceError(
        f"{where} does not hold GPT-2 weights: {len(problems)} value(s) are not floating-point "
        f"tensors ({'; '.join(problems[:5])}{'; ...' if len(problems) > 5 else ''}); weights are "
        "never cast from integers, bool or complex numbers"
    )


class _Checked(Mapping[str, Any]):
    """A lazy state dict whose values are checked by :func:`_problem` as they are read."""

    def __init__(self, state: Mapping[str, Any], where: str) -> None:
        self._state, self._where = state, where
        shape_of = getattr(state, "shape_of", None)
        if shape_of is not None:
            self.shape_of = shape_of

    def __getitem__(self, key: str) -> Any:
        value = self._state[key]
        problem = _problem(key, value)
        if problem is not None:
            raise _refuse([problem], self._where)
        return value

    def __iter__(self) -> Iterator[str]:
        return iter(self._state)

    def __len__(self) -> int:
        return len(self._state)


def _tensors(state: Mapping[Any, Any], where: str) -> Mapping[str, Any]:
    """``state`` if every value is a floating-point tensor (or NumPy array); else the problems, named.

    Integer, bool and complex weights are refused rather than cast; the
    causal-mask buffers (bool in older checkpoints) are not weights and are let
    through. A dict (what ``torch.load`` returns) is checked whole, without
    reading any tensor's data; another mapping may be lazy, so its values are
    checked as they are read.
    """
    if not isinstance(state, dict):
        bad = [problem for key in state.keys() if not isinstance(key, str) and (problem := _problem(key, None))]  # noqa: SIM118
        if bad:
            raise _refuse(bad, where)
        return _Checked(state, where)
    problems = [problem for key, value in state.items() if (problem := _problem(key, value)) is not None]
    if problems:
        raise _refuse(problems, where)
    return state


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
