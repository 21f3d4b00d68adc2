"""llama.cpp, through llama-cpp-python's bindings to its C API, on GGUF written by the zoo.

F32 and BF16 are ``zoo.convert(..., to="gguf")`` of the weights; Q8_0 is
llama.cpp's own quantiser (``llama_model_quantize``) run on the F32 file, so
that file is what a llama.cpp user would make. The runner speaks the C API
directly rather than through ``llama_cpp.Llama``: one ``llama_batch`` carries
every sequence of a batch (sequence ids ``0..B-1``), so batch 8 is decoded as
llama.cpp decodes parallel sequences, not as eight runs in a row, and no
``n_ctx x vocab`` score buffer is kept. The KV cache is stored at the model's
precision for F32 and BF16 (llama.cpp's default, F16, for Q8_0), so float32
means float32 throughout.

The context (KV cache) is sized by the first call that needs it and reused
while it is big enough; a larger request makes a new one, which the warm-up
runs absorb.
"""

from __future__ import annotations

import ctypes
import functools
import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from zoo import WeightsError, ZooError

from ._common import PeerRunner, cached

__all__ = ["LlamaCppRunner"]

log = logging.getLogger("zoo")

_GGML_TYPE_BF16 = 30  # ggml.h; llama_cpp exports only some of the GGML_TYPE_* constants
_ZOO_DTYPES = {"F32": "float32", "BF16": "bfloat16"}
_PAD = 256  # llama.cpp rounds context sizes up to this


def _quiet(level: int, text: bytes, user_data: Any) -> None:
    log.debug("llama.cpp: %s", text.decode("utf-8", "replace").rstrip())


_KEEP_ALIVE: list[Any] = []  # the log callback, which llama.cpp calls for as long as the process lives


@functools.cache
def _llama() -> Any:
    """The bindings, with llama.cpp's log sent to the zoo's logger at DEBUG (it writes to stderr otherwise)."""
    import llama_cpp

    callback = llama_cpp.llama_log_callback(_quiet)
    llama_cpp.llama_log_set(callback, ctypes.c_void_p(0))
    _KEEP_ALIVE.append(callback)
    llama_cpp.llama_backend_init()
    return llama_cpp


def _quantise(f32: Path, out: Path, threads: int) -> None:
    llama_cpp = _llama()
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = llama_cpp.LLAMA_FTYPE_MOSTLY_Q8_0
    params.nthread = threads
    status = llama_cpp.llama_model_quantize(str(f32).encode(), str(out).encode(), ctypes.byref(params))
    if status != 0:
        raise WeightsError(f"llama.cpp could not quantise {f32} to Q8_0 (status {status}); "
                           "run with --log-level debug to see llama.cpp's own messages")


def _round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


class LlamaCppRunner(PeerRunner):
    PEER = "llama.cpp"
    PRECISIONS: ClassVar[Mapping[str, str]] = {"F32": "float32", "BF16": "bfloat16", "Q8_0": "int8"}

    model: Any = None
    ctx: Any = None
    seqs = 0  # sequences the context holds
    seq_len = 0  # positions each of them holds

    def _gguf(self, precision: str) -> Path:
        return self.cache_dir / f"gpt2-{precision}.gguf"

    def prepare(self) -> None:
        import zoo

        if self.precision in _ZOO_DTYPES:
            cached(self._gguf(self.precision), lambda out: zoo.convert(
                self.weights_dir, out, to="gguf", dtype=_ZOO_DTYPES[self.precision]))
            return
        f32 = cached(self._gguf("F32"), lambda out: zoo.convert(self.weights_dir, out, to="gguf", dtype="float32"))
        cached(self._gguf(self.precision), lambda out: _quantise(f32, out, self.threads))

    def load(self) -> None:
        llama_cpp = _llama()
        path = self.converted(self._gguf(self.precision))
        params = llama_cpp.llama_model_default_params()
        params.n_gpu_layers = 0
        # llama.cpp's extra CPU buffer types (AMX, repacked Q8_0) crash in llama_decode on this CPU
        # (AMX-INT8, llama-cpp-python 0.3.36): Q8_0 runs on its plain CPU kernels
        params.use_extra_bufts = self.precision != "Q8_0"
        self.model = llama_cpp.llama_model_load_from_file(str(path).encode(), params)
        if not self.model:
            raise WeightsError(f"llama.cpp could not load {path}; run with --log-level debug to see why")
        self.n_vocab = llama_cpp.llama_vocab_n_tokens(llama_cpp.llama_model_get_vocab(self.model))
        self._context(1, self.config.n_positions)

    def _context(self, seqs: int, seq_len: int) -> None:
        """A context for ``seqs`` sequences of ``seq_len`` positions each: the current one if it is big enough."""
        llama_cpp = _llama()
        if self.ctx is not None and seqs <= self.seqs and seq_len <= self.seq_len:
            llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(self.ctx), True)
            return
        self._free_context()
        seq_len = _round_up(seq_len, _PAD)
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = seqs * seq_len  # split evenly between the sequences
        params.n_seq_max = seqs
        params.n_batch = params.n_ctx  # the longest prompt batch goes to llama_decode in one call
        params.n_ubatch = min(params.n_batch, 512)
        params.n_threads = params.n_threads_batch = self.threads
        if self.precision == "F32":
            params.type_k = params.type_v = llama_cpp.GGML_TYPE_F32
        elif self.precision == "BF16":
            params.type_k = params.type_v = _GGML_TYPE_BF16
        params.no_perf = True
        self.ctx = llama_cpp.llama_init_from_model(self.model, params)
        if not self.ctx:
            raise ZooError(f"llama.cpp could not make a context for {seqs} x {seq_len} tokens; "
                           "run with --log-level debug to see why")
        self.seqs, self.seq_len = seqs, seq_len

    def _free_context(self) -> None:
        if self.ctx is not None:
            _llama().llama_free(self.ctx)
            self.ctx, self.seqs, self.seq_len = None, 0, 0

    def __del__(self) -> None:
        try:
            self._free_context()
            if self.model is not None:
                _llama().llama_model_free(self.model)
                self.model = None
        except Exception:  # noqa: BLE001 - interpreter shutdown may have unloaded the bindings already
            pass

    def _decode(self, batch: Any, ids: np.ndarray, start: int) -> np.ndarray:
        """Decode ``ids [B, T]`` (sequence ``b`` at positions ``start...``); the last logits ``[B, V]``.

        ``batch`` already carries the sequence ids and output flags for this shape.
        """
        llama_cpp = _llama()
        B, T = ids.shape
        n = B * T
        batch.n_tokens = n
        np.ctypeslib.as_array(batch.token, shape=(n,))[:] = ids.reshape(-1)
        np.ctypeslib.as_array(batch.pos, shape=(n,))[:] = np.tile(np.arange(start, start + T), B)
        status = llama_cpp.llama_decode(self.ctx, batch)
        if status != 0:
            raise ZooError(f"llama_decode failed with status {status} for {B} x {T} tokens at position {start}")
        return np.ctypeslib.as_array(llama_cpp.llama_get_logits(self.ctx), shape=(B, self.n_vocab))

    def _batch(self, B: int, T: int) -> Any:
        """A ``llama_batch`` for ``B`` sequences of ``T`` tokens each, logits at each one's last token."""
        llama_cpp = _llama()
        batch = llama_cpp.llama_batch_init(B * T, 0, 1)
        for b in range(B):
            for t in range(T):
                i = b * T + t
                batch.n_seq_id[i] = 1
                batch.seq_id[i][0] = b
                batch.logits[i] = t == T - 1
        return batch

    def _run(self, ids: np.ndarray, max_new_tokens: int, on_token: Callable[[], None]) -> np.ndarray:
        llama_cpp = _llama()
        B, T = ids.shape
        self._context(B, T + max_new_tokens)
        chosen = np.empty((B, max_new_tokens), dtype=np.int64)
        prompt, step_batch = self._batch(B, T), self._batch(B, 1)
        try:
            logits = self._decode(prompt, ids, 0)
            for step in range(max_new_tokens):
                chosen[:, step] = logits.argmax(-1)
                on_token()
                if step + 1 < max_new_tokens:
                    logits = self._decode(step_batch, chosen[:, step : step + 1], T + step)
        finally:
            llama_cpp.llama_batch_free(prompt)
            llama_cpp.llama_batch_free(step_batch)
        return chosen

    def prefill(self, ids: np.ndarray) -> None:
        self._run(ids, 1, lambda: None)

    def greedy(self, ids: np.ndarray, max_new_tokens: int, on_token: Callable[[], None]) -> np.ndarray:
        return self._run(ids, max_new_tokens, on_token)

    def weight_bytes(self) -> int | None:
        return self._gguf(self.precision).stat().st_size
