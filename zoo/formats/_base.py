"""What every format module shares: the weights a writer is given, and the refusal of ``layout=``
where a format fixes its own names."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .._errors import WeightsError
from ..weight_map import Layout

__all__ = ["Prepared", "refuse_layout"]


class Prepared(Mapping[str, Any]):
    """Canonical weights as a writer is given them: checked, and each tensor already cast to the
    precision its format stores it in (float32 for a tensor the writer quantises)."""

    @abstractmethod
    def stored_dtype(self, name: str) -> str:
        """The precision canonical tensor ``name`` is stored in: ``float32``, ``bfloat16`` or ``q8_0``."""


def refuse_layout(path: Path, layout: Layout | None, kind: str) -> None:
    """Refuse ``layout=`` for a file whose format fixes its tensor names (llm.c, GGUF)."""
    if layout is not None:
        raise WeightsError(
            f"layout={layout.name!r} describes state dicts, but {str(path)!r} is an {kind} file, "
            "whose names the format fixes; drop layout="
        )
