"""Weight formats: one module each, and the one table :data:`FORMATS` that ``zoo.load``,
``zoo.convert`` and ``zoo convert`` read.

Every format module has the same small surface:

- ``DESCRIPTION``: what it reads, as errors name it (``"a GGUF file (magic b'GGUF')"``);
- ``recognise(path, head) -> bool``: whether the file or folder at ``path``,
  whose first bytes are ``head``, is in this format, told by its magic number
  where the format has one, else by its extension (or by being a folder);
  never by the keys inside;
- ``read(path, *, config, layout, dequantize) -> (GPT2Config, CanonicalWeights)``:
  the config and the checked canonical weights, read lazily (headers first,
  tensors one at a time as a model copies them in);
- ``write(weights, config, path, dtype)``: canonical weights, already cast to
  the precisions the format's row declares (:class:`Prepared`), to ``path``.

Its row in :data:`FORMATS` says what the format is: its layout, the precisions
it stores and which tensors take them, the names of its files. A new format
is one module here and one row in the table; nothing else lists formats.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from .._config import GPT2Config
from .._errors import WeightsError
from ..weight_map import HF, NANOGPT, SPEC, TIED, CanonicalWeights, Layout, template_of
from . import gguf, hf, llmc, safetensors, torchfile
from ._base import Prepared

__all__ = ["DTYPES", "DTYPE_ALIASES", "FORMATS", "Q8_0_BLOCK", "Format", "FormatModule", "Prepared"]

#: Q8_0 quantises blocks of 32 values along a row; a row of another length stays float32.
Q8_0_BLOCK = 32


class FormatModule(Protocol):
    """The surface every format module offers (see the module docstring)."""

    DESCRIPTION: str  # what the module reads, as errors name it: "a GGUF file (magic b'GGUF')"

    def recognise(self, path: Path, head: bytes) -> bool: ...

    def read(
        self, path: Path, *, config: GPT2Config | None, layout: Layout | None, dequantize: bool
    ) -> tuple[GPT2Config, CanonicalWeights]: ...

    def write(self, weights: Prepared, config: GPT2Config, path: Path, dtype: str) -> None: ...


@dataclass(frozen=True)
class Format:
    """A weight format: the module that reads and writes it, its layout, the precisions it stores."""

    name: str  # as ``zoo convert --to`` names it
    module: FormatModule
    layout: Layout  # how it writes the canonical tensors
    dtypes: tuple[str, ...]  # the precisions it can store; the first is the default
    suffixes: tuple[str, ...]  # a written file's name ends with one of these; () for a folder
    reduced: tuple[str, ...] | None = None  # canonical templates a reduced dtype applies to; None: all
    epsilon: float | None = None  # the layer_norm_epsilon its programs fix, where its files cannot store one
    summary: str = ""

    @property
    def folder(self) -> bool:
        return not self.suffixes

    def stored_dtype(self, name: str, shape: tuple[int, ...], dtype: str) -> str:
        """The precision canonical tensor ``name`` of ``shape`` is stored in when writing ``dtype``.

        The reduced precision applies to the tensors in ``reduced`` (all where
        it is ``None``); ``q8_0`` also needs rows of a whole number of blocks.
        Every other tensor is stored as float32, exactly.
        """
        if dtype not in self.dtypes:
            raise WeightsError(
                f"the {self.name} format stores {', '.join(self.dtypes)}, not {dtype!r}"
            )
        if self.reduced is not None and template_of(name)[0] not in self.reduced:
            return "float32"
        if dtype == "q8_0" and shape[-1] % Q8_0_BLOCK:
            return "float32"
        return dtype


_MATRICES = (*(t.name for t in SPEC if t.linear), TIED[1])
_F32_BF16 = ("float32", "bfloat16")

# fmt: off
#: Every weight format the zoo reads and writes, by ``zoo convert --to`` name. A path is read by the
#: first row whose module recognises it: a folder, then a .safetensors name, then the magic numbers.
FORMATS: dict[str, Format] = {f.name: f for f in (
    Format("hf", hf, HF, _F32_BF16, (),
           summary="a save_pretrained folder: config.json and model.safetensors (Hugging Face keys, Conv1D)"),
    Format("safetensors", safetensors, HF, _F32_BF16, (".safetensors",),
           summary="one .safetensors file with Hugging Face keys and the config in its metadata"),
    Format("nanogpt", torchfile, NANOGPT, _F32_BF16, (".pt", ".pth", ".ckpt", ".bin"), epsilon=torchfile.EPSILON,
           summary="a nanoGPT checkpoint: torch.save({'model': state_dict, 'model_args': {...}})"),
    Format("llmc", llmc, llmc.LAYOUT, _F32_BF16, (".bin",), epsilon=llmc.EPSILON,
           summary="llm.c's gpt2_124M.bin: 256 int32 header, version 3 (float32) or 5 (bfloat16)"),
    # llama.cpp keeps norms, biases and position embeddings in float32 (1-D, or POS_EMBD)
    Format("gguf", gguf, gguf.LAYOUT, (*_F32_BF16, "q8_0"), (".gguf",), reduced=_MATRICES,
           summary="GGUF for llama.cpp, architecture gpt2, with the GPT-2 tokenizer"),
)}
# fmt: on

#: Every precision some format stores, in the table's order.
DTYPES: tuple[str, ...] = tuple(dict.fromkeys(d for f in FORMATS.values() for d in f.dtypes))
#: Other names ``zoo.convert(dtype=...)`` accepts for them.
DTYPE_ALIASES: Mapping[str, str] = {"fp32": "float32", "float": "float32", "bf16": "bfloat16", "q8": "q8_0"}

