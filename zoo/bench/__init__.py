"""``zoo bench``: variants, the Hugging Face reference and peer engines timed in one run, on one set of weights.

Each subject runs in a worker process of its own (:mod:`zoo.bench.worker`)
through a :class:`~zoo.bench.runners.Runner`; :func:`run_bench` collects
their figures, :func:`add_ratios` relates them to the reference and to the
decode floor, :func:`format_report` prints them.
"""

from __future__ import annotations

from .report import add_ratios, format_report
from .run import REFERENCE, Settings, Subject, run_bench

__all__ = ["REFERENCE", "Settings", "Subject", "add_ratios", "format_report", "run_bench"]
