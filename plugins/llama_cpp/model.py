"""GPT-2 run by llama.cpp through llama-cpp-python's bindings to its C API, on GGUF written by the zoo.

An import writes the weights as GGUF with ``zoo.convert(..., to="gguf")``
(F32 or BF16), or as F32 and then through llama.cpp's own quantiser
(``llama_model_quantize``, Q8_0 or Q4_0), as a llama.cpp user would make the
file; the model is loaded from it, and the file deleted.

The C API is spoken directly rather than through ``llama_cpp.Llama``: one
``llama_batch`` carries every row of a batch (sequence ids ``0..B-1``) and
asks for the logits of every token. Only a row's real tokens are decoded: a
left-padded row's padding is never given to llama.cpp, and its real tokens
take positions ``cumsum(mask) - 1`` in their sequence, as Hugging Face
numbers them. The KV cache is llama.cpp's own memory: ``input_pos`` going
back removes the sequence's positions from there on
(``llama_memory_seq_rm``). It is stored at the model's precision for F32 and
BF16 (llama.cpp's default, F16, for the quantised files).
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import logging
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

import zoo
from zoo.host import HostGPT2, float32_copies, initial_weights, placement

if TYPE_CHECKING:
    import torch

log = logging.getLogger("zoo")

_GGML_TYPE_BF16 = 30  # ggml.h; llama_cpp exports only some of the GGML_TYPE_* constants
_PAD = 256  # llama.cpp rounds context sizes up to this
MIN_VOCAB = 256  # ids 0-255 are GPT-2's bytes; a vocabulary with no merge beyond them does not load
#: scheme -> (the GGUF zoo.convert writes, llama.cpp's quantisation of it or None)
SCHEMES = {"float32": ("float32", None), "bfloat16": ("bfloat16", None),
           "q8_0": ("float32", "LLAMA_FTYPE_MOSTLY_Q8_0"), "q4_0": ("float32", "LLAMA_FTYPE_MOSTLY_Q4_0")}


def _to_log(level: int, text: bytes, user_data: Any) -> None:
    log.debug("llama.cpp: %s", text.decode("utf-8", "replace").rstrip())


_KEEP_ALIVE: list[Any] = []  # the log callback, which llama.cpp calls for as long as the process lives


@functools.cache
def bindings() -> Any:
    """The bindings, with llama.cpp's log sent to the zoo's logger at DEBUG (it writes to stderr otherwise)."""
    import llama_cpp

    callback = llama_cpp.llama_log_callback(_to_log)
    llama_cpp.llama_log_set(callback, ctypes.c_void_p(0))
    _KEEP_ALIVE.append(callback)
    llama_cpp.llama_backend_init()
    return llama_cpp


def quantise(f32: Path, out: Path, ftype: str, threads: int) -> None:
    """llama.cpp's own quantiser: the F32 GGUF ``f32`` as ``ftype`` (``LLAMA_FTYPE_MOSTLY_Q8_0``...) at ``out``."""
    llama_cpp = bindings()
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, ftype)
    params.nthread = threads
    status = llama_cpp.llama_model_quantize(str(f32).encode(), str(out).encode(), ctypes.byref(params))
    if status != 0:
        raise zoo.WeightsError(f"llama.cpp could not quantise {f32} to {ftype} (status {status}); "
                               "run with --log-level debug to see llama.cpp's own messages")


def _round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


class LlamaCppGPT2(HostGPT2):
    """``zoo.GPT2`` run by llama.cpp on a GGUF file of its weights, loaded on the first forward after an import."""

    def __init__(self, config: zoo.GPT2Config, scheme: str = "float32") -> None:
        if scheme not in SCHEMES:
            raise ValueError(f"unknown scheme {scheme!r}; choose from {', '.join(SCHEMES)}")
        self.config, self.scheme = config, scheme
        self.weights: dict[str, np.ndarray] = {}
        self.threads: int | None = None  # None: torch.get_num_threads() when the context is made
        self.model: Any = None
        # two contexts, so that a full forward leaves the KV cache alone: "full" and "cache" -> (context, sequences)
        self.contexts: dict[str, tuple[Any, int]] = {}
        self.max_batch_size = 0
        self.max_seq_length: int | None = None
        self._written = 0  # slots written since setup_caches()
        self._real: np.ndarray | None = None  # (B, slots written): which slots hold real tokens

    @classmethod
    def build(cls, config: zoo.GPT2Config, *, device: Any = "cpu", dtype: Any = None,
              weights: Mapping[str, Any] | None = None, scheme: str = "float32") -> LlamaCppGPT2:
        if scheme in ("float32", "bfloat16"):  # the dtype picks the GGUF: F32 or BF16
            scheme = placement("the llama.cpp variant", device, dtype, ("float32", "bfloat16"))
        else:
            placement(f"llama.cpp-{scheme}", device, dtype)
        if config.vocab_size <= MIN_VOCAB:
            raise zoo.CapabilityError(
                f"llama.cpp cannot load a GPT-2 vocabulary of {config.vocab_size} ids: its BPE loader needs at "
                f"least one merge, and GPT-2's first merge makes id {MIN_VOCAB}; use vocab_size > {MIN_VOCAB}")
        model = cls(config, scheme)
        model.import_weights(initial_weights(config, weights))
        return model

    @property
    def dtype(self) -> torch.dtype:
        import torch

        return torch.bfloat16 if self.scheme == "bfloat16" else torch.float32

    # -- weights
    def import_weights(self, weights: Mapping[str, Any]) -> None:
        own = float32_copies(weights, self.config)
        self._free()
        self.weights = own
        self.max_seq_length, self._written, self._real = None, 0, None

    def export_weights(self) -> dict[str, torch.Tensor]:
        """Copies of the float32 weights imported (the GGUF's own are not read back)."""
        import torch

        return {name: torch.from_numpy(array.copy()) for name, array in self.weights.items()}

    def weight_bytes(self) -> int:
        """Bytes of the tensors llama.cpp holds (``llama_model_size``: Q8_0 and Q4_0 with their block scales)."""
        self._load()
        return int(bindings().llama_model_size(self.model))

    def _load(self) -> None:
        if self.model is not None:
            return
        llama_cpp = bindings()
        gguf_dtype, ftype = SCHEMES[self.scheme]
        with tempfile.TemporaryDirectory(prefix="zoo-llama-cpp-") as tmp:
            path = zoo.convert(self.weights, Path(tmp) / "gpt2.gguf", to="gguf", dtype=gguf_dtype,
                               config=self.config, layout="canonical")
            if ftype is not None:
                quantised = Path(tmp) / f"gpt2-{self.scheme}.gguf"
                quantise(path, quantised, ftype, self._threads())
                path = quantised
            params = llama_cpp.llama_model_default_params()
            params.n_gpu_layers = 0
            params.use_mmap = False  # read into memory: the file goes with the folder
            # llama.cpp's extra CPU buffer types (AMX, repacked Q8_0) crashed in llama_decode on this CPU
            # (AMX-INT8, llama-cpp-python 0.3.36): the quantised files run on its plain CPU kernels
            params.use_extra_bufts = ftype is None
            self.model = llama_cpp.llama_model_load_from_file(str(path).encode(), params)
        if not self.model:
            self.model = None
            raise zoo.WeightsError("llama.cpp could not load the GGUF of these weights; "
                                   "run with --log-level debug to see why")
        self.n_vocab = llama_cpp.llama_vocab_n_tokens(llama_cpp.llama_model_get_vocab(self.model))

    def _threads(self) -> int:
        import torch

        return self.threads or torch.get_num_threads()

    def _context(self, use: str, seqs: int) -> Any:
        """The context for ``use`` ("full" or "cache"), of ``seqs`` whole-context sequences or more."""
        llama_cpp = bindings()
        self._load()
        ctx, held = self.contexts.get(use, (None, 0))
        if ctx is not None and seqs <= held:
            return ctx
        if ctx is not None:
            llama_cpp.llama_free(ctx)
            del self.contexts[use]
        seq_len = _round_up(self.config.n_positions, _PAD)
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = seqs * seq_len  # split evenly between the sequences
        params.n_seq_max = seqs
        params.n_batch = params.n_ctx  # a whole batch goes to llama_decode in one call
        params.n_ubatch = min(params.n_batch, 512)
        params.n_threads = params.n_threads_batch = self._threads()
        if self.scheme == "float32":
            params.type_k = params.type_v = llama_cpp.GGML_TYPE_F32
        elif self.scheme == "bfloat16":
            params.type_k = params.type_v = _GGML_TYPE_BF16
        params.no_perf = True
        ctx = llama_cpp.llama_init_from_model(self.model, params)
        if not ctx:
            raise zoo.ZooError(f"llama.cpp could not make a context for {seqs} x {seq_len} tokens; "
                               "run with --log-level debug to see why")
        self.contexts[use] = (ctx, seqs)
        return ctx

    def _free(self) -> None:
        if not self.contexts and self.model is None:
            return
        llama_cpp = bindings()
        for ctx, _ in self.contexts.values():
            llama_cpp.llama_free(ctx)
        self.contexts = {}
        if self.model is not None:
            llama_cpp.llama_model_free(self.model)
            self.model = None

    def __del__(self, _suppress: type[contextlib.suppress] = contextlib.suppress) -> None:
        # bound at definition: at interpreter shutdown the module's globals (contextlib, the bindings) may be gone
        with _suppress(Exception):
            self._free()

    # -- running
    def setup_caches(self, max_batch_size: int, max_seq_length: int) -> None:
        zoo.check_cache_size(self.config, max_batch_size, max_seq_length, dtype=self.dtype)
        self.max_batch_size, self.max_seq_length = max_batch_size, max_seq_length
        self._written, self._real = 0, None

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                input_pos: torch.Tensor | None = None) -> torch.Tensor:
        import torch

        zoo.check_inputs(self.config, input_ids, attention_mask, input_pos, device=self.device,
                         max_seq_length=self.max_seq_length, max_batch_size=self.max_batch_size,
                         cache_cursor=self._written)
        llama_cpp = bindings()
        ids = input_ids.numpy().astype(np.int64)
        B, T = ids.shape
        start = 0 if input_pos is None else int(input_pos[0])
        mask = (np.ones((B, start + T), dtype=bool) if attention_mask is None
                else attention_mask.numpy().astype(bool))
        positions = mask.cumsum(-1) - 1  # (B, start + T): each real token's position in its sequence
        ctx = self._context("full" if input_pos is None else "cache", max(B, self.max_batch_size))
        memory = llama_cpp.llama_get_memory(ctx)
        if input_pos is None or start == 0:
            llama_cpp.llama_memory_clear(memory, True)
        else:  # keep the real tokens of the slots before start; forget the rest of each sequence
            for b in range(B):
                llama_cpp.llama_memory_seq_rm(memory, b, int(mask[b, :start].sum()), -1)
        real = mask[:, start:]  # (B, T)
        n = int(real.sum())
        logits = np.zeros((B, T, self.config.vocab_size), dtype=np.float32)  # padded positions: zeros
        if n:
            batch = llama_cpp.llama_batch_init(n, 0, 1)
            try:
                i = 0
                for b in range(B):
                    for t in np.flatnonzero(real[b]):
                        batch.token[i] = int(ids[b, t])
                        batch.pos[i] = int(positions[b, start + t])
                        batch.n_seq_id[i] = 1
                        batch.seq_id[i][0] = b
                        batch.logits[i] = True
                        i += 1
                batch.n_tokens = n
                status = llama_cpp.llama_decode(ctx, batch)
                if status != 0:
                    raise zoo.ZooError(f"llama_decode failed with status {status} for {B} x {T} tokens "
                                       f"at slot {start}")
                out = np.ctypeslib.as_array(llama_cpp.llama_get_logits(ctx), shape=(n, self.n_vocab))
                logits[real] = out[:, : self.config.vocab_size]  # row-major, as the batch was filled
            finally:
                llama_cpp.llama_batch_free(batch)
        if input_pos is not None:
            self._written = start + T
        return torch.from_numpy(logits)
