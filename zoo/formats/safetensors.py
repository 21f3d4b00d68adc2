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
import math
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from .._config import GPT2Config
from .._errors import WeightsSourceError
from ..weight_map import HF, TIED, CanonicalWeights, Layout, from_canonical
from ._base import Prepared, stored_shapes
from ._state_dict import canonical

__all__ = ["CONFIG_METADATA", "DESCRIPTION", "SafetensorsSource", "read", "recognise", "write"]

#: what this module reads, as errors name it
DESCRIPTION = "a .safetensors file"
#: metadata key under which ``zoo convert`` stores the config (JSON of GPT2Config's fields)
CONFIG_METADATA = "gpt2_config"
#: the dtypes GPT-2 weights are stored in; any other (integers, bool, float8) is refused, never cast
FLOAT_DTYPES = ("F32", "F16", "BF16", "F64")
# the precisions the zoo writes, as safetensors names them
_STORED = {"float32": "F32", "bfloat16": "BF16"}
# as NumPy reads them; bfloat16, which NumPy lacks, as its bits
_NUMPY = {"F32": "<f4", "F16": "<f2", "BF16": "<i2", "F64": "<f8"}


class SafetensorsSource(Mapping[str, Any]):
    """One or more safetensors files seen as a single lazy state dict.

    Only the headers are read up front (and checked by the ``safetensors``
    package). Each file is memory-mapped once, on its first lookup, and every
    tensor is a view of that mapping (no copy): address space grows by the
    files' sizes once, not by a file per tensor, and a loader that copies
    tensors in one at a time keeps only the pages it touched resident.
    """

    def __init__(self, paths: list[Path]) -> None:
        from safetensors import safe_open

        self._where: dict[str, Path] = {}
        self._shapes: dict[str, tuple[int, ...]] = {}
        self._spans: dict[str, tuple[str, int, int]] = {}  # dtype, first and last byte + 1 in the file
        self._maps: dict[Path, Any] = {}
        self.config: GPT2Config | None = None  # the config ``zoo convert`` stores in the metadata
        for path in paths:
            dtypes: dict[str, str] = {}
            try:
                with safe_open(str(path), framework="numpy") as handle:  # "pt" maps the file twice
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
            self._spans.update(_spans(path, dtypes))
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
        import numpy as np
        import torch

        path = self._where[key]
        if path not in self._maps:  # copy-on-write: writable views for torch, and the file is never written
            self._maps[path] = np.memmap(path, dtype=np.uint8, mode="c")
        dtype, start, end = self._spans[key]
        array = self._maps[path][start:end].view(_NUMPY[dtype]).reshape(self._shapes[key])
        if start % array.itemsize:  # a file written without alignment: copy this one tensor
            array = array.copy()
        tensor = torch.from_numpy(array)
        return tensor.view(torch.bfloat16) if dtype == "BF16" else tensor

    def __iter__(self) -> Iterator[str]:
        return iter(self._where)

    def __len__(self) -> int:
        return len(self._where)


def _spans(path: Path, dtypes: dict[str, str]) -> dict[str, tuple[str, int, int]]:
    """Where each tensor's bytes are in the file (whose header ``safe_open`` has checked)."""
    with open(path, "rb") as f:
        size = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(size))
    return {key: (dtype, 8 + size + header[key]["data_offsets"][0], 8 + size + header[key]["data_offsets"][1])
            for key, dtype in dtypes.items()}


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
    """As ``save_pretrained`` writes it: the tied ``lm_head.weight`` left out; the config in the metadata.

    Streamed: the header is made from the shapes alone, then each tensor's
    bytes are written as it is read, so no more than one tensor is held.
    """
    import numpy as np
    import torch

    canonical_of = {HF.key(name): name for name in weights}
    shapes = {key: shape for key, shape in stored_shapes(config, HF).items() if key != TIED[0]}
    metadata = {"format": "pt", CONFIG_METADATA: json.dumps(dataclasses.asdict(config))}
    header: dict[str, Any] = {"__metadata__": metadata}
    offset = 0
    for key, shape in shapes.items():
        stored = weights.stored_dtype(canonical_of[key])
        size = math.prod(shape) * (2 if stored == "bfloat16" else 4)
        header[key] = {"dtype": _STORED[stored], "shape": list(shape),
                       "data_offsets": [offset, offset + size]}
        offset += size
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # the data starts 8-byte aligned, as the safetensors package writes it
    with open(path, "wb") as f:
        f.write(len(text).to_bytes(8, "little") + text)
        for key, tensor in from_canonical(weights, HF):
            if key == TIED[0]:
                continue
            tensor = tensor.contiguous()
            if tensor.nbytes != header[key]["data_offsets"][1] - header[key]["data_offsets"][0]:
                raise AssertionError(f"{key} is {tensor.dtype} {list(tensor.shape)}, not as in the header")
            array = (tensor.view(torch.int16) if tensor.dtype == torch.bfloat16 else tensor).numpy()
            f.write(np.ascontiguousarray(array.astype(array.dtype.newbyteorder("<"), copy=False)).data)
