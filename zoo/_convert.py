"""``zoo convert``: weights from any format the zoo reads into any format it writes.

What each format is (its layout, precisions, file names) and the module that
writes it are its row in :data:`zoo.formats.FORMATS`; here are the rules every
conversion keeps:

- nothing is written unless the whole conversion succeeds: the output goes to
  a temporary name in the destination folder and is renamed at the end;
- one conversion at a time writes a destination: a second fails at once, and
  the first cleans what killed ones left there (:mod:`zoo._destination`);
- an existing destination is replaced only with ``force=True``, a folder
  without a moment where none is there to a reader, nor lost to a crash;
- NaN or Inf in the weights is refused unless ``allow_nonfinite=True``;
- tensors are cast to the precision the format declares for them, and to
  nothing else;
- a format whose files cannot store ``layer_norm_epsilon`` refuses a model
  that uses another than the one its programs fix.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from ._config import GPT2Config
from ._destination import locked, replace_folder, temporary_folder
from ._errors import WeightsError, ZooError
from ._weights import read_weights, refuse_nonfinite
from .formats import DTYPE_ALIASES, FORMATS, Format, Prepared
from .weight_map import CanonicalWeights, canonical_shapes

__all__ = ["convert"]

log = logging.getLogger("zoo")


class _Prepared(Prepared):
    """Canonical weights cast to the precision ``fmt`` stores each in, and checked to be finite."""

    def __init__(self, weights: CanonicalWeights, fmt: Format, dtype: str, allow_nonfinite: bool,
                 progress: Callable[[int, int], None] | None = None) -> None:
        self._weights, self._fmt, self._dtype, self._allow_nonfinite = weights, fmt, dtype, allow_nonfinite
        self._shapes = canonical_shapes(weights.config)
        self.config = weights.config
        self._progress = progress
        self._seen: set[str] = set()

    def stored_dtype(self, name: str) -> str:
        return self._fmt.stored_dtype(name, self._shapes[name], self._dtype)

    def __getitem__(self, name: str) -> Any:
        import torch

        source = torch.as_tensor(self._weights[name])
        stored = self.stored_dtype(name)
        # q8_0 stays float32 here: the GGUF writer quantises it
        tensor = source.to(torch.bfloat16 if stored == "bfloat16" else torch.float32)
        # read_weights checked the source; rounding (float64 to float32 too) may overflow to Inf
        if not self._allow_nonfinite and tensor is not source:
            refuse_nonfinite(name, tensor, f" after rounding to {stored}" if stored != "float32" else "")
        if self._progress is not None and name not in self._seen:  # a writer may read a tensor twice
            self._seen.add(name)
            self._progress(len(self._seen), len(self._weights))
        return tensor

    def __iter__(self) -> Iterator[str]:
        return iter(self._weights)

    def __len__(self) -> int:
        return len(self._weights)


def _check_epsilon(config: GPT2Config, fmt: Format) -> None:
    if fmt.epsilon is not None and config.layer_norm_epsilon != fmt.epsilon:
        others = [f.name for f in FORMATS.values() if f.epsilon is None]
        raise WeightsError(
            f"{fmt.name} files have no layer_norm_epsilon field and the programs that read them use "
            f"{fmt.epsilon}; this model uses {config.layer_norm_epsilon}, so they would compute something "
            f"else. Convert to {', '.join(others)} instead"
        )


def _format(to: str) -> Format:
    if to not in FORMATS:
        raise WeightsError(f"unknown format {to!r}; choose one of {', '.join(FORMATS)}")
    return FORMATS[to]


def _dtype(dtype: str | None, fmt: Format) -> str:
    name = fmt.dtypes[0] if dtype is None else DTYPE_ALIASES.get(dtype, dtype)
    if name not in fmt.dtypes:
        raise WeightsError(f"the {fmt.name} format stores {', '.join(fmt.dtypes)}, not {dtype!r}")
    return name


def _check_name(dst: Path, fmt: Format) -> None:
    if fmt.suffixes and dst.suffix not in fmt.suffixes:
        raise WeightsError(
            f"--to {fmt.name} writes a {' / '.join(fmt.suffixes)} file, so that the zoo can tell its type "
            f"again; name the destination like {dst.with_suffix(fmt.suffixes[0]).name!r}"
        )
    if not dst.parent.is_dir():
        raise WeightsError(f"the destination's folder {str(dst.parent)!r} does not exist; create it first")


def _check_destination(dst: Path, fmt: Format, src: Any, force: bool) -> None:
    if not (dst.exists() or dst.is_symlink()):
        return
    if isinstance(src, (str, os.PathLike)) and Path(src).exists() and os.path.samefile(src, dst):
        raise WeightsError(f"the destination {str(dst)!r} is the source; write elsewhere, then rename")
    if not force:
        raise WeightsError(f"{str(dst)!r} exists; pass --force (force=True) to replace it")
    if dst.is_dir() != fmt.folder:
        have, want = ("a folder", "a file") if dst.is_dir() else ("a file", "a folder")
        raise WeightsError(f"{str(dst)!r} is {have} and --to {fmt.name} writes {want}; remove it or write elsewhere")


_STORED_BYTES = {"float32": 4.0, "bfloat16": 2.0, "q8_0": 34 / 32}  # q8_0: a float16 scale per 32 int8


def _output_bytes(prepared: _Prepared) -> int:
    """About how many bytes the written weights take (headers and the GGUF vocabulary aside)."""
    shapes = canonical_shapes(prepared.config)
    return int(sum(math.prod(shape) * _STORED_BYTES[prepared.stored_dtype(name)] for name, shape in shapes.items()))


def _check_space(dst: Path, needed: int) -> None:
    free = shutil.disk_usage(dst.parent).free
    if free < needed:
        raise WeightsError(
            f"not enough space for {str(dst)!r}: the weights take about {needed / 2**20:.1f} MiB and its "
            f"device has {free / 2**20:.1f} MiB free; free some space or write elsewhere"
        )


def _write(fmt: Format, prepared: _Prepared, config: GPT2Config, out: Path, dtype: str, dst: Path) -> None:
    """``fmt``'s writer, whose failure to write (a full disk, a file-size limit...) is one named error."""
    from safetensors import SafetensorError

    try:
        fmt.module.write(prepared, config, out, dtype)
    except (OSError, RuntimeError, SafetensorError) as exc:  # what torch.save, safetensors and open() raise
        if isinstance(exc, ZooError):
            raise
        free = shutil.disk_usage(dst.parent).free
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise WeightsError(
            f"writing {str(dst)!r} failed ({reason}; {free / 2**20:.1f} MiB free on its device), so nothing "
            "was written; free some space or write elsewhere"
        ) from exc


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
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Convert the GPT-2 weights in ``src`` to format ``to`` at ``dst``; return ``dst``.

    :param src: anything :func:`zoo.open_weights` reads, and quantised (Q8_0)
        GGUF files, which are dequantised to float32.
    :param dst: a folder or a file, named with one of the suffixes ``FORMATS[to]`` declares.
    :param to: a format's name in :data:`zoo.formats.FORMATS`.
    :param dtype: one of the precisions ``FORMATS[to]`` declares (its first by
        default), or an alias of one (``fp32``, ``bf16``, ``q8``); which tensors
        take it is the row's declaration too.
    :param force: replace ``dst`` if it exists.
    :param allow_nonfinite: write NaN and Inf instead of refusing them.
    :param config: overrides the config the source carries (or supplies a missing one).
    :param layout: key layout of a bare state dict source (``hf``, ``nanogpt``, ``canonical``).
    :param progress: called with ``(done, total)`` as each tensor is made ready to write.
    :raises WeightsError: for a bad request or bad weights; nothing is written.
    :raises WeightsSourceError: for a source that cannot be read; nothing is written.
    """
    fmt = _format(to)
    dtype = _dtype(dtype, fmt)
    dst = Path(dst).expanduser()
    _check_name(dst, fmt)
    with locked(dst):
        _check_destination(dst, fmt, src, force)
        found, weights = read_weights(
            src, config=config, layout=layout, dequantize=True, allow_nonfinite=allow_nonfinite
        )
        _check_epsilon(found, fmt)
        prepared = _Prepared(weights, fmt, dtype, allow_nonfinite, progress)
        _check_space(dst, _output_bytes(prepared))
        _write_and_rename(fmt, prepared, found, dst, dtype)
    log.info("wrote %s (%s, %s) for %s", dst, fmt.name, dtype, found)
    return dst


def _write_and_rename(fmt: Format, prepared: _Prepared, found: GPT2Config, dst: Path, dtype: str) -> None:
    """Write into a temporary folder beside ``dst``, then rename the result to ``dst``."""
    work = temporary_folder(dst)
    try:
        out = work / dst.name
        _write(fmt, prepared, found, out, dtype, dst)
        try:
            if fmt.folder and dst.is_dir():  # a folder cannot be replaced by a plain rename
                replace_folder(out, dst)
            else:
                os.replace(out, dst)
        except OSError as exc:
            kept = "the old one is kept" if dst.exists() else "nothing was written"
            raise WeightsError(
                f"moving the converted weights to {str(dst)!r} failed ({exc.strerror or exc}), so {kept}; "
                "check the folder's permissions, or write elsewhere"
            ) from exc
    finally:
        shutil.rmtree(work, ignore_errors=True)  # checked below: a leftover is reported, not raised
        if work.exists():
            log.warning("could not remove the temporary folder %s; delete it by hand", work)
