"""Where the harness remembers failing examples, so that the next run replays them first.

Hypothesis saves every failing example it shrinks to an example database and,
in its ``reuse`` phase, replays what the database holds before generating new
examples. ``zoo check`` keeps that database in the user's cache:

1. ``zoo check --database DIR`` (``--no-database``: none);
2. else ``$ZOO_HYPOTHESIS_DB``;
3. else ``$ZOO_CACHE/hypothesis``;
4. else ``$XDG_CACHE_HOME/gpt2-zoo/hypothesis`` (``~/.cache/gpt2-zoo/hypothesis``).

The profiles themselves keep ``database=None`` (the test suite writes no
database); the runner adds one to a profile at run time. The ``ci`` profile
stays derandomised: a database given to a derandomised profile is still
replayed and written, so a CI run tests the same examples as the last one, and
the failures of earlier runs first. To share failures between CI runs, keep
the folder between jobs (an actions/cache step on its path), or point
``$ZOO_HYPOTHESIS_DB`` at a folder the jobs share. From Python,
:func:`conformance.runner.check_variant` takes any hypothesis database
(``GitHubArtifactDatabase``, which reads the one a workflow uploaded, say).

Every variant (and device) has its own part of the database
(:class:`VariantDatabase`): the properties' test functions are the same for
every variant, and so are hypothesis' keys for them.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from hypothesis.database import DirectoryBasedExampleDatabase, ExampleDatabase

__all__ = ["ENV", "VariantDatabase", "cache_path", "default_path", "open_database"]

ENV = "ZOO_HYPOTHESIS_DB"
CACHE_ENV = "ZOO_CACHE"


def cache_path() -> Path:
    """The zoo's cache folder: ``$ZOO_CACHE``, else ``$XDG_CACHE_HOME/gpt2-zoo`` (``~/.cache/gpt2-zoo``)."""
    if os.environ.get(CACHE_ENV, "").strip():
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME", "").strip() or Path.home() / ".cache"
    return Path(base) / "gpt2-zoo"


def default_path() -> Path:
    """The database folder ``zoo check`` uses when told nothing (see the module docstring)."""
    if os.environ.get(ENV, "").strip():
        return Path(os.environ[ENV]).expanduser()
    return cache_path() / "hypothesis"


def open_database(path: str | os.PathLike[str]) -> ExampleDatabase:
    """A hypothesis database in the folder ``path`` (created when first written)."""
    return DirectoryBasedExampleDatabase(os.fspath(path))


class VariantDatabase(ExampleDatabase):
    """The part of ``base`` that holds one variant's examples on one device: every key prefixed.

    ``fetched`` counts the stored examples hypothesis read back for replay
    (its main corpus, not the intermediate ones it keeps for shrinking).
    """

    def __init__(self, base: ExampleDatabase, variant: str, device: str = "cpu") -> None:
        super().__init__()
        self.base = base
        self.prefix = f"gpt2-zoo:{variant}:{device}:".encode()
        self.fetched = 0

    def __repr__(self) -> str:
        return f"VariantDatabase({self.base!r}, {self.prefix.decode()!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, VariantDatabase) and (other.base, other.prefix) == (self.base, self.prefix)

    def __hash__(self) -> int:
        return hash(self.prefix)

    def save(self, key: bytes, value: bytes) -> None:
        self.base.save(self.prefix + key, value)

    def fetch(self, key: bytes) -> Iterable[bytes]:
        main = not key.endswith((b".secondary", b".pareto"))
        for value in self.base.fetch(self.prefix + key):
            if main:
                self.fetched += 1
            yield value

    def delete(self, key: bytes, value: bytes) -> None:
        self.base.delete(self.prefix + key, value)

    def move(self, src: bytes, dest: bytes, value: bytes) -> None:
        self.base.move(self.prefix + src, self.prefix + dest, value)
