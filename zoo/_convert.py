"""``zoo convert``: weights from any format the zoo reads into any format it writes.

What each format is (names, order, orientation, precisions) is declared in
``zoo.weight_map.FORMATS``; here are the writers and the rules every
conversion keeps:

- nothing is written unless the whole conversion succeeds: the output goes to
  a temporary name in the destination folder and is renamed at the end;
- an existing destination is replaced only with ``force=True``;
- NaN or Inf in the weights is refused unless ``allow_nonfinite=True``;
- tensors are cast to the precision the format declares for them, and to
  nothing else.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from ._config import GPT2Config
from ._errors import WeightsError
from ._gguf import write_gguf
from ._llmc import LLMC_EPSILON, write_llmc
from ._weights import CONFIG_METADATA, config_metadata, read_weights
from .weight_map import FORMATS, HF, NANOGPT, TIED, Format, from_canonical

__all__ = ["DTYPES", "convert"]

log = logging.getLogger("zoo")

DTYPES = ("float32", "bfloat16", "q8_0")
_DTYPE_ALIASES = {"fp32": "float32", "float": "float32", "bf16": "bfloat16", "q8": "q8_0"}

Writer = Callable[[Mapping[str, Any], GPT2Config, Path, str], None]


class _Prepared(Mapping[str, Any]):
    """Canonical weights cast to the precision ``fmt`` stores each in, and checked to be finite."""

    def __init__(self, weights: Mapping[str, Any], fmt: Format, dtype: str, allow_nonfinite: bool) -> None:
        self._weights, self._fmt, self._dtype, self._allow_nonfinite = weights, fmt, dtype, allow_nonfinite

    def __getitem__(self, name: str) -> Any:
        import torch

        tensor = torch.as_tensor(self._weights[name])
        stored = self._fmt.stored_dtype(name, tuple(tensor.shape), self._dtype)
        # q8_0 stays float32 here: the GGUF writer quantises it
        tensor = tensor.to(torch.bfloat16 if stored == "bfloat16" else torch.float32)
        if not self._allow_nonfinite:
            bad = int((~torch.isfinite(tensor)).sum())
            if bad:
                raise WeightsError(
                    f"{name} holds {bad} NaN or Inf value(s){' after rounding to ' + stored if stored != 'float32' else ''}"
                    f", so nothing was written (a diverged run or a corrupt file?); pass --allow-nonfinite "
                    "(allow_nonfinite=True) to convert them anyway"
                )
        return tensor

    def __iter__(self) -> Iterator[str]:
        return iter(self._weights)

    def __len__(self) -> int:
        return len(self._weights)


def _no_other_epsilon(config: GPT2Config, fmt: str) -> None:
    if config.layer_norm_epsilon != LLMC_EPSILON:
        raise WeightsError(
            f"{fmt} checkpoints have no layer_norm_epsilon and use {LLMC_EPSILON}; this model uses "
            f"{config.layer_norm_epsilon}. Convert to hf, safetensors or gguf instead"
        )


def _write_safetensors(weights: Mapping[str, Any], config: GPT2Config, path: Path, dtype: str) -> None:
    import safetensors.torch

    # as save_pretrained writes it: the tied lm_head.weight left out, the config in the metadata
    tensors = {key: t.contiguous() for key, t in from_canonical(weights, HF) if key != TIED[0]}
    safetensors.torch.save_file(
        tensors, str(path), metadata={"format": "pt", CONFIG_METADATA: config_metadata(config)}
    )


def _write_hf(weights: Mapping[str, Any], config: GPT2Config, path: Path, dtype: str) -> None:
    path.mkdir()
    config.to_hf(architectures=["GPT2LMHeadModel"]).to_json_file(str(path / "config.json"))
    _write_safetensors(weights, config, path / "model.safetensors", dtype)


def _write_nanogpt(weights: Mapping[str, Any], config: GPT2Config, path: Path, dtype: str) -> None:
    import torch

    _no_other_epsilon(config, "nanoGPT")
    # contiguous() returns a contiguous tensor itself, so lm_head.weight stays wte.weight: stored once
    state = {key: t.contiguous() for key, t in from_canonical(weights, NANOGPT)}
    model_args = {"n_layer": config.n_layer, "n_head": config.n_head, "n_embd": config.n_embd,
                  "block_size": config.n_positions, "bias": True, "vocab_size": config.vocab_size, "dropout": 0.0}
    torch.save({"model": state, "model_args": model_args}, path)


WRITERS: dict[str, Writer] = {
    "hf": _write_hf,
    "safetensors": _write_safetensors,
    "nanogpt": _write_nanogpt,
    "llmc": write_llmc,
    "gguf": write_gguf,
}


def _format(to: str) -> Format:
    if to not in FORMATS:
        raise WeightsError(f"unknown format {to!r}; choose one of {', '.join(FORMATS)}")
    return FORMATS[to]


def _dtype(dtype: str | None, fmt: Format) -> str:
    name = fmt.dtypes[0] if dtype is None else _DTYPE_ALIASES.get(dtype, dtype)
    if name not in fmt.dtypes:
        raise WeightsError(f"the {fmt.name} format stores {', '.join(fmt.dtypes)}, not {dtype!r}")
    return name


def _check_destination(dst: Path, fmt: Format, src: Any, force: bool) -> None:
    if fmt.suffixes and dst.suffix not in fmt.suffixes:
        raise WeightsError(
            f"--to {fmt.name} writes a {' / '.join(fmt.suffixes)} file, so that the zoo can tell its type "
            f"again; name the destination like {dst.with_suffix(fmt.suffixes[0]).name!r}"
        )
    if not dst.parent.is_dir():
        raise WeightsError(f"the destination's folder {str(dst.parent)!r} does not exist; create it first")
    if not (dst.exists() or dst.is_symlink()):
        return
    if isinstance(src, (str, os.PathLike)) and Path(src).exists() and os.path.samefile(src, dst):
        raise WeightsError(f"the destination {str(dst)!r} is the source; write elsewhere, then rename")
    if not force:
        raise WeightsError(f"{str(dst)!r} exists; pass --force (force=True) to replace it")
    if dst.is_dir() != fmt.folder:
        have, want = ("a folder", "a file") if dst.is_dir() else ("a file", "a folder")
        raise WeightsError(f"{str(dst)!r} is {have} and --to {fmt.name} writes {want}; remove it or write elsewhere")


def convert(
    src: str | os.PathLike[str] | Mapping[str, Any],
    dst: str | os.PathLike[str],
    *,
    to: str,
    dtype: str | None = None,
    force: bool = False,
    allow_nonfinite: bool = False,
    config: GPT2Config | None = None,
    layout: str | None = None,
) -> Path:
    """Convert the GPT-2 weights in ``src`` to format ``to`` at ``dst``; return ``dst``.

    :param src: anything :func:`zoo.open_weights` reads, and quantised (Q8_0)
        GGUF files, which are dequantised to float32.
    :param dst: a folder for ``hf``, a file for the others (``.safetensors``,
        ``.pt``/``.pth``/``.ckpt``/``.bin``, ``.bin``, ``.gguf``).
    :param to: ``hf``, ``safetensors``, ``nanogpt``, ``llmc`` or ``gguf``.
    :param dtype: ``float32`` (default), ``bfloat16``, or ``q8_0`` (GGUF); which
        tensors take it is ``FORMATS[to]``'s declaration.
    :param force: replace ``dst`` if it exists.
    :param allow_nonfinite: write NaN and Inf instead of refusing them.
    :param config: overrides the config the source carries (or supplies a missing one).
    :param layout: key layout of a bare state dict source (``hf``, ``nanogpt``, ``canonical``).
    :raises WeightsError: for a bad request or bad weights; nothing is written.
    :raises WeightsSourceError: for a source that cannot be read; nothing is written.
    """
    fmt = _format(to)
    dtype = _dtype(dtype, fmt)
    dst = Path(dst).expanduser()
    _check_destination(dst, fmt, src, force)
    found, weights = read_weights(src, config=config, layout=layout, dequantize=True)
    prepared = _Prepared(weights, fmt, dtype, allow_nonfinite)
    work = Path(tempfile.mkdtemp(prefix=f".{dst.name}.", suffix=".partial", dir=dst.parent))
    try:
        out = work / dst.name
        WRITERS[fmt.name](prepared, found, out, dtype)
        if fmt.folder and dst.is_dir():  # a folder cannot be replaced in one rename: move the old one aside
            old = work / "replaced"
            dst.rename(old)
            try:
                out.rename(dst)
            except OSError:
                old.rename(dst)
                raise
        else:
            os.replace(out, dst)
    finally:
        shutil.rmtree(work, ignore_errors=True)  # checked below: a leftover is reported, not raised
        if work.exists():
            log.warning("could not remove the temporary folder %s; delete it by hand", work)
    log.info("wrote %s (%s, %s) for %s", dst, fmt.name, dtype, found)
    return dst
