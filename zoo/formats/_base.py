"""What every format module shares: the weights a writer is given, the shapes it stores them in, and
the refusal of ``layout=`` where a format fixes its own names."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .._config import GPT2Config
from .._errors import WeightsError
from ..weight_map import SPEC, TIED, Layout, canonical_shapes, template_of

__all__ = ["Prepared", "refuse_layout", "stored_shapes"]


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


def stored_shapes(config: GPT2Config, layout: Layout) -> dict[str, tuple[int, ...]]:
    """Each key ``layout`` stores for ``config`` with its stored shape, in its order, without any tensor.

    What a streaming writer puts in a header before the first tensor's bytes;
    :func:`~zoo.weight_map.from_canonical` then yields the tensors in the same order.
    """
    by_template = {tensor.name: tensor for tensor in SPEC}
    shapes: dict[str, tuple[int, ...]] = {}
    for name in layout.order(list(canonical_shapes(config))):
        shapes[layout.key(name)] = layout.stored_shape(by_template[template_of(name)[0]], config)
        if name == TIED[1] and layout.writes_tied:
            shapes[layout.key(TIED[0])] = shapes[layout.key(name)]
    return shapes
