"""What every peer runner shares: the CPU-only check, precision names, and converted weights cached per source."""

from __future__ import annotations

import abc
import hashlib
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import ClassVar

import numpy as np

from zoo import CapabilityError, GPT2Config, WeightsSourceError

from ..runners import Runner

log = logging.getLogger("zoo")

__all__ = ["PeerRunner", "cached", "file_bytes"]


def _fingerprint(weights_dir: Path) -> str:
    """A short name for the weights in ``weights_dir``: its config, and each file's name, size and mtime."""
    digest = hashlib.sha256((weights_dir / "config.json").read_bytes())
    for path in sorted(weights_dir.iterdir()):
        if path.is_file():
            stat = path.stat()
            digest.update(f"{path.name}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:16]


def cached(path: Path, build: Callable[[Path], object]) -> Path:
    """``path`` if it exists; otherwise ``build(tmp)`` into a sibling temporary name, then renamed to ``path``.

    ``tmp`` is a file name for a file ``path`` and a folder name for a folder
    one: a run that fails or is interrupted leaves no half-written result that
    a later run would take for a finished one.
    """
    if path.exists():
        log.debug("reusing %s", path)
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent))
    try:
        out = work / path.name
        log.info("writing %s", path)
        build(out)
        os.replace(out, path)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return path


def file_bytes(path: Path) -> int:
    """Bytes in a file, or in every file under a folder."""
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


class PeerRunner(Runner):
    """A :class:`Runner` for another engine on the CPU, at one of the engine's own ``PRECISIONS``.

    Subclasses set ``PEER`` (the peer's name) and ``PRECISIONS`` (its precision
    names, mapped to the zoo's dtype families); ``precision`` may be either
    name. Converted weights go under ``work_dir / PEER / <fingerprint of the
    weights>``, so a second run on the same weights reuses them and other
    weights never do.
    """

    PEER: ClassVar[str]
    PRECISIONS: ClassVar[Mapping[str, str]]

    def __init__(self, weights_dir: Path, work_dir: Path, precision: str, device: str, threads: int) -> None:
        weights_dir, work_dir = Path(weights_dir), Path(work_dir)
        if device != "cpu":
            raise CapabilityError(f"the {self.PEER} peer runs on the CPU only, not {device!r}; use --device cpu")
        if threads < 1:
            raise CapabilityError(f"threads must be at least 1, not {threads}")
        super().__init__(weights_dir, work_dir, self._own_precision(precision), device, threads)
        self.config = GPT2Config.from_json_file(weights_dir / "config.json")
        self.cache_dir = work_dir / self.PEER / _fingerprint(weights_dir)

    @classmethod
    def _own_precision(cls, precision: str) -> str:
        if precision in cls.PRECISIONS:
            return precision
        own = [name for name, family in cls.PRECISIONS.items() if family == precision]
        if len(own) == 1:
            return own[0]
        offered = ", ".join(f"{name} ({family})" for name, family in cls.PRECISIONS.items())
        raise CapabilityError(f"the {cls.PEER} peer has no precision {precision!r}; it offers {offered}")

    def converted(self, path: Path) -> Path:
        """``path``, which :meth:`prepare` writes; raises if it has not run."""
        if not path.exists():
            raise WeightsSourceError(f"{path} does not exist: call prepare() before load() to convert the weights")
        return path

    def generate(self, ids: np.ndarray, max_new_tokens: int, on_token: Callable[[], None]) -> None:
        self.greedy(ids, max_new_tokens, on_token)

    @abc.abstractmethod
    def greedy(self, ids: np.ndarray, max_new_tokens: int, on_token: Callable[[], None]) -> np.ndarray:
        """:meth:`generate`, returning the tokens chosen, ``[B, max_new_tokens]`` int64."""

