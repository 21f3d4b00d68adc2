"""Every reader, fed corrupted small files: a named ``zoo`` error or a correct load, never anything else.

The default suite runs a quick slice (:data:`QUICK` examples per reader,
derandomised); ``pytest -m fuzz tests/hostile`` runs the long one
(``ZOO_FUZZ_EXAMPLES``, 2,000 per reader by default, a fresh seed each run).
Every example must end within :data:`SECONDS` and keep the process's peak
memory within :data:`MEMORY` of where this file's tests began (not where the
process began: under pytest-xdist a worker may have run a 124M model first).
"""

from __future__ import annotations

import collections
import os
import resource
import shutil
import tempfile
from datetime import timedelta
from pathlib import Path

import pytest
from corruptions import Corrupted, corrupted_files
from hostile_files import SECONDS, formats, read_all
from hypothesis import HealthCheck, given, note, settings

from zoo import ZooError

QUICK = 40
LONG = int(os.environ.get("ZOO_FUZZ_EXAMPLES", "2000"))
MEMORY = 1 << 30  # bytes of peak RSS an example may add: the files are KiB, so this is a leak or a runaway size
_BASELINE: list[int] = []  # the peak RSS when this file's first test began
OUTCOMES: collections.Counter[tuple[str, str]] = collections.Counter()  # (reader, outcome), for the report

_COMMON = {"deadline": timedelta(seconds=SECONDS), "suppress_health_check": [HealthCheck.too_slow,
               HealthCheck.data_too_large, HealthCheck.large_base_example], "database": None}


def _peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


@pytest.fixture(autouse=True, scope="module")
def _baseline() -> None:
    _BASELINE.append(_peak_rss())


def check(fmt: str, corrupted: Corrupted) -> None:
    for edit in corrupted.edits:
        note(edit)
    folder = Path(tempfile.mkdtemp(prefix="zoo-fuzz-"))
    try:
        path = corrupted.write(folder)
        try:
            read_all(path)
            outcome = "loaded"
        except ZooError as exc:
            outcome = type(exc).__name__
    finally:
        shutil.rmtree(folder)
    grown = _peak_rss() - _BASELINE[0]
    assert grown < MEMORY, f"peak memory grew by {grown / 2**20:.0f} MiB"
    OUTCOMES[fmt, outcome] += 1


def _reader_test(fmt: str, examples: int, **extra):
    @settings(max_examples=examples, **_COMMON, **extra)
    @given(corrupted=corrupted_files(fmt))
    def test(corrupted: Corrupted) -> None:
        check(fmt, corrupted)

    return test


@pytest.mark.parametrize("fmt", formats())
def test_quick_slice(fmt):
    _reader_test(fmt, QUICK, derandomize=True)()


@pytest.mark.fuzz
@pytest.mark.parametrize("fmt", formats())
def test_long_run(fmt):
    _reader_test(fmt, LONG)()
    tried = {outcome: n for (reader, outcome), n in OUTCOMES.items() if reader == fmt}
    print(f"\n{fmt}: {sum(tried.values())} inputs: {tried}")
