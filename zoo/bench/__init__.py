"""``zoo bench``: the registered variants and the reference timed in one run, on one set of weights.

The subjects are registered variants only: the zoo's own and the engines
(ONNX Runtime, CTranslate2, llama.cpp) alike, each named ``NAME`` or
``NAME@PRECISION`` (:func:`zoo.resolve`). The reference is the registered
variant that declares ``reference=True`` (:func:`reference_variant`); it is
timed as Hugging Face's users run it, ``from_pretrained`` and ``generate``.
Each subject runs in a worker process of its own (:mod:`zoo.bench.worker`)
through a :class:`~zoo.bench.runners.Runner`; :func:`run_bench` collects their
figures, :func:`add_ratios` relates them to the reference and to the decode
floor, :func:`format_report` prints them. A subject's family and the bytes its
decode floor counts come from its row of :data:`zoo.PRECISIONS`.

The bench is a client of the zoo: it imports ``zoo``'s public API only
(``zoo.__all__`` and public modules), never a private ``zoo._*`` module.
"""

from __future__ import annotations

from .report import add_ratios, format_report
from .run import REFERENCE_DTYPE, NoReferenceError, Settings, Subject, reference_variant, run_bench

__all__ = ["REFERENCE_DTYPE", "NoReferenceError", "Settings", "Subject", "add_ratios", "format_report",
           "reference_variant", "run_bench"]
