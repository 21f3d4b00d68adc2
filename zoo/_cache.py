"""Where the zoo keeps what it makes once per machine: the one cache folder every part of it uses."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["cache_dir"]


def cache_dir(*parts: str) -> Path:
    """``$ZOO_CACHE``, else ``$XDG_CACHE_HOME/gpt2-zoo``, else ``~/.cache/gpt2-zoo``; joined with ``parts``.

    Nothing is created: a caller makes the folder it writes to. Everything in
    it can be deleted at any time; it is made again when needed.
    """
    if os.environ.get("ZOO_CACHE"):
        base = Path(os.environ["ZOO_CACHE"]).expanduser()
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "gpt2-zoo"
    return base.joinpath(*parts)
