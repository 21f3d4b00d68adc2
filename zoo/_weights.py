"""Weight sources: hub ids, ``save_pretrained`` folders, safetensors, torch and nanoGPT files, llm.c
and GGUF files, random.

A file's reader is chosen by its type: the magic number at its start where
the format has one (GGUF, llm.c, torch's zip and pickle), else its extension
(safetensors has no magic number); never by the keys inside.

Each source is opened lazily: keys and shapes are read first, tensors one at a
time when a model copies them in, so loading never holds two full copies.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import pickle
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from ._config import PRESETS, GPT2Config
from ._errors import ConfigError, WeightsError, WeightsSourceError
from .weight_map import CANONICAL, HF, LAYOUTS, NANOGPT, CanonicalWeights, Layout, to_canonical

__all__ = ["open_weights", "random_weights", "read_weights"]

log = logging.getLogger("zoo")

SAFETENSORS_NAME = "model.safetensors"
SAFETENSORS_INDEX = "model.safetensors.index.json"
TORCH_NAME = "pytorch_model.bin"
TORCH_INDEX = "pytorch_model.bin.index.json"
TORCH_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt")
#: safetensors metadata key under which ``zoo convert`` stores the config (JSON of GPT2Config's fields)
CONFIG_METADATA = "gpt2_config"


def config_metadata(config: GPT2Config) -> str:
    """``config`` as the JSON stored under :data:`CONFIG_METADATA`."""
    return json.dumps(dataclasses.asdict(config))


class SafetensorsSource(Mapping[str, Any]):
    """One or more safetensors files seen as a single lazy state dict.

    Only the headers are read up front. Each lookup memory-maps its file, takes
    the one tensor (a view of the mapping, no copy) and lets the mapping go, so
    a loader that copies tensors in one at a time keeps at most one tensor's
    pages of the file resident, never the whole file beside the model.
    """

    def __init__(self, paths: list[Path]) -> None:
        from safetensors import safe_open

        self._where: dict[str, Path] = {}
        self._shapes: dict[str, tuple[int, ...]] = {}
        self.config: GPT2Config | None = None  # the config ``zoo convert`` stores in the metadata
        for path in paths:
            try:
                with safe_open(str(path), framework="pt", device="cpu") as handle:
                    for key in handle.keys():  # noqa: SIM118  # a safetensors handle is not iterable
                        self._where[key] = path
                        self._shapes[key] = tuple(handle.get_slice(key).get_shape())
                    stored = (handle.metadata() or {}).get(CONFIG_METADATA)
            except Exception as exc:  # safetensors raises its own error types, and OSError
                raise WeightsSourceError(f"cannot read safetensors file {str(path)!r}: {exc}") from exc
            if stored is not None:
                try:
                    self.config = GPT2Config.from_hf(json.loads(stored))
                except (ValueError, TypeError) as exc:
                    raise WeightsSourceError(
                        f"{str(path)!r} stores an invalid config in its {CONFIG_METADATA!r} metadata: {exc}"
                    ) from exc

    def shape_of(self, key: str) -> tuple[int, ...]:
        return self._shapes[key]

    def __getitem__(self, key: str) -> Any:
        from safetensors import safe_open

        path = self._where[key]
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            return handle.get_tensor(key)

    def __iter__(self) -> Iterator[str]:
        return iter(self._where)

    def __len__(self) -> int:
        return len(self._where)


class _RecordedGPTConfig:
    """Stands in for build-nanogpt's ``GPTConfig`` dataclass while unpickling: it keeps the fields, runs nothing."""

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, dict):
            self.__dict__.update(state)


# build-nanogpt's train_gpt2.py pickles its GPTConfig object (from __main__) beside the state dict
_GPT_CONFIG_GLOBAL = re.compile(r"GLOBAL ([\w.]+\.GPTConfig) was not an allowed global")


def _torch_load(path: Path) -> Any:
    """``torch.load`` that unpickles only tensors and plain containers, memory-mapped where it can."""
    import torch

    def load(**kwargs: Any) -> Any:
        try:
            return torch.load(path, map_location="cpu", weights_only=True, mmap=True, **kwargs)
        except RuntimeError as exc:
            if "mmap" not in str(exc):
                raise
            # the legacy (non-zip) format cannot be memory-mapped: read it whole
            return torch.load(path, map_location="cpu", weights_only=True, **kwargs)

    try:
        try:
            return load()
        except pickle.UnpicklingError as exc:
            found = _GPT_CONFIG_GLOBAL.search(str(exc))
            if found is None:
                raise
            with torch.serialization.safe_globals([(_RecordedGPTConfig, found.group(1))]):
                return load()
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


_LAYER = re.compile(r"(?:^|\.)h\.(\d+)\.")


def _infer_config(source: Mapping[str, Any], layout: Layout) -> GPT2Config:
    """Sizes from tensor shapes; the head count only where the width is a GPT-2 preset's."""

    def shape(name: str) -> tuple[int, ...]:
        for key in source:
            if layout.strip(key).removeprefix(layout.body_prefix) == name:
                shape_of = getattr(source, "shape_of", None)
                return tuple(shape_of(key)) if shape_of else tuple(source[key].shape)
        raise ConfigError(
            f"cannot infer the config: the weights hold no {name!r} tensor "
            f"({layout.name} layout); pass config=zoo.GPT2Config(...)"
        )

    wte, wpe = shape("wte.weight"), shape("wpe.weight")
    if len(wte) != 2 or len(wpe) != 2:
        raise ConfigError(
            f"cannot infer the config: wte is {list(wte)} and wpe is {list(wpe)}, expected 2-D "
            "embeddings; pass config=zoo.GPT2Config(...)"
        )
    vocab_size, n_embd = wte
    layers = {int(m.group(1)) for key in source if (m := _LAYER.search(key))}
    if not layers:
        raise ConfigError("cannot infer the config: the weights hold no h.{i}. layers")
    widths = {p.n_embd: p.n_head for p in PRESETS.values()}
    if n_embd not in widths:
        raise ConfigError(
            f"cannot infer the number of attention heads for n_embd={n_embd} from the weights "
            f"alone (only GPT-2's own widths {sorted(widths)} are known); pass "
            "config=zoo.GPT2Config(n_head=...) or put a config.json beside the file"
        )
    config = GPT2Config(
        vocab_size=vocab_size,
        n_positions=wpe[0],
        n_embd=n_embd,
        n_layer=max(layers) + 1,
        n_head=widths[n_embd],
    )
    log.info("no config given or found; inferred %s from the tensor shapes", config)
    return config


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
        )
    except KeyError as exc:
        raise WeightsSourceError(f"{where}: 'model_args' lacks {exc}") from exc
    except (TypeError, ValueError) as exc:
        raise WeightsSourceError(f"{where}: 'model_args' holds a value that is not a size: {exc}") from exc


def _unwrap_checkpoint(
    data: Any, where: str, layout: Layout | None
) -> tuple[Mapping[str, Any], GPT2Config | None, Layout | None]:
    """A training checkpoint -> its state dict and config; any other dict is a state dict.

    nanoGPT's ``train.py`` saves ``{'model': sd, 'model_args': {...}, ...}``;
    build-nanogpt's ``train_gpt2.py`` saves ``{'model': sd, 'config': GPTConfig(...), ...}``.
    """
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


_HUB_ID = re.compile(r"[\w.-]+(/[\w.-]+)?\Z")  # "gpt2", "openai-community/gpt2"


def _looks_like_path(text: str) -> bool:
    """Whether a name that exists nowhere on disk was meant as a path rather than a hub id."""
    return (
        not _HUB_ID.match(text)
        or text.startswith(".")
        or text.endswith((".safetensors", ".json", *TORCH_SUFFIXES))
    )


def _download(repo_id: str, revision: str | None) -> Path:
    try:
        from huggingface_hub import snapshot_download
    except ImportError as exc:  # pragma: no cover - a declared dependency
        raise WeightsSourceError("huggingface_hub is needed to load from the hub") from exc
    try:
        folder = Path(
            snapshot_download(
                repo_id,
                revision=revision,
                allow_patterns=["config.json", SAFETENSORS_NAME, SAFETENSORS_INDEX, "model-*.safetensors"],
            )
        )
        if not any(folder.glob("*.safetensors")):
            folder = Path(
                snapshot_download(
                    repo_id, revision=revision, allow_patterns=["config.json", "pytorch_model*.bin*"]
                )
            )
    except Exception as exc:  # network, offline mode, unknown repo, bad id: all reported alike
        from huggingface_hub import constants

        if constants.HF_HUB_OFFLINE:
            why = f"HF_HUB_OFFLINE is set and {repo_id!r} is not in the cache at {constants.HF_HUB_CACHE}"
        else:
            why = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        raise WeightsSourceError(
            f"{repo_id!r} is no local file or folder, and as a Hugging Face hub id it cannot be fetched: "
            f"the hub cannot be reached or does not have it ({why}). "
            f"If you have the weights locally, pass the folder or file instead: "
            f"zoo.load(name, weights='/path/to/{repo_id.split('/')[-1]}') or `--weights /path/to/folder` "
            "(a folder written by save_pretrained, with its config.json)"
        ) from exc
    return folder


def _file_kind(path: Path) -> str:
    """Which reader a file needs: its magic number where the format has one, else its extension."""
    from ._gguf import MAGIC as GGUF_MAGIC
    from ._llmc import MAGIC as LLMC_MAGIC
    from ._llmc import OTHER_MAGICS

    if path.suffix == ".safetensors":  # no magic number: an 8-byte header length, then JSON
        return "safetensors"
    with open(path, "rb") as f:
        head = f.read(8)
    if head[:4] == GGUF_MAGIC:
        return "gguf"
    if len(head) >= 4 and int.from_bytes(head[:4], "little") in (LLMC_MAGIC, *OTHER_MAGICS):
        return "llmc"
    if head[:4] == b"PK\x03\x04" or head[:1] == b"\x80":  # torch.save's zip, or a (legacy) pickle
        return "torch"
    if path.suffix == ".gguf":
        return "gguf"  # its reader names the wrong magic
    if path.suffix == ".bin":
        raise WeightsSourceError(
            f"{str(path)!r} is neither a torch file (zip or pickle) nor an llm.c model file (int32 magic "
            f"{LLMC_MAGIC}): it starts with {head!r}"
        )
    if path.suffix in TORCH_SUFFIXES:
        return "torch"
    raise WeightsSourceError(
        f"unrecognised weight file {str(path)!r}: expected .safetensors, {', '.join(TORCH_SUFFIXES)}, "
        "an llm.c .bin, .gguf, or a folder written by save_pretrained"
    )


def open_weights(
    source: str | os.PathLike[str] | Mapping[str, Any],
    *,
    config: GPT2Config | None = None,
    layout: str | Layout | None = None,
    revision: str | None = None,
) -> tuple[GPT2Config, CanonicalWeights]:
    """Open ``source`` and return its config and checked canonical weights (read lazily).

    ``source`` is a Hugging Face hub id, a ``save_pretrained`` folder, a
    ``.safetensors`` file, a ``.bin``/``.pt`` state dict, a nanoGPT or
    build-nanogpt training checkpoint (``{'model': ..., 'model_args': ...}`` or
    ``{'model': ..., 'config': GPTConfig(...)}``), an llm.c model file
    (``gpt2_124M.bin``, float32 or bfloat16), an unquantised GGUF file (F32,
    F16, BF16; a quantised one is refused, ``zoo convert`` dequantises it), or
    an in-memory state dict or checkpoint. Torch files are read with
    ``weights_only=True``; a pickled ``GPTConfig`` is read as a plain record of
    its fields, never imported. ``layout`` names the key layout (``hf``,
    ``nanogpt``, ``canonical``) where the source does not fix it; ``config``
    overrides the source's config.
    """
    return read_weights(source, config=config, layout=layout, revision=revision)


def read_weights(
    source: str | os.PathLike[str] | Mapping[str, Any],
    *,
    config: GPT2Config | None = None,
    layout: str | Layout | None = None,
    revision: str | None = None,
    dequantize: bool = False,
) -> tuple[GPT2Config, CanonicalWeights]:
    """:func:`open_weights`, and with ``dequantize=True`` quantised GGUF files too (for ``zoo convert``)."""
    if isinstance(layout, str):
        if layout not in LAYOUTS:
            raise WeightsError(f"unknown layout {layout!r}; choose one of {', '.join(LAYOUTS)}")
        layout = LAYOUTS[layout]
    found_config: GPT2Config | None = None
    tensors: Mapping[str, Any]
    if revision is not None and (isinstance(source, Mapping)
                                 or Path(os.fspath(source)).expanduser().exists()):
        raise WeightsError(f"revision={revision!r} applies to Hugging Face hub ids, not to local weights")
    if isinstance(source, Mapping):
        tensors, found_config, chosen = _unwrap_checkpoint(source, "the given dict", layout)
    else:
        text = os.fspath(source)
        path = Path(text).expanduser()
        if not path.exists():
            if _looks_like_path(text) or isinstance(source, Path):
                raise WeightsSourceError(
                    f"no such file or folder: {text!r}; pass a save_pretrained folder, a .safetensors "
                    "or .bin/.pt file, or a Hugging Face hub id such as 'gpt2'"
                )
            path = _download(text, revision)
        beside = (path if path.is_dir() else path.parent) / "config.json"
        chosen = layout
        kind = None if path.is_dir() else _file_kind(path)
        if kind in ("llmc", "gguf"):
            return _read_fixed_layout(path, kind, config=config, layout=layout, dequantize=dequantize)
        if path.is_dir():
            files, kind = _folder_files(path)
            if kind == "safetensors":
                tensors = SafetensorsSource(files)
            else:
                merged: dict[str, Any] = {}  # memory-mapped tensors, read on access
                for file in files:
                    shard, _, _ = _unwrap_checkpoint(_torch_load(file), repr(str(file)), layout)
                    merged.update(shard)
                tensors = merged
        elif kind == "safetensors":
            tensors = SafetensorsSource([path])
            found_config = tensors.config
        else:
            tensors, found_config, chosen = _unwrap_checkpoint(_torch_load(path), repr(text), layout)
        if found_config is None and config is None and beside.is_file():
            found_config = GPT2Config.from_json_file(beside)
    chosen = chosen or HF
    config = config or found_config or _infer_config(tensors, chosen)
    return config, to_canonical(tensors, config, chosen)


def _read_fixed_layout(
    path: Path, kind: str, *, config: GPT2Config | None, layout: str | Layout | None, dequantize: bool
) -> tuple[GPT2Config, CanonicalWeights]:
    """An llm.c or GGUF file: names and shapes are the format's, the config is in the file."""
    from ._gguf import read_gguf
    from ._llmc import read_llmc

    if layout is not None:
        name = layout if isinstance(layout, str) else layout.name
        raise WeightsError(
            f"layout={name!r} describes state dicts, but {str(path)!r} is an {kind} file, "
            "whose names the format fixes; drop layout="
        )
    found, weights = read_gguf(path, dequantize=dequantize) if kind == "gguf" else read_llmc(path)
    if config is not None and config != found:  # the caller knows better (a head count), if the shapes agree
        weights = to_canonical(weights, config, CANONICAL)
        found = config
    return found, weights


class _RandomWeights(Mapping[str, Any]):
    """GPT-2's initialisation, generated one tensor at a time, reproducibly per (seed, name)."""

    def __init__(self, config: GPT2Config, seed: int) -> None:
        from .weight_map import canonical_shapes

        self._config = config
        self._seed = seed
        self._shapes = canonical_shapes(config)
        self._index = {name: i for i, name in enumerate(self._shapes)}

    def shape_of(self, name: str) -> tuple[int, ...]:
        return self._shapes[name]

    def __getitem__(self, name: str) -> Any:
        import torch

        shape, c = self._shapes[name], self._config
        if name.endswith(".bias"):
            return torch.zeros(shape)
        if ".ln_" in "." + name:
            return torch.ones(shape)
        generator = torch.Generator().manual_seed(self._seed * 1_000_003 + self._index[name])
        # GPT-2's scheme: residual projections scaled by 1/sqrt(2 * n_layer)
        std = c.initializer_range
        if name.endswith("c_proj.weight"):
            std /= (2 * c.n_layer) ** 0.5
        return torch.empty(shape).normal_(0.0, std, generator=generator)

    def __iter__(self) -> Iterator[str]:
        return iter(self._shapes)

    def __len__(self) -> int:
        return len(self._shapes)


def random_weights(config: GPT2Config, seed: int = 0) -> CanonicalWeights:
    """Canonical GPT-2 weights with Hugging Face's initialisation, generated lazily.

    The same ``(config, seed)`` gives the same weights for every variant, so
    two variants loaded with one seed are directly comparable.
    """
    return to_canonical(_RandomWeights(config, seed), config, CANONICAL)

