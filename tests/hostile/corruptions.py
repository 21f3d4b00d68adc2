"""Hypothesis strategies that corrupt valid small weight files: headers, sizes, dtypes, offsets and bytes.

``corrupted_files(fmt)`` draws a :class:`Corrupted`: the files of one reader's
input with one to three edits, chosen where a format keeps its structure
(headers, tensor infos, zip records) more often than in its payload.
"""

from __future__ import annotations

import functools
import io
import json
import struct
import tempfile
import zipfile
from pathlib import Path
from typing import Any, NamedTuple

import gguf
import torch
from hostile_files import build
from hypothesis import strategies as st

Ranges = tuple[tuple[int, int], ...]

#: values a corrupt size or offset field tends to take
EDGE_INTS = (0, 1, 2, 3, 5, 127, 128, 255, 256, 1024, 10**6, 10**9, 2**15, 2**16 - 1, 2**31 - 1, 2**31,
             2**32 - 1, 2**32, 2**62, 2**63 - 1, 2**63, 2**64 - 1)
JSON_VALUES = st.one_of(
    st.sampled_from([None, True, False, 0, -1, 1.5, float("1e308"), "", "F32", "I32", "U32", "BOOL", "C64",
                     "F8_E4M3", "BF16", "F64", [], {}, [0], [-1, 5], [2**63, 1], [0, 2**64]]),
    st.sampled_from(EDGE_INTS),
    st.integers(-(2**64), 2**64),
    st.text(max_size=8),
)


class Original(NamedTuple):
    """A valid input: its files by name (relative to the reader's path), and where their structure lies."""

    name: str  # the file or folder the reader is given
    files: dict[str, bytes]  # "" for a lone file
    structure: dict[str, Ranges]


class Corrupted:
    """A corrupted input: its files and the edits made to them (its repr, as a failure reports it)."""

    def __init__(self, name: str, files: dict[str, bytes], edits: tuple[str, ...]) -> None:
        self.name, self.files, self.edits = name, files, edits

    def __repr__(self) -> str:
        return f"Corrupted({self.name!r}, edits={list(self.edits)!r})"

    def write(self, folder: Path) -> Path:
        path = folder / self.name
        if "" in self.files:
            path.write_bytes(self.files[""])
            return path
        path.mkdir()
        for name, data in self.files.items():
            (path / name).write_bytes(data)
        return path


def _safetensors_structure(data: bytes) -> Ranges:
    return ((0, 8 + int.from_bytes(data[:8], "little")),)


def _zip_structure(data: bytes) -> Ranges:
    """Everything but the tensors' bytes: local headers, the pickle, the central directory."""
    ranges, start = [], 0
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        for info in sorted(archive.infolist(), key=lambda i: i.header_offset):
            payload = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
            if "/data/" in info.filename:
                ranges.append((start, payload))
                start = payload + info.compress_size
    return (*ranges, (start, len(data)))


def _gguf_structure(path: Path) -> Ranges:
    reader = gguf.GGUFReader(path)
    infos = reader.tensors[0].field.offset
    return ((0, reader.data_offset), (infos, reader.data_offset))  # the tensor infos twice as likely


@functools.cache
def original(fmt: str) -> Original:
    """The valid small input of ``fmt``, written once per process."""
    path = build(fmt, Path(tempfile.mkdtemp(prefix="zoo-fuzz-")))
    if fmt == "hf":
        files = {p.name: p.read_bytes() for p in path.iterdir()}
        structure = {"model.safetensors": _safetensors_structure(files["model.safetensors"]),
                     "config.json": ((0, len(files["config.json"])),)}
        return Original(path.name, files, structure)
    data = path.read_bytes()
    structure = {"safetensors": lambda: _safetensors_structure(data), "nanogpt": lambda: _zip_structure(data),
                 "llmc": lambda: ((0, 1024), (0, 32)), "gguf": lambda: _gguf_structure(path)}[fmt]()
    return Original(path.name, {"": data}, {"": structure})


@st.composite
def byte_edits(draw: st.DrawFn, data: bytes, structure: Ranges) -> tuple[bytes, str]:
    """One edit of ``data``: a flipped bit, an edge-value integer, a truncation, an extension or a splice."""
    buf = bytearray(data)

    def position() -> int:  # an earlier edit may have truncated the file
        last = len(buf) - 1
        if draw(st.integers(0, 9)) < 8:  # mostly where the structure is
            start, end = draw(st.sampled_from(structure))
            return draw(st.integers(min(start, last), max(min(start, last), min(end, len(buf)) - 1)))
        return draw(st.integers(0, last))

    kinds = ["flip", "int", "truncate", "extend", "splice", "zero"] if buf else ["extend"]
    kind = draw(st.sampled_from(kinds))
    if kind == "flip":
        at, bit = position(), draw(st.integers(0, 7))
        buf[at] ^= 1 << bit
        return bytes(buf), f"flip bit {bit} of byte {at}"
    if kind == "int":
        at, width = position(), draw(st.sampled_from([1, 2, 4, 8]))
        value = draw(st.sampled_from(EDGE_INTS)) % 2 ** (8 * width)
        buf[at : at + width] = value.to_bytes(width, "little")
        return bytes(buf[: len(data)]), f"write {value} as {width} bytes at {at}"
    if kind == "truncate":
        at = position()
        return bytes(buf[:at]), f"truncate to {at} bytes"
    if kind == "extend":
        extra = draw(st.binary(min_size=1, max_size=64))
        return bytes(buf) + extra, f"append {len(extra)} bytes"
    if kind == "zero":
        at, n = position(), draw(st.integers(1, 64))
        buf[at : at + n] = bytes(len(buf[at : at + n]))
        return bytes(buf), f"zero {n} bytes at {at}"
    at, to, n = position(), position(), draw(st.integers(1, 16))
    buf[to : to + n] = data[at : at + n]
    return bytes(buf[: len(data)]), f"copy {n} bytes from {at} to {to}"


@st.composite
def json_edits(draw: st.DrawFn, value: Any) -> tuple[Any, str]:
    """``value`` (parsed JSON) with one leaf or member replaced, removed or added."""
    if isinstance(value, (dict, list)) and value and draw(st.integers(0, 3)):
        keys = list(value) if isinstance(value, dict) else list(range(len(value)))
        key = draw(st.sampled_from(keys))
        action = draw(st.sampled_from(["descend", "descend", "replace", "delete"]))
        copy = dict(value) if isinstance(value, dict) else list(value)
        if action == "delete":
            del copy[key]
            return copy, f"delete {key!r}"
        if action == "descend":
            inner, what = draw(json_edits(value[key]))
            copy[key] = inner
            return copy, f"{key!r}: {what}"
        copy[key] = draw(JSON_VALUES)
        return copy, f"{key!r} = {copy[key]!r:.40}"
    if isinstance(value, dict) and draw(st.booleans()):
        return {**value, draw(st.text(max_size=8)): draw(JSON_VALUES)}, "add a member"
    replaced = draw(JSON_VALUES)
    return replaced, f"replace {value!r:.20} with {replaced!r:.40}"


@st.composite
def safetensors_header_edits(draw: st.DrawFn, data: bytes) -> tuple[bytes, str]:
    """A safetensors file whose JSON header (dtypes, shapes, offsets, metadata) had one value changed."""
    size = int.from_bytes(data[:8], "little")
    header, what = draw(json_edits(json.loads(data[8 : 8 + size])))
    encoded = json.dumps(header).encode()
    encoded += b" " * (-len(encoded) % 8)
    return struct.pack("<Q", len(encoded)) + encoded + data[8 + size :], f"header: {what}"


@st.composite
def checkpoint_edits(draw: st.DrawFn, data: bytes) -> tuple[bytes, str]:
    """A nanoGPT checkpoint saved again with one value of its dict changed (a tensor's dtype or shape too)."""
    checkpoint = torch.load(io.BytesIO(data), weights_only=True)
    part = draw(st.sampled_from(["model", "model_args"]))
    inner = checkpoint[part]
    key = draw(st.sampled_from(sorted(inner)))
    if part == "model":
        tensor = inner[key]
        choice = draw(st.sampled_from(["dtype", "shape", "value", "nan", "delete"]))
        if choice == "dtype":
            dtype = draw(st.sampled_from([torch.int32, torch.int64, torch.bool, torch.complex64, torch.float16,
                                          torch.bfloat16, torch.float64, torch.uint8]))
            inner[key] = tensor.to(dtype)
        elif choice == "shape":
            inner[key] = tensor.flatten()[: max(1, tensor.numel() // 2)]
        elif choice == "value":
            inner[key] = draw(JSON_VALUES)
        elif choice == "nan":
            inner[key] = tensor.clone().fill_(float("nan"))
        else:
            del inner[key]
        what = f"model[{key!r}]: {choice}"
    else:
        inner[key] = draw(JSON_VALUES)
        what = f"model_args[{key!r}] = {inner[key]!r:.40}"
    out = io.BytesIO()
    torch.save(checkpoint, out)
    return out.getvalue(), what


def _edit(draw: st.DrawFn, fmt: str, name: str, data: bytes, structure: Ranges) -> tuple[bytes, str]:
    pristine = data == original(fmt).files[name]  # the structured edits start from a valid file
    if pristine and fmt in ("safetensors", "hf") and name in ("", "model.safetensors") and draw(st.booleans()):
        return draw(safetensors_header_edits(data))
    if pristine and fmt == "nanogpt" and draw(st.booleans()):
        return draw(checkpoint_edits(data))
    if name == "config.json":
        config, what = draw(json_edits(json.loads(data)))
        return json.dumps(config).encode(), f"config.json: {what}"
    return draw(byte_edits(data, structure))


@st.composite
def corrupted_files(draw: st.DrawFn, fmt: str) -> Corrupted:
    """The valid input of ``fmt`` with one to three edits (for a folder, to any of its files, or a shard index)."""
    valid = original(fmt)
    files, edits = dict(valid.files), []
    for _ in range(draw(st.integers(1, 3))):
        if fmt == "hf" and draw(st.integers(0, 5)) == 0:
            index, what = draw(json_edits({"metadata": {}, "weight_map": {"wte.weight": "model.safetensors"}}))
            files["model.safetensors.index.json"] = json.dumps(index).encode()
            edits.append(f"index: {what}")
            continue
        name = draw(st.sampled_from(sorted(n for n in files if n in valid.structure)))
        files[name], what = _edit(draw, fmt, name, files[name], valid.structure[name])
        edits.append(f"{name or valid.name}: {what}")
    return Corrupted(valid.name, files, tuple(edits))
