"""Where weights come from: an in-memory state dict, a Hugging Face hub id, a folder or a file,
each handed to its format in :data:`zoo.formats.FORMATS`.

A path's format is the first row whose module recognises it: by its magic
number where the format has one, else by its extension or by being a folder;
never by the keys inside. A hub id is downloaded (or found in the hub cache)
as a ``save_pretrained`` folder. Every source is read lazily: keys and shapes
first, tensors one at a time when a model copies them in, so loading never
holds two full copies.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ._config import GPT2Config
from ._errors import WeightsError, WeightsSourceError
from .formats import FORMATS, Format, hf, torchfile
from .weight_map import LAYOUTS, CanonicalWeights, Layout

__all__ = ["format_of", "open_weights", "read_weights", "refuse_nonfinite"]

_HUB_ID = re.compile(r"[\w.-]+(/[\w.-]+)?\Z")  # "gpt2", "openai-community/gpt2"


def _looks_like_path(text: str) -> bool:
    """Whether a name that exists nowhere on disk was meant as a path rather than a hub id."""
    suffixes = (".json", *(suffix for fmt in FORMATS.values() for suffix in fmt.suffixes))
    return not _HUB_ID.match(text) or text.startswith(".") or text.endswith(suffixes)


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
                allow_patterns=["config.json", hf.SAFETENSORS_NAME, hf.SAFETENSORS_INDEX, "model-*.safetensors"],
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
            "(a folder written by save_pretrained, with its config.json, or a .safetensors, .bin/.pt, "
            "llm.c or GGUF file; `zoo convert` writes any of them from the others); a hub cache copied "
            "from another machine is found through HF_HUB_CACHE; `--weights random` (weights=None) "
            "needs no files"
        ) from exc
    return folder


def format_of(path: Path) -> Format:
    """The format of the file or folder at ``path``.

    The first row of :data:`~zoo.formats.FORMATS` whose module recognises it;
    failing that, the one format whose files are named like it, so that its
    reader says what is wrong with the file.
    """
    head = b""
    if not path.is_dir():
        with open(path, "rb") as f:
            head = f.read(8)
    for fmt in FORMATS.values():
        if fmt.module.recognise(path, head):
            return fmt
    named = [fmt for fmt in FORMATS.values() if path.suffix in fmt.suffixes]
    if len(named) == 1:
        return named[0]
    if named:
        raise WeightsSourceError(
            f"{str(path)!r} is neither {' nor '.join(f.module.DESCRIPTION for f in named)}: "
            f"it starts with {head!r}"
        )
    known = [fmt.module.DESCRIPTION for fmt in FORMATS.values()]
    raise WeightsSourceError(
        f"unrecognised weight file {str(path)!r} (it starts with {head!r}): the zoo reads "
        f"{', '.join(known[:-1])} or {known[-1]}; convert it to one of them first"
    )


#: values :func:`refuse_nonfinite` checks at a time
_CHECK_BLOCK = 1 << 20


def _count_nonfinite(tensor: Any) -> int:
    """NaN and Inf values in ``tensor`` (torch or NumPy), counted a block of rows at a time.

    NumPy does the counting for a tensor in the CPU's memory: torch's
    ``isfinite`` is several passes (about 20 times slower here) and makes
    temporaries several times its input's size. Blocks of about
    :data:`_CHECK_BLOCK` values keep those temporaries small.
    """
    import numpy as np
    import torch

    if isinstance(tensor, torch.Tensor) and tensor.device.type != "cpu":
        return int((~torch.isfinite(tensor)).sum())
    if isinstance(tensor, torch.Tensor):
        tensor = tensor.detach()
        # bfloat16, which NumPy lacks, by its bits: NaN and Inf have every exponent bit set
        array = tensor.view(torch.int16).numpy() if tensor.dtype == torch.bfloat16 else tensor.numpy()
    else:
        array = np.asarray(tensor)
    array = array.reshape(1) if array.ndim == 0 else array
    rows = max(1, _CHECK_BLOCK // max(1, array[0].size if len(array) else 1))
    bad = 0
    for start in range(0, len(array), rows):
        block = array[start : start + rows]
        if block.dtype == np.int16:
            bad += int(np.count_nonzero((block & 0x7F80) == 0x7F80))
        else:
            bad += block.size - int(np.count_nonzero(np.isfinite(block)))
    return bad


def refuse_nonfinite(name: str, tensor: Any, after: str = "") -> None:
    """Raise :class:`WeightsError` if ``tensor`` (torch or NumPy) holds a NaN or an Inf.

    Run on each tensor as it is read (:attr:`CanonicalWeights.check`), so it
    costs one pass over that tensor and no copy of the model.
    """
    bad = _count_nonfinite(tensor)
    if bad:
        raise WeightsError(
            f"{name} holds {bad} NaN or Inf value(s){after} (a diverged run or a corrupt file?), so the "
            "weights are refused; pass allow_nonfinite=True (--allow-nonfinite to zoo convert or "
            "zoo generate) to take them anyway"
        )


def open_weights(
    source: str | os.PathLike[str] | Mapping[str, Any],
    *,
    config: GPT2Config | None = None,
    layout: str | Layout | None = None,
    revision: str | None = None,
    allow_nonfinite: bool = False,
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
    overrides the source's config. A tensor holding NaN or Inf raises
    :class:`WeightsError` when it is read, unless ``allow_nonfinite=True``.
    """
    return read_weights(source, config=config, layout=layout, revision=revision, allow_nonfinite=allow_nonfinite)


def read_weights(
    source: str | os.PathLike[str] | Mapping[str, Any],
    *,
    config: GPT2Config | None = None,
    layout: str | Layout | None = None,
    revision: str | None = None,
    dequantize: bool = False,
    allow_nonfinite: bool = False,
) -> tuple[GPT2Config, CanonicalWeights]:
    """:func:`open_weights`, and with ``dequantize=True`` quantised GGUF files too (for ``zoo convert``)."""
    if isinstance(layout, str):
        if layout not in LAYOUTS:
            raise WeightsError(f"unknown layout {layout!r}; choose one of {', '.join(LAYOUTS)}")
        layout = LAYOUTS[layout]
    if revision is not None and (isinstance(source, Mapping)
                                 or Path(os.fspath(source)).expanduser().exists()):
        raise WeightsError(f"revision={revision!r} applies to Hugging Face hub ids, not to local weights")
    if isinstance(source, Mapping):
        found, weights = torchfile.read_state_dict(source, config=config, layout=layout)
    else:
        text = os.fspath(source)
        path = Path(text).expanduser()
        if not path.exists():
            if _looks_like_path(text) or isinstance(source, Path):
                raise WeightsSourceError(
                    f"no such file or folder: {text!r}; pass a file or folder that exists, or a Hugging Face "
                    "hub id such as 'gpt2'"
                )
            path = _download(text, revision)
        found, weights = format_of(path).module.read(path, config=config, layout=layout, dequantize=dequantize)
    if not allow_nonfinite:
        weights.check = refuse_nonfinite
    return found, weights
