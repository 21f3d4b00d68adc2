"""Skip marks for what the installed torch lacks, each giving the reason the zoo gives."""

from __future__ import annotations

import pytest

import zoo.nn

#: why the int4 scheme cannot run here (its CPU kernels are in torch from 2.6), or None
INT4_MISSING = zoo.nn.SCHEMES["int4"].unavailable()
needs_int4 = pytest.mark.skipif(INT4_MISSING is not None, reason=str(INT4_MISSING))
