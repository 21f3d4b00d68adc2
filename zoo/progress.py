"""How the commands show long work: a tqdm bar on a terminal, plain status lines everywhere else.

``zoo check``, ``zoo bench`` and ``zoo convert`` each make one :class:`Progress`
and hand it (it is callable with a line) to the code doing the work:

- ``progress(line)`` says what is happening. On a terminal it becomes the
  bar's description; elsewhere (CI, a pipe, a file) it is printed as
  ``zoo check: line`` on stderr, as it always was.
- ``progress.keep(line)`` is a line worth keeping on a terminal too (a
  failure): printed above the bar, or as a plain line.
- ``progress.advance(n)`` counts finished steps; only the bar shows them.

The bar is used only when stderr is a terminal and the command was not asked
for ``--json`` or ``-q``; ``-q`` turns every line off.
"""

from __future__ import annotations

import sys
from types import TracebackType
from typing import Any, TextIO

__all__ = ["Progress"]


class Progress:
    """The progress of one command: ``total`` steps (``None``: not known yet), shown on ``stream``."""

    def __init__(self, prefix: str, total: int | None = None, *, bar: bool | None = None, quiet: bool = False,
                 unit: str = "step", stream: TextIO | None = None) -> None:
        self.prefix = prefix
        self.stream = stream if stream is not None else sys.stderr
        self.quiet = quiet
        self.total = total
        self.done = 0
        if bar is None:
            bar = not quiet and _is_terminal(self.stream)
        self._bar: Any = None
        if bar and not quiet:
            from tqdm import tqdm

            self._bar = tqdm(total=total, unit=unit, desc=prefix, file=self.stream, dynamic_ncols=True,
                             leave=False)

    @property
    def bar(self) -> bool:
        """Whether a bar is shown (a terminal), rather than plain lines."""
        return self._bar is not None

    def __call__(self, line: str) -> None:
        """What is happening now: the bar's description, or a plain line."""
        if self.quiet:
            return
        if self._bar is not None:
            self._bar.set_description_str(f"{self.prefix}: {line}", refresh=True)
        else:
            self._print(line)

    def keep(self, line: str) -> None:
        """A line to keep in view: above the bar, or a plain line."""
        if self.quiet:
            return
        if self._bar is not None:
            self._bar.write(f"{self.prefix}: {line}", file=self.stream)
        else:
            self._print(line)

    def advance(self, n: int = 1) -> None:
        """``n`` more steps are finished."""
        self.done += n
        if self._bar is not None:
            self._bar.update(n)

    def set_total(self, total: int) -> None:
        """The number of steps, once it is known."""
        self.total = total
        if self._bar is not None:
            self._bar.total = total
            self._bar.refresh()

    def close(self) -> None:
        """Take the bar away (the command's own output follows it)."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def _print(self, line: str) -> None:
        print(f"{self.prefix}: {line}", file=self.stream, flush=True)


def _is_terminal(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # a closed or fake stream
        return False
