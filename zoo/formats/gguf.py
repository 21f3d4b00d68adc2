"""GGUF for llama.cpp, through the ``gguf`` package: read and write.

Written as llama.cpp's own converter writes a GPT-2 (architecture ``gpt2``):
the tensor names of :data:`LAYOUT`, the ``gpt2.*`` hyper-parameters,
and the GPT-2 tokenizer (byte-level BPE tokens, token types, merges, bos/eos
ids) from the offline files of :func:`zoo._tokenizer.tokenizer_files`. Which
tensor gets which precision is declared by ``FORMATS["gguf"]``; this module
only moves bytes.

``zoo.load`` reads the unquantised types (F32, F16, BF16). Q8_0 is read only
by ``zoo convert``, which dequantises it on purpose.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._config import GPT2Config
from .._errors import ConfigError, WeightsError, WeightsSourceError
from ..weight_map import TIED, CanonicalWeights, Layout, from_canonical, to_canonical
from ._base import Prepared, refuse_layout, stored_shapes

if TYPE_CHECKING:
    import gguf

__all__ = ["DESCRIPTION", "LAYOUT", "MAGIC", "gpt2_vocab", "read", "recognise", "write"]

MAGIC = b"GGUF"
#: what this module reads, as errors name it
DESCRIPTION = f"a GGUF file (magic {MAGIC!r})"
ARCH = "gpt2"
_FILE_TYPES = {"float32": 0, "bfloat16": 32, "q8_0": 7}  # gguf.LlamaFileType ALL_F32, MOSTLY_BF16, MOSTLY_Q8_0
_KINDS = {"float32": "F32", "bfloat16": "BF16", "q8_0": "Q8_0"}  # as gguf.GGMLQuantizationType names them
_UNQUANTISED = ("F32", "F16", "BF16")
_DEQUANTISED = ("Q8_0",)  # what zoo convert reads besides
_GPT2_VOCAB = 50257

# fmt: off
#: llama.cpp's names for a GPT-2 (architecture ``gpt2``, its converter's tensor names). GGUF lists
#: dimensions innermost first, so [n_embd, 3 n_embd] there is nn.Linear's [3 n_embd, n_embd] here.
LAYOUT = Layout("gguf", writes_tied=False, names=(
    ("wte.weight",               "token_embd.weight"),
    ("wpe.weight",               "position_embd.weight"),
    ("h.{i}.ln_1.weight",        "blk.{i}.attn_norm.weight"),
    ("h.{i}.ln_1.bias",          "blk.{i}.attn_norm.bias"),
    ("h.{i}.attn.c_attn.weight", "blk.{i}.attn_qkv.weight"),
    ("h.{i}.attn.c_attn.bias",   "blk.{i}.attn_qkv.bias"),
    ("h.{i}.attn.c_proj.weight", "blk.{i}.attn_output.weight"),
    ("h.{i}.attn.c_proj.bias",   "blk.{i}.attn_output.bias"),
    ("h.{i}.ln_2.weight",        "blk.{i}.ffn_norm.weight"),
    ("h.{i}.ln_2.bias",          "blk.{i}.ffn_norm.bias"),
    ("h.{i}.mlp.c_fc.weight",    "blk.{i}.ffn_up.weight"),
    ("h.{i}.mlp.c_fc.bias",      "blk.{i}.ffn_up.bias"),
    ("h.{i}.mlp.c_proj.weight",  "blk.{i}.ffn_down.weight"),
    ("h.{i}.mlp.c_proj.bias",    "blk.{i}.ffn_down.bias"),
    ("ln_f.weight",              "output_norm.weight"),
    ("ln_f.bias",                "output_norm.bias"),
    (TIED[0],                    "output.weight"),  # optional: llama.cpp ties it to token_embd when absent
))
# fmt: on


@functools.lru_cache(maxsize=1)
def _gpt2_tokenizer() -> tuple[dict[int, str], list[tuple[str, int]]]:
    """GPT-2's tokens by id, and its merges with the id each one makes, from the checked offline files."""
    from .._tokenizer import ENCODER_JSON_SHA256, VOCAB_BPE_SHA256, _check_sha256, tokenizer_files

    encoder_json, vocab_bpe = tokenizer_files()
    _check_sha256(encoder_json, ENCODER_JSON_SHA256)
    _check_sha256(vocab_bpe, VOCAB_BPE_SHA256)
    with open(encoder_json, encoding="utf-8") as f:
        encoder: dict[str, int] = json.load(f)
    with open(vocab_bpe, encoding="utf-8") as f:
        lines = f.read().split("\n")[1:]  # the first line is "#version: 0.2"
    merges = [(line, encoder[line.replace(" ", "")]) for line in lines if line]
    return {i: token for token, i in encoder.items()}, merges


def gpt2_vocab(vocab_size: int) -> tuple[list[str], list[int], list[str]]:
    """Tokens, token types and merges of the GPT-2 tokenizer for a model of ``vocab_size`` ids.

    As llama.cpp's converter does: ids the tokenizer does not have become
    ``[PAD{i}]`` (user-defined), ``<|endoftext|>`` is a control token. A
    smaller vocabulary keeps its first ids and the merges that build only them.
    """
    by_id, all_merges = _gpt2_tokenizer()
    eot = _GPT2_VOCAB - 1
    tokens = [by_id.get(i, f"[PAD{i}]") for i in range(vocab_size)]
    types = [3 if i == eot else 1 if i in by_id else 4 for i in range(vocab_size)]  # CONTROL, NORMAL, USER_DEFINED
    merges = [merge for merge, made in all_merges if made < vocab_size]
    return tokens, types, merges


def write(weights: Prepared, config: GPT2Config, path: Path, dtype: str) -> None:
    """Write canonical ``weights`` (bfloat16 tensors already rounded; float32 for q8_0) as GGUF."""
    import gguf
    import numpy as np
    import torch

    writer = gguf.GGUFWriter(path, ARCH)
    writer.add_name(ARCH)  # general.name, general.quantization_version: as llama.cpp's converter writes them
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    writer.add_context_length(config.n_positions)
    writer.add_embedding_length(config.n_embd)
    writer.add_feed_forward_length(4 * config.n_embd)
    writer.add_block_count(config.n_layer)
    writer.add_head_count(config.n_head)
    writer.add_layer_norm_eps(config.layer_norm_epsilon)
    writer.add_file_type(_FILE_TYPES[dtype])
    tokens, types, merges = gpt2_vocab(config.vocab_size)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("gpt-2")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    writer.add_bos_token_id(config.eos_token_id)
    writer.add_eos_token_id(config.eos_token_id)
    writer.add_add_bos_token(False)  # GPT-2 prepends nothing

    # streamed: every tensor's info first, from the shapes alone, then each tensor's bytes as it is read
    canonical_of = {LAYOUT.key(name): name for name in weights}
    for key, shape in stored_shapes(config, LAYOUT).items():
        kind = gguf.GGMLQuantizationType[_KINDS[weights.stored_dtype(canonical_of[key])]]
        block, type_size = gguf.GGML_QUANT_SIZES[kind]
        writer.add_tensor_info(key, shape, np.dtype(np.float32), math.prod(shape) // block * type_size, kind)
    try:
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        for key, tensor in from_canonical(weights, LAYOUT):
            tensor = torch.as_tensor(tensor).contiguous()
            stored = weights.stored_dtype(canonical_of[key])
            if stored == "bfloat16":  # the bits torch rounded to, as bytes
                writer.write_tensor_data(tensor.to(torch.bfloat16).view(torch.int16).numpy().view(np.uint8))
            elif stored == "q8_0":
                array = tensor.to(torch.float32).numpy()
                _check_q8_0_range(key, array)
                writer.write_tensor_data(gguf.quants.quantize(array, gguf.GGMLQuantizationType.Q8_0))
            else:
                writer.write_tensor_data(np.ascontiguousarray(tensor.to(torch.float32).numpy()))
    finally:
        writer.close()


def _check_q8_0_range(key: str, array: Any) -> None:
    import numpy as np

    largest = float(np.abs(array).max()) if array.size else 0.0
    if largest / 127 > float(np.finfo(np.float16).max):
        raise WeightsError(
            f"{key} holds a value of magnitude {largest:.3g}, beyond what Q8_0 can store (its block "
            "scale is a float16, so at most 127 * 65504); write --dtype bfloat16 or float32 instead"
        )


def _field(reader: gguf.GGUFReader, key: str, where: str) -> Any:
    import gguf

    field = reader.get_field(key)
    if field is None:
        raise WeightsSourceError(f"{where} lacks the GGUF metadata key {key!r}; it was not written for gpt2")
    if len(field.data) != 1 or len(field.types) != 1 or field.types[0] == gguf.GGUFValueType.ARRAY:
        raise WeightsSourceError(f"{where} stores {key!r} as an array, not one value; the file is corrupt")
    value = field.parts[field.data[0]]
    if field.types[0] == gguf.GGUFValueType.STRING:
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise WeightsSourceError(f"{where} stores {key!r} as bytes that are not UTF-8; the file is corrupt") from exc
    return value[0].item()


def _size_field(reader: gguf.GGUFReader, key: str, where: str) -> int:
    value = _field(reader, key, where)
    if isinstance(value, bool) or not isinstance(value, int):
        raise WeightsSourceError(f"{where} stores {key}={value!r:.60}, not a size; the file is corrupt")
    return value


def _check_tensor_infos(reader: gguf.GGUFReader, where: str) -> None:
    """Every tensor's dims, type, offset and byte count agree with the file, as llama.cpp's reader demands.

    The ``gguf`` package trusts the tensor infos; llama.cpp (``gguf.cpp``)
    refuses a file unless each tensor has 1 to 4 dimensions, a row of whole
    blocks, an aligned offset, and starts exactly where the one before it ends
    (padded to the alignment), and the data fits the file. So does this.
    """
    import gguf

    alignment = int(reader.alignment)
    expected = 0  # where the next tensor starts, from the start of the data section
    end = 0  # where the last one ends, unpadded
    for tensor in reader.tensors:
        _, _, n_dims_part, dims_part, _, offset_part = tensor.field.parts
        name, n_dims, dims = tensor.name, int(n_dims_part[0]), [int(d) for d in dims_part]
        offset, kind = int(offset_part[0]), tensor.tensor_type
        block, type_size = gguf.GGML_QUANT_SIZES[kind]
        problem = None
        if not 1 <= n_dims <= 4 or len(dims) != n_dims:
            problem = f"has {n_dims} dimensions (GGUF allows 1 to 4)"
        elif min(dims) < 1:
            problem = f"has dimensions {dims}"
        elif dims[0] % block:
            problem = f"has rows of {dims[0]} values, not a whole number of {kind.name} blocks of {block}"
        elif offset % alignment:
            problem = f"starts at offset {offset}, not a multiple of the alignment {alignment}"
        elif offset != expected:
            problem = f"starts at offset {offset}, where the tensor before it ends at {expected}"
        if problem is not None:
            raise WeightsSourceError(f"{where} is corrupt: tensor {name!r} ({kind.name}) {problem}")
        count = 1
        for d in dims:
            count *= d
        end = offset + count // block * type_size
        expected = -(-end // alignment) * alignment
    size, start = len(reader.data), int(reader.data_offset)
    if not start + end <= size <= start + expected:
        problem = "is truncated" if size < start + end else "has more data than its tensor infos describe"
        raise WeightsSourceError(
            f"{where} {problem}: its tensors need {start + end} bytes, the file has {size}; the file is corrupt"
        )


class GGUFSource(Mapping[str, Any]):
    """The tensors of a GGUF file as a lazy state dict in :data:`LAYOUT` keys, memory-mapped."""

    def __init__(self, tensors: dict[str, Any]) -> None:
        self._tensors = tensors  # name -> gguf ReaderTensor

    def shape_of(self, key: str) -> tuple[int, ...]:
        return tuple(int(d) for d in reversed(self._tensors[key].shape))  # GGUF lists the innermost first

    def __getitem__(self, key: str) -> Any:
        import gguf
        import numpy as np
        import torch

        tensor = self._tensors[key]
        kind = tensor.tensor_type.name
        if kind in ("F32", "F16"):
            return torch.from_numpy(tensor.data)
        if kind == "BF16":
            return torch.from_numpy(tensor.data.view(np.int16)).view(torch.bfloat16)
        return torch.from_numpy(gguf.quants.dequantize(tensor.data, tensor.tensor_type))

    def __iter__(self) -> Iterator[str]:
        return iter(self._tensors)

    def __len__(self) -> int:
        return len(self._tensors)


def recognise(path: Path, head: bytes) -> bool:
    """GGUF's magic number."""
    return head[:4] == MAGIC


def read(
    path: Path, *, config: GPT2Config | None, layout: Layout | None, dequantize: bool
) -> tuple[GPT2Config, CanonicalWeights]:
    """The config (from the ``gpt2.*`` metadata, unless ``config`` is given) and checked canonical weights.

    :param dequantize: also read Q8_0 tensors, as float32 (``zoo convert`` does;
        ``zoo.load`` does not, so a quantised file is never loaded by surprise).
    """
    import gguf
    import numpy as np

    refuse_layout(path, layout, "gguf")
    where = repr(str(path))
    try:
        # copy-on-write: writable views for torch.from_numpy, and the file is never written
        reader = gguf.GGUFReader(path, "c")
    except Exception as exc:  # the gguf package raises ValueError, IndexError, OSError... for bad files
        with open(path, "rb") as f:
            head = f.read(4)
        if head != MAGIC:
            raise WeightsSourceError(f"{where} is not a GGUF file: it starts with {head!r}, not {MAGIC!r}") from exc
        raise WeightsSourceError(
            f"cannot read GGUF file {where}: it is truncated or corrupt ({type(exc).__name__}: {exc})"
        ) from exc
    _check_tensor_infos(reader, where)
    arch = _field(reader, "general.architecture", where)
    if arch != ARCH:
        raise WeightsSourceError(f"{where} holds a {arch!r} model, not {ARCH!r} (GPT-2)")
    tensors = {t.name: t for t in reader.tensors}
    readable = _UNQUANTISED + (_DEQUANTISED if dequantize else ())
    kinds = {t.tensor_type.name for t in tensors.values()}
    if not kinds <= set(readable):
        other = ", ".join(sorted(kinds - set(readable)))
        if not dequantize and kinds <= set(_UNQUANTISED + _DEQUANTISED):
            raise WeightsError(
                f"{where} is quantised ({other}); zoo.load reads unquantised GGUF ({', '.join(_UNQUANTISED)}). "
                f"Dequantise it first: zoo convert {path} model.safetensors --to safetensors, "
                "then load model.safetensors"
            )
        raise WeightsSourceError(
            f"{where} holds tensor types {other}, which the zoo cannot read; it reads "
            f"{', '.join(_UNQUANTISED + _DEQUANTISED)}"
        )
    wte = LAYOUT.key(TIED[1])
    if wte not in tensors:
        raise WeightsSourceError(f"{where} holds no {wte!r} tensor, so its vocabulary size is unknown")
    n_embd = _size_field(reader, f"{ARCH}.embedding_length", where)
    ffn = _size_field(reader, f"{ARCH}.feed_forward_length", where)
    if ffn != 4 * n_embd:
        raise ConfigError(f"{where} has feed_forward_length={ffn}; GPT-2 uses 4 * n_embd = {4 * n_embd}")
    eps = _field(reader, f"{ARCH}.attention.layer_norm_epsilon", where)
    if isinstance(eps, (bool, str)):
        raise WeightsSourceError(f"{where} stores layer_norm_epsilon={eps!r:.60}, not a number; the file is corrupt")
    try:
        found = GPT2Config(
            vocab_size=int(tensors[wte].shape[-1]),
            n_positions=_size_field(reader, f"{ARCH}.context_length", where),
            n_embd=n_embd,
            n_layer=_size_field(reader, f"{ARCH}.block_count", where),
            n_head=_size_field(reader, f"{ARCH}.attention.head_count", where),
            layer_norm_epsilon=float(str(np.float32(eps))),  # stored as float32: its shortest decimal
        )
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    return config or found, to_canonical(GGUFSource(tensors), config or found, LAYOUT)
