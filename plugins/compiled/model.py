"""GPT-2 under ``torch.compile``: ``pure``'s model with a compiled decode step.

gpt-fast's design: the KV cache is preallocated buffers written in place, so a
decode step (one token per row, ``input_pos [1]``) has the same shapes at every
position and compiles once per batch and cache size. Only that step is
compiled; prefill and full forwards run eagerly through the same modules
(``pure``'s, attention on ``F.scaled_dot_product_attention``), so a prompt of
any length costs no compilation.

The compiled step is a model's own: :func:`_own_code` gives each model a copy
of :func:`decode_step`'s code object, because dynamo keeps compiled code, its
guards and its recompile count per code object. A model's compiled code thus
never serves another model, and it is dropped with the model, or when
:meth:`CompiledGPT.import_weights` replaces the weights that freezing folded
into it as constants.
"""

from __future__ import annotations

import logging
import time
import types
import warnings
import weakref
from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.nn.functional as F

import zoo

from ..pure.model import GPT, KVCache
from ..quantised.model import Int4GPT, Int8GPT

log = logging.getLogger("zoo")
progress = logging.getLogger("zoo.compile")  # what a compilation costs; `zoo generate` shows it by default

# -- how the decode step is compiled --------------------------------------------------------
# CPU: Inductor's max-autotune without CUDA graphs, with freezing (weights folded in as
# constants and prepacked for oneDNN); measured on a 2-core CPU with GPT-2 124M, batch 1:
# about 3x the decode speed of Inductor's defaults. CUDA: gpt-fast's CUDA graphs.
CPU_MODE = "max-autotune-no-cudagraphs"
CUDA_MODE = "reduce-overhead"
# Inductor settings in force while a step compiles, never process-wide; the display of autotuning
# results is off (Inductor writes them to stderr)
INDUCTOR = {"cpu": {"freezing": True, "autotune_num_choices_displayed": 0},
            "cuda": {"autotune_num_choices_displayed": 0}}
MAX_COMPILED_STEPS = 4  # per process, over every model: each costs seconds and, frozen, holds a copy of the weights
MIN_CACHE = 16  # the cache length is rounded up to a power of two from here (see cache_length)
# rough first-call cost, seconds per million parameters, for the progress message (2-core CPU)
COMPILE_SECONDS = {"cpu": (8.0, 0.2), "cuda": (20.0, 0.1)}  # (fixed, per million parameters)


def cache_length(max_seq_length: int, n_positions: int) -> int:
    """The cache slots allocated for ``max_seq_length``: the next power of two, within ``n_positions``.

    Every cache length is a static shape the decode step is compiled for;
    rounding up lets ``zoo.generate`` (whose cache is prompt plus new tokens)
    reuse a few compiled steps instead of compiling one per length. Slots past
    ``max_seq_length`` are never written and never attended to.
    """
    length = max(MIN_CACHE, 1 << (max_seq_length - 1).bit_length())
    return max(max_seq_length, min(length, n_positions))


def decode_step(model: CompiledGPT, idx: torch.Tensor, input_pos: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    """One token per row through the static cache; the function ``torch.compile`` sees.

    ``idx [B, 1]``, ``input_pos [1]``, ``keys [B, S]`` (True: a slot holding a
    real token, or any slot when nothing is padded) -> ``logits [B, 1, V]``.
    Every shape is fixed by ``B`` and the cache, whatever the position.
    """
    S = keys.size(1)
    pos = (keys.long().cumsum(-1) - 1).masked_fill(~keys, 1)  # (B, S): as Hugging Face's generate
    slots = torch.arange(S, device=idx.device)
    allowed = (slots[None, :] <= input_pos[:, None])[None, None] & keys[:, None, None, :]  # (B, 1, 1, S)
    return model.run(idx, pos[:, input_pos], allowed, input_pos)


_models: weakref.WeakSet[CompiledGPT] = weakref.WeakSet()  # models that have compiled a step
_warned = False  # whether the budget's warning has been given in this process


def compiled_steps() -> int:
    """Compiled decode steps alive in this process, over every model; see ``MAX_COMPILED_STEPS``."""
    return sum(step is not None for model in list(_models) for step in model._steps.values())


def _own_code(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` with a code object of its own, so that dynamo's cache for it is private (see the module doc)."""
    return types.FunctionType(fn.__code__.replace(), fn.__globals__, fn.__name__, fn.__defaults__, fn.__closure__)


class CompiledGPT(GPT):
    """``pure.GPT`` with a rounded-up static cache and a compiled decode step."""

    def __init__(self, config: zoo.GPT2Config) -> None:
        super().__init__(config)
        # (batch, cache slots) -> the decode step compiled for it (None: decoded eagerly), made on first use
        self._steps: dict[tuple[int, int], Callable[..., torch.Tensor] | None] = {}
        self._no_padding: torch.Tensor | None = None  # keys [max_batch_size, S] when nothing is padded

    def setup_caches(self, max_batch_size: int, max_seq_length: int) -> None:
        zoo.check_cache_size(self.config, max_batch_size, max_seq_length)
        S = cache_length(max_seq_length, self.config.n_positions)
        self.max_batch_size, self.max_seq_length = max_batch_size, max_seq_length
        shape = (max_batch_size, self.config.n_head, S, self.config.head_size)
        for block in self.h:
            cache = block.attn.kv_cache
            if cache is not None and tuple(cache.k.shape) == shape and cache.k.dtype == self.dtype:
                cache.k.zero_()  # the same buffers: the compiled step's guards keep holding
                cache.v.zero_()
            else:
                block.attn.kv_cache = KVCache(max_batch_size, S, self.config.n_head, self.config.head_size,
                                              self.device, self.dtype)
        if self._no_padding is None or tuple(self._no_padding.shape) != (max_batch_size, S):
            self._no_padding = torch.ones(max_batch_size, S, dtype=torch.bool, device=self.device)
        self.cache_length = S

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                input_pos: torch.Tensor | None = None) -> torch.Tensor:
        zoo.check_inputs(self.config, input_ids, attention_mask, input_pos, device=self.device,
                         max_seq_length=self.max_seq_length, max_batch_size=self.max_batch_size)
        if input_pos is not None and input_ids.size(1) == 1:
            return self._decode(input_ids, attention_mask, input_pos)
        return self.run(input_ids, *self.positions(input_ids, attention_mask, input_pos), input_pos)

    # -- the compiled decode step ------------------------------------------------------------
    def _decode(self, idx: torch.Tensor, attention_mask: torch.Tensor | None,
                input_pos: torch.Tensor) -> torch.Tensor:
        assert self._no_padding is not None  # check_inputs: input_pos needs setup_caches()
        B = idx.size(0)
        if attention_mask is None:
            keys = self._no_padding[:B]  # (B, S)
        else:
            keys = F.pad(attention_mask.bool(), (0, self.cache_length - attention_mask.size(1)))  # (B, S)
        key = (B, self.cache_length)
        if key not in self._steps:
            return self._first_step(key, idx, input_pos, keys)
        step = self._steps[key]
        with torch.no_grad():  # as when it was compiled: a change of grad mode would compile it again
            if step is None:
                return decode_step(self, idx, input_pos, keys)
            if self.device.type == "cuda":
                torch.compiler.cudagraph_mark_step_begin()  # a new step: the last one's outputs may be reused
                return step(self, idx, input_pos, keys).clone()  # the graph's output buffer is reused next step
            return step(self, idx, input_pos, keys)

    def _first_step(self, key: tuple[int, int], idx: torch.Tensor, input_pos: torch.Tensor,
                    keys: torch.Tensor) -> torch.Tensor:
        """Compile the decode step for ``key`` = (batch, cache slots) and run it; eagerly past the budget."""
        B, S = key
        if compiled_steps() >= MAX_COMPILED_STEPS:
            global _warned  # noqa: PLW0603 - once per process: the conformance harness meets this hundreds of times
            log.log(logging.INFO if _warned else logging.WARNING,
                    "%d decode steps are compiled in this process already (MAX_COMPILED_STEPS); batch %d, cache %d "
                    "decodes eagerly: slower, with the same result%s", compiled_steps(), B, S,
                    "" if _warned else " (further ones are logged at INFO)")
            _warned = True
            self._steps[key] = None
            with torch.no_grad():
                return decode_step(self, idx, input_pos, keys)
        progress.info("compiling the decode step for batch %d, cache %d (%s, %s): the first call takes about %.0f s",
                 B, S, self.device.type, str(self.dtype).removeprefix("torch."), self.compile_seconds())
        mode = CUDA_MODE if self.device.type == "cuda" else CPU_MODE
        start = time.perf_counter()
        with warnings.catch_warnings():
            # torch's own deprecations, met while Inductor compiles: its first import reaches
            # torch.jit.script_method, and max-autotune's benchmarking a TypedStorage API
            warnings.filterwarnings("ignore", message="`torch.jit.script_method` is deprecated",
                                    category=DeprecationWarning)
            warnings.filterwarnings("ignore", message="TypedStorage is deprecated", category=UserWarning)
            step = torch.compile(_own_code(decode_step), mode=mode, dynamic=False)
            with torch.no_grad(), torch._inductor.config.patch(INDUCTOR.get(self.device.type, {})):
                if self.device.type == "cuda":
                    torch.compiler.cudagraph_mark_step_begin()
                logits = step(self, idx, input_pos, keys)
        self._steps[key] = step
        _models.add(self)
        progress.info("compiled the decode step for batch %d, cache %d in %.1f s", B, S, time.perf_counter() - start)
        return logits.clone() if self.device.type == "cuda" else logits

    def compile_seconds(self) -> float:
        """A rough guess of what compiling one decode step costs, for the progress message."""
        fixed, per_million = COMPILE_SECONDS.get(self.device.type, COMPILE_SECONDS["cpu"])
        return fixed + per_million * self.config.n_params / 1e6

    def import_weights(self, weights: Mapping[str, Any]) -> None:
        super().import_weights(weights)
        # freezing folded the old weights into the compiled steps as constants: compile again when next used
        self._steps = {}


class CompiledInt8GPT(CompiledGPT, Int8GPT):
    """``quantised``'s weight-only int8 model (bfloat16 activations) with the compiled decode step.

    gpt-fast runs its quantised models compiled. Under max-autotune, Inductor
    picks for each int8 matmul between aten's weight-only kernel and GEMM
    kernels it generates, and fuses the LayerNorms, GELU and residual adds
    around them: at 124M, batch 1, a step took 13 ms against 20.5 ms eager,
    80% of which was ``_weight_int8pack_mm`` (2-core CPU).
    """


class CompiledInt4GPT(CompiledGPT, Int4GPT):
    """``quantised-int4``'s model (int4 blocks, int8 tied embedding) with the compiled decode step."""
