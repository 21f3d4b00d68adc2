"""Weight sources: hub ids, ``save_pretrained`` folders, safetensors, torch and nanoGPT files, random.

Each source is opened lazily: keys and shapes are read first, tensors one at a
time when a model copies them in, so loading never holds two full copies.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from ._config import PRESETS, GPT2Config
from ._errors import ConfigError, WeightsError, WeightsSourceError
from .weight_map import CANONICAL, HF, LAYOUTS, NANOGPT, CanonicalWeights, Layout, to_canonical

__all__ = ["open_weights", "random_weights"]

log = logging.getLogger("zoo")

SAFETENSORS_NAME = "model.safetensors"
SAFETENSORS_INDEX = "model.safetensors.index.json"
TORCH_NAME = "pytorch_model.bin"
TORCH_INDEX = "pytorch_model.bin.index.json"
TORCH_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt")


class SafetensorsSource(Mapping[str, Any]):
    """One or more memory-mapped safetensors files seen as a single lazy state dict."""

    def __init__(self, paths: list[Path]) -> None:
        from safetensors import safe_open

        self._files = []
        self._where: dict[str, Any] = {}
        for path in paths:
            try:
                handle = safe_open(str(path), framework="pt", device="cpu")
            except Exception as exc:
                raise WeightsSourceError(f"cannot read safetensors file {str(path)!r}: {exc}") from exc
            self._files.append(handle)
            for key in handle.keys():
                self._where[key] = handle

    def shape_of(self, key: str) -> tuple[int, ...]:
        return tuple(self._where[key].get_slice(key).get_shape())

    def __getitem__(self, key: str) -> Any:
        return self._where[key].get_tensor(key)

    def __iter__(self) -> Iterator[str]:
        return iter(self._where)

    def __len__(self) -> int:
        return len(self._where)


def _torch_load(path: Path) -> Any:
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except pickle.UnpicklingError as exc:
        raise WeightsSourceError(
            f"{str(path)!r} pickles Python objects that could run code, so it is refused "
            f"(only plain tensors and containers are read, with torch.load(weights_only=True)): "
            f"{str(exc).splitlines()[0]}. If you trust the file, re-save its state dict with "
            "torch.save(state_dict, path) or as safetensors"
        ) from exc
    except RuntimeError as exc:
        if "mmap" in str(exc) or "zip" in str(exc).lower():  # legacy (non-zip) format cannot be mmapped
            try:
                return torch.load(path, map_location="cpu", weights_only=True)
            except Exception as inner:
                raise WeightsSourceError(f"cannot read {str(path)!r}: {inner}") from inner
        raise WeightsSourceError(f"cannot read {str(path)!r}: {exc}") from exc
    except Exception as exc:
        raise WeightsSourceError(f"cannot read {str(path)!r}: {exc}") from exc


def _infer_config(source: Mapping[str, Any], layout: Layout) -> GPT2Config:
    """Sizes from tensor shapes; the head count only where it matches a GPT-2 preset."""

    def shape(key: str) -> tuple[int, ...]:
        for candidate in (layout.key(key), key, "_orig_mod." + layout.key(key)):
            if candidate in source:
                shape_of = getattr(source, "shape_of", None)
                return tuple(shape_of(candidate)) if shape_of else tuple(source[candidate].shape)
        raise ConfigError(
            f"cannot infer the config: no {key!r} tensor; pass config=zoo.GPT2Config(...)"
        )

    vocab_size, n_embd = shape("wte.weight")
    n_positions = shape("wpe.weight")[0]
    layers = {k.split("h.", 1)[1].split(".", 1)[0] for k in source if ".h." in "." + k}
    n_layer = len({x for x in layers if x.isdigit()})
    presets = [p for p in PRESETS.values() if p.n_embd == n_embd]
    if not presets:
        raise ConfigError(
            f"cannot infer the number of attention heads for n_embd={n_embd} from the weights "
            "alone; pass config=zoo.GPT2Config(n_head=...) or put a config.json beside the file"
        )
    return GPT2Config(
        vocab_size=vocab_size,
        n_positions=n_positions,
        n_embd=n_embd,
        n_layer=n_layer,
        n_head=presets[0].n_head,
    )


def _nanogpt_config(args: Any, path: Path) -> GPT2Config:
    if not isinstance(args, dict):
        raise WeightsSourceError(f"{str(path)!r}: 'model_args' is not a dict")
    if args.get("bias") is False:
        raise ConfigError(f"{str(path)!r} was trained with bias=False; GPT-2 has biases everywhere")
    try:
        return GPT2Config(
            vocab_size=int(args["vocab_size"]),
            n_positions=int(args["block_size"]),
            n_embd=int(args["n_embd"]),
            n_layer=int(args["n_layer"]),
            n_head=int(args["n_head"]),
        )
    except KeyError as exc:
        raise WeightsSourceError(f"{str(path)!r}: 'model_args' lacks {exc}") from exc


def _open_torch_file(path: Path, layout: Layout | None) -> tuple[Any, GPT2Config | None, Layout]:
    data = _torch_load(path)
    if not isinstance(data, dict):
        raise WeightsSourceError(f"{str(path)!r} holds a {type(data).__name__}, not a state dict")
    if "model" in data and isinstance(data["model"], dict):
        if "model_args" not in data:
            raise WeightsSourceError(
                f"{str(path)!r} looks like a training checkpoint but has no 'model_args'; "
                "pass config=zoo.GPT2Config(...) with its state dict instead"
            )
        return data["model"], _nanogpt_config(data["model_args"], path), layout or NANOGPT
    return data, config, layout or HF


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


def _looks_like_path(text: str) -> bool:
    return (
        text.startswith((".", "/", "~"))
        or os.sep in text.strip("/").replace("/", "", 1)
        or text.endswith((".safetensors", ".json", *TORCH_SUFFIXES))
        or text.count("/") > 1
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
    except Exception as exc:
        offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")
        why = "HF_HUB_OFFLINE is set and it is not in the local cache" if offline else (
            f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        )
        raise WeightsSourceError(
            f"cannot get {repo_id!r} from the Hugging Face hub ({why}). If you have the weights "
            f"locally, pass the folder or file instead: zoo.load(name, weights='/path/to/{repo_id.split('/')[-1]}') "
            f"or `--weights /path/to/folder` (a folder written by save_pretrained, with config.json)"
        ) from exc
    return folder


def open_weights(
    source: str | os.PathLike[str] | Mapping[str, Any],
    *,
    config: GPT2Config | None = None,
    layout: str | Layout | None = None,
    revision: str | None = None,
) -> tuple[GPT2Config, CanonicalWeights]:
    """Open ``source`` and return its config and checked canonical weights (read lazily).

    ``source`` is a Hugging Face hub id, a ``save_pretrained`` folder, a
    ``.safetensors`` file, a ``.bin``/``.pt`` state dict, a nanoGPT checkpoint
    (``{'model': ..., 'model_args': ...}``), or an in-memory state dict.
    ``layout`` names the key layout (``hf``, ``nanogpt``, ``canonical``) where
    the source does not fix it; ``config`` overrides the source's config.
    """
    if isinstance(layout, str):
        if layout not in LAYOUTS:
            raise WeightsError(f"unknown layout {layout!r}; choose one of {', '.join(LAYOUTS)}")
        layout = LAYOUTS[layout]
    found_config: GPT2Config | None = None
    tensors: Any
    if isinstance(source, Mapping):
        tensors, chosen = source, layout or HF
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
        if path.is_dir():
            files, kind = _folder_files(path)
            if (path / "config.json").is_file():
                found_config = GPT2Config.from_json_file(path / "config.json")
            if kind == "safetensors":
                tensors = SafetensorsSource(files)
            else:
                tensors = {}
                for file in files:
                    tensors.update(_torch_load(file))
            chosen = layout or HF
        elif path.suffix == ".safetensors":
            tensors, chosen = SafetensorsSource([path]), layout or HF
            if (path.parent / "config.json").is_file():
                found_config = GPT2Config.from_json_file(path.parent / "config.json")
        elif path.suffix in TORCH_SUFFIXES:
            tensors, found_config, chosen = _open_torch_file(path, layout)
        else:
            raise WeightsSourceError(
                f"unrecognised weight file {text!r}: expected .safetensors, {', '.join(TORCH_SUFFIXES)}, "
                "or a folder written by save_pretrained"
            )
    config = config or found_config or _infer_config(tensors, chosen)
    return config, to_canonical(tensors, config, chosen)


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

