"""One ``.safetensors`` file with Hugging Face keys: read lazily, written with the config in its metadata.

safetensors has no magic number (an 8-byte header length, then JSON), so a
file is recognised by its extension. ``zoo convert`` stores the config as JSON
under the metadata key :data:`CONFIG_METADATA`, so the file needs no
``config.json`` beside it; without that key, a ``config.json`` beside the file
is read, else the config is inferred from the shapes.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from .._config import GPT2Config
from .._errors import WeightsSourceError
from ..weight_map import HF, TIED, CanonicalWeights, Layout, from_canonical
from ._base import Prepared
from ._state_dict import canonical

__all__ = ["CONFIG_METADATA", "DESCRIPTION", "SafetensorsSource", "read", "recognise", "write"]

#: what this module reads, as errors name it
DESCRIPTION = "a .safetensors file"
#: metadata key under which ``zoo convert`` stores the config (JSON of GPT2Config's fields)
CONFIG_METADATA = "gpt2_config"
#: the dtypes GPT-2 weights are stored in; any other (integers, bool, float8) is refused, never cast
FLOAT_DTYPES = ("F32", "F16", "BF16", "F64")


class SafetensorsSource(Mapping[str, Any]):
    """One or more safetensors files seen as a single lazy state dict.

    Only the headers are read up front. Each lookup memory-maps its file, takes
    the one tensor (a view of the mapping, no copy) and lets the mapping go, so
    a loader that copies tensors in one at a time keeps at most one tensor's
    pages of the file resident, never the whole file beside the model.
    """

    def __init__(self, paths: list[Path]) -> None:
        from safetensors import safe_open

        self._where: dict[str, Path] = {}
        self._shapes: dict[str, tuple[int, ...]] = {}
        self.config: GPT2Config | None = None  # the config ``zoo convert`` stores in the metadata
        for path in paths:
            dtypes: dict[str, str] = {}
            try:
                with safe_open(str(path), framework="pt", device="cpu") as handle:
                    for key in handle.keys():  # noqa: SIM118  # a safetensors handle is not iterable
                        self._where[key] = path
                        view = handle.get_slice(key)
                        self._shapes[key] = tuple(view.get_shape())
                        dtypes[key] = view.get_dtype()
                    stored = (handle.metadata() or {}).get(CONFIG_METADATA)
            except Exception as exc:  # safetensors raises its own error types, and OSError
                raise WeightsSourceError(f"cannot read safetensors file {str(path)!r}: {exc}") from exc
            wrong = {key: dtype for key, dtype in dtypes.items() if dtype not in FLOAT_DTYPES}
            if wrong:
                listed = ", ".join(f"{key} ({dtype})" for key, dtype in list(wrong.items())[:5])
                raise WeightsSourceError(
                    f"{str(path)!r} stores {len(wrong)} tensor(s) in a dtype GPT-2 weights never have: "
                    f"{listed}; weights are {', '.join(FLOAT_DTYPES)} and are not cast from others. "
                    "The file is corrupt or holds something else"
                )
            if stored is not None:
                try:
                    self.config = GPT2Config.from_hf(json.loads(stored))
                except (ValueError, TypeError, RecursionError) as exc:
                    raise WeightsSourceError(
                        f"{str(path)!r} stores an invalid config in its {CONFIG_METADATA!r} metadata: {exc}; "
                        "the file is corrupt: convert it again from its source"
                    ) from exc

    def shape_of(self, key: str) -> tuple[int, ...]:
        return self._shapes[key]

    def __getitem__(self, key: str) -> Any:
        from safetensors import safe_open

        path = self._where[key]
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            return handle.get_tensor(key)

    def __iter__(self) -> Iterator[str]:
        return iter(self._where)

    def __len__(self) -> int:
        return len(self._where)


def recognise(path: Path, head: bytes) -> bool:
    """A ``.safetensors`` file: by its extension, as the format has no magic number."""
    return path.suffix == ".safetensors" and not path.is_dir()


def read(
    path: Path, *, config: GPT2Config | None, layout: Layout | None, dequantize: bool
) -> tuple[GPT2Config, CanonicalWeights]:
    """The config and checked canonical weights of one ``.safetensors`` file (``hf`` layout by default)."""
    tensors = SafetensorsSource([path])
    return canonical(
        tensors, layout or HF, config=config, found=tensors.config, beside=path.parent / "config.json"
    )


def write(weights: Prepared, config: GPT2Config, path: Path, dtype: str) -> None:
    """As ``save_pretrained`` writes it: the tied ``lm_head.weight`` left out; the config in the metadata."""
    import safetensors.torch

    tensors = {key: t.contiguous() for key, t in from_canonical(weights, HF) if key != TIED[0]}
    metadata = {"format": "pt", CONFIG_METADATA: json.dumps(dataclasses.asdict(config))}
    safetensors.torch.save_file(tensors, str(path), metadata=metadata)
