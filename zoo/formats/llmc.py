"""llm.c's model file (``gpt2_124M.bin``): read and write.

The file is a header of 256 little-endian int32 (magic 20240326, version,
maxT, V, L, NH, C, Vp, then zeros) and the parameters, flat, in the order and
shapes of :data:`LAYOUT`: version 3 stores them as float32, version 5 as
bfloat16. The names, order, padding and orientation come from that layout;
this module only moves bytes and checks the header against the file's size.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from .._config import GPT2Config
from .._errors import ConfigError, WeightsSourceError
from ..weight_map import CanonicalWeights, Layout, from_canonical, to_canonical
from ._base import Prepared, refuse_layout, stored_shapes

__all__ = ["DESCRIPTION", "EPSILON", "LAYOUT", "MAGIC", "read", "recognise", "write"]

MAGIC = 20240326
HEADER_INTS = 256
HEADER_BYTES = 4 * HEADER_INTS
VERSIONS = {3: "float32", 5: "bfloat16"}  # llm.c's train_gpt2.py write_model
_ITEM_BYTES = {"float32": 4, "bfloat16": 2}
#: what this module reads, as errors name it
DESCRIPTION = f"an llm.c model file (int32 magic {MAGIC})"
#: llm.c's other files, which share the header but hold no model
OTHER_MAGICS = {
    20240327: "an llm.c debug state file (train_gpt2.py write_state)",
    20240328: "an llm.c tokenizer file (train_gpt2.py write_tokenizer)",
    20240520: "an llm.c token data file",
}
#: llm.c's layernorm_forward hard-codes it, and the header has no field for another
EPSILON = 1e-5

# fmt: off
#: llm.c's ``gpt2_124M.bin`` (``train_gpt2.py`` write_model, ``train_gpt2.c`` fill_in_parameter_sizes):
#: one flat block per kind, all layers of a kind together (``qkvw[{i}]`` is layer i of the
#: (L, 3C, C) block ``qkvw``), nn.Linear orientation, wte padded to a multiple of 128 rows, no lm_head.
LAYOUT = Layout("llmc", writes_tied=False, vocab_multiple=128, kind_major=True, names=(
    ("wte.weight",               "wte"),
    ("wpe.weight",               "wpe"),
    ("h.{i}.ln_1.weight",        "ln1w[{i}]"),
    ("h.{i}.ln_1.bias",          "ln1b[{i}]"),
    ("h.{i}.attn.c_attn.weight", "qkvw[{i}]"),
    ("h.{i}.attn.c_attn.bias",   "qkvb[{i}]"),
    ("h.{i}.attn.c_proj.weight", "attprojw[{i}]"),
    ("h.{i}.attn.c_proj.bias",   "attprojb[{i}]"),
    ("h.{i}.ln_2.weight",        "ln2w[{i}]"),
    ("h.{i}.ln_2.bias",          "ln2b[{i}]"),
    ("h.{i}.mlp.c_fc.weight",    "fcw[{i}]"),
    ("h.{i}.mlp.c_fc.bias",      "fcb[{i}]"),
    ("h.{i}.mlp.c_proj.weight",  "fcprojw[{i}]"),
    ("h.{i}.mlp.c_proj.bias",    "fcprojb[{i}]"),
    ("ln_f.weight",              "lnfw"),
    ("ln_f.bias",                "lnfb"),
))
# fmt: on


def _read_header(path: Path) -> tuple[GPT2Config, str, int]:
    import numpy as np

    where = repr(str(path))
    size = path.stat().st_size
    with open(path, "rb") as f:
        raw = f.read(HEADER_BYTES)
    if len(raw) < 4:
        raise WeightsSourceError(f"{where} is truncated: {size} bytes, not even llm.c's magic number")
    header = np.frombuffer(raw[: len(raw) // 4 * 4], dtype="<i4")
    magic = int(header[0])
    if magic != MAGIC:
        what = OTHER_MAGICS.get(magic)
        if what is not None:
            raise WeightsSourceError(f"{where} is {what} (magic {magic}), not an llm.c model file (magic {MAGIC})")
        raise WeightsSourceError(f"{where} has magic {magic}, not llm.c's model magic {MAGIC}")
    if len(raw) < HEADER_BYTES:
        raise WeightsSourceError(
            f"{where} is truncated: {size} bytes, shorter than llm.c's {HEADER_BYTES}-byte header"
        )
    version = int(header[1])
    if version not in VERSIONS:
        known = ", ".join(f"{v} ({dtype})" for v, dtype in VERSIONS.items())
        raise WeightsSourceError(
            f"{where} is llm.c model version {version}; the zoo reads versions {known}. "
            "Re-export it with llm.c's train_gpt2.py (write_model)"
        )
    max_t, vocab, layers, heads, width, padded = (int(v) for v in header[2:8])
    fields = {"maxT": max_t, "V": vocab, "L": layers, "NH": heads, "C": width, "Vp": padded}
    try:
        config = GPT2Config(vocab_size=vocab, n_positions=max_t, n_embd=width, n_layer=layers, n_head=heads,
                            layer_norm_epsilon=EPSILON)
    except ConfigError as exc:
        raise WeightsSourceError(f"{where} has an impossible llm.c header {fields}: {exc}") from None
    if padded != LAYOUT.padded_vocab(config):
        raise WeightsSourceError(
            f"{where} has an llm.c header with padded vocab Vp={padded} for V={vocab}; llm.c pads to the "
            f"next multiple of {LAYOUT.vocab_multiple}, {LAYOUT.padded_vocab(config)}"
        )
    dtype = VERSIONS[version]
    # GPT2Config.n_params with the padded vocabulary: arithmetic only, so a header declaring 10**9
    # layers is measured against the file before any name or shape is built for them
    count = (padded + max_t) * width + layers * (12 * width * width + 13 * width) + 2 * width
    expected = HEADER_BYTES + count * _ITEM_BYTES[dtype]
    if size != expected:
        problem = "is truncated" if size < expected else "has more data than its header describes"
        raise WeightsSourceError(
            f"{where} {problem}: its header {fields} (version {version}, {dtype}) needs "
            f"{expected} bytes, the file has {size}; the shapes do not match the header"
        )
    return config, dtype, padded


class LlmcSource(Mapping[str, Any]):
    """An llm.c file as a lazy state dict in :data:`LAYOUT` keys, memory-mapped, one view per tensor."""

    def __init__(self, path: Path, config: GPT2Config, dtype: str) -> None:
        import numpy as np

        # copy-on-write: writable views for torch.from_numpy, and the file is never written
        self._data = np.memmap(path, dtype=np.uint8, mode="c")
        self._dtype = dtype
        self._where: dict[str, tuple[int, tuple[int, ...]]] = {}
        offset = HEADER_BYTES
        for key, shape in stored_shapes(config, LAYOUT).items():
            self._where[key] = (offset, shape)
            offset += math.prod(shape) * _ITEM_BYTES[dtype]

    def shape_of(self, key: str) -> tuple[int, ...]:
        return self._where[key][1]

    def __getitem__(self, key: str) -> Any:
        import numpy as np
        import torch

        offset, shape = self._where[key]
        raw = self._data[offset : offset + math.prod(shape) * _ITEM_BYTES[self._dtype]]
        if self._dtype == "float32":
            return torch.from_numpy(raw.view("<f4").reshape(shape))
        return torch.from_numpy(raw.view(np.int16).reshape(shape)).view(torch.bfloat16)

    def __iter__(self) -> Iterator[str]:
        return iter(self._where)

    def __len__(self) -> int:
        return len(self._where)


def recognise(path: Path, head: bytes) -> bool:
    """llm.c's model magic, or the magic of its other files (which :func:`read` names)."""
    return len(head) >= 4 and int.from_bytes(head[:4], "little") in (MAGIC, *OTHER_MAGICS)


def read(
    path: Path, *, config: GPT2Config | None, layout: Layout | None, dequantize: bool
) -> tuple[GPT2Config, CanonicalWeights]:
    """The config (from the header, unless ``config`` is given) and checked canonical weights of an llm.c file."""
    refuse_layout(path, layout, "llmc")
    found, dtype, _ = _read_header(path)
    return config or found, to_canonical(LlmcSource(path, found, dtype), config or found, LAYOUT)


def write(weights: Prepared, config: GPT2Config, path: Path, dtype: str) -> None:
    """Write canonical ``weights`` (already in ``dtype``) as an llm.c model file of that version."""
    import numpy as np
    import torch

    version = {d: v for v, d in VERSIONS.items()}[dtype]
    header = np.zeros(HEADER_INTS, dtype="<i4")
    header[:8] = (MAGIC, version, config.n_positions, config.vocab_size, config.n_layer, config.n_head,
                  config.n_embd, LAYOUT.padded_vocab(config))
    target = getattr(torch, dtype)
    with open(path, "wb") as f:
        f.write(header.tobytes())
        for _, tensor in from_canonical(weights, LAYOUT):
            tensor = torch.as_tensor(tensor).to(target).contiguous()
            if target is torch.bfloat16:
                tensor = tensor.view(torch.int16)  # NumPy has no bfloat16: write its bits
            array = tensor.numpy()
            f.write(np.ascontiguousarray(array.astype(array.dtype.newbyteorder("<"), copy=False)).data)
