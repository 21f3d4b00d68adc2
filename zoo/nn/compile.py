"""``compile_decode``: any :class:`zoo.nn.GPT` (dense or quantised) with its one-token decode step compiled.

gpt-fast's design: the KV cache is preallocated buffers written in place, so a
decode step (one token per row, ``input_pos [1]``) has the same shapes at every
position and compiles once per batch size and cache length. Only that step is
compiled; prefill and full forwards run eagerly through the same modules, so
a prompt of any length costs no compilation. Cache lengths are rounded up to a
power of two (:func:`cache_length`), so that ``zoo.generate``'s many cache
sizes share a few compiled steps.

How: on the CPU with Inductor's ``max-autotune-no-cudagraphs`` mode and
freezing (scoped to each compilation, never set for the whole process); on
CUDA with CUDA graphs (``mode="reduce-overhead"``). Freezing folds the weights
into the compiled step as constants, so importing weights, or writing them in
place (through ``export_weights()``, which returns the model's own tensors;
their version counters show it), throws the compiled steps away. A process
keeps at most ``MAX_COMPILED_STEPS`` compiled steps alive (each holds a copy
of the weights); past that, decode steps run eagerly, with the same result,
and a warning says so once.

The compiled step belongs to one model: :func:`_own_code` gives each wrapper a
copy of :func:`decode_step`'s code object, because dynamo keeps compiled code,
its guards and its recompile count per code object.
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
import torch.nn as nn
import torch.nn.functional as F

from .._errors import CapabilityError
from .._inputs import check_cache_size, check_inputs
from .._interface import GPT2
from . import compile_unavailable
from .model import GPT

__all__ = ["MAX_COMPILED_STEPS", "CompiledDecode", "cache_length", "compile_decode", "compiled_steps"]

log = logging.getLogger("zoo")
progress = logging.getLogger("zoo.compile")  # what a compilation costs; `zoo generate` shows it by default

# CPU: Inductor's max-autotune without CUDA graphs, with freezing (weights folded in as constants
# and prepacked for oneDNN); measured on a 2-core CPU with GPT-2 124M, batch 1: about 3x the
# decode speed of Inductor's defaults. CUDA: gpt-fast's CUDA graphs.
CPU_MODE = "max-autotune-no-cudagraphs"
CUDA_MODE = "reduce-overhead"
# Inductor settings in force while a step compiles, never process-wide; the display of autotuning
# results and their statistics is off (Inductor writes both to stderr). Settings an older torch
# does not know are left out (see _inductor_settings).
_QUIET = {"autotune_num_choices_displayed": 0, "max_autotune_report_choices_stats": False}
INDUCTOR = {"cpu": {"freezing": True, **_QUIET}, "cuda": dict(_QUIET)}
# With freezing, max-autotune's C++ GEMM template computes a weight-only int8 Linear wrongly for some
# shapes and thread counts (torch 2.13, CPU: a 2-layer, 32-wide int8 model's decode steps off by 25 to
# 94% of the logits' norm on 2 threads, right on 1, 3, 4 and 8 threads and at 48 to 768 wide). So the
# first step of a model that holds int8 weights is checked against the eager step on the same input;
# where they differ by more than INT8_CHECK (bfloat16 rounding: about 0.01), the step is compiled
# again with its matrix products autotuned among ATen's kernels only (INT8_CPU), which compute them right.
INT8_CPU = {"max_autotune_gemm_backends": "ATEN"}
INT8_CHECK = 0.05  # relative error of the first compiled step's logits against the eager step's
MAX_COMPILED_STEPS = 4  # per process, over every model: each costs seconds and, frozen, holds a copy of the weights
MIN_CACHE = 16  # the cache length is rounded up to a power of two from here (see cache_length)
# rough first-call cost, seconds per million parameters, for the progress message (2-core CPU)
COMPILE_SECONDS = {"cpu": (8.0, 0.2), "cuda": (20.0, 0.1)}  # (fixed, per million parameters)


def cache_length(max_seq_length: int, n_positions: int) -> int:
    """The cache slots allocated for ``max_seq_length``: the next power of two, within ``n_positions``.

    Slots past ``max_seq_length`` are never written and never attended to.
    """
    length = max(MIN_CACHE, 1 << (max_seq_length - 1).bit_length())
    return max(max_seq_length, min(length, n_positions))


def decode_step(model: GPT, idx: torch.Tensor, input_pos: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
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


_compilers: weakref.WeakSet[CompiledDecode] = weakref.WeakSet()  # wrappers that have compiled a step
_warned = False  # whether the budget's warning has been given in this process


def _inductor_settings(device_type: str, aten_only: bool = False) -> dict[str, Any]:
    """:data:`INDUCTOR`'s settings for ``device_type`` (and :data:`INT8_CPU`'s) that this torch's Inductor has."""
    import torch._inductor.config as inductor

    wanted = {**INDUCTOR.get(device_type, {}), **(INT8_CPU if aten_only and device_type == "cpu" else {})}
    return {k: v for k, v in wanted.items() if hasattr(inductor, k)}


def _holds_int8(model: Any) -> bool:
    """Whether ``model`` holds an int8 weight (a weight-only int8 Linear, an int8 embedding)."""
    import torch

    return any(t.dtype == torch.int8 for t in model.buffers()) or any(p.dtype == torch.int8 for p in model.parameters())


def compiled_steps() -> int:
    """Compiled decode steps alive in this process, over every model; see ``MAX_COMPILED_STEPS``."""
    return sum(step is not None for c in list(_compilers) for step in c._steps.values())


def _own_code(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` with a code object of its own, so that dynamo's cache for it is private (see the module doc)."""
    return types.FunctionType(fn.__code__.replace(), fn.__globals__, fn.__name__, fn.__defaults__, fn.__closure__)


class CompiledDecode(nn.Module, GPT2):
    """A :class:`zoo.nn.GPT` whose one-token decode steps run compiled; everything else is the model's own."""

    def __init__(self, model: GPT) -> None:
        super().__init__()
        self.model = model
        self.config = model.config
        # (batch, cache slots) -> the decode step compiled for it (None: decoded eagerly), made on first use
        self._steps: dict[tuple[int, int], Callable[..., torch.Tensor] | None] = {}
        self._no_padding: torch.Tensor | None = None  # keys [max_batch_size, S] when nothing is padded
        # the weights' in-place version counters when the steps were compiled: a write through
        # export_weights() (which returns the model's own tensors) makes the frozen steps stale
        self._compiled_versions: tuple[int, ...] | None = None
        self._weights: list[torch.Tensor] | None = None  # the tensors whose versions are watched

    @property
    def device(self) -> torch.device:
        return self.model.device

    @property
    def dtype(self) -> torch.dtype:
        return self.model.dtype

    def setup_caches(self, max_batch_size: int, max_seq_length: int) -> None:
        check_cache_size(self.config, max_batch_size, max_seq_length, dtype=self.dtype, device=self.device)
        S = cache_length(max_seq_length, self.config.n_positions)
        self.model.setup_caches(max_batch_size, max_seq_length, cache_length=S)
        if self._no_padding is None or tuple(self._no_padding.shape) != (max_batch_size, S):
            self._no_padding = torch.ones(max_batch_size, S, dtype=torch.bool, device=self.device)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                input_pos: torch.Tensor | None = None) -> torch.Tensor:
        if input_pos is None or input_ids.size(1) != 1:
            return self.model(input_ids, attention_mask, input_pos)
        m = self.model
        check_inputs(self.config, input_ids, attention_mask, input_pos, device=self.device,
                     max_seq_length=m.max_seq_length, max_batch_size=m.max_batch_size, cache_cursor=m.cache_cursor)
        logits = self._decode(input_ids, attention_mask, input_pos)
        m.cache_cursor = int(input_pos[-1]) + 1
        return logits

    def import_weights(self, weights: Mapping[str, Any]) -> None:
        self.model.import_weights(weights)
        self._steps = {}  # freezing folded the old weights into the compiled steps: compile again when next used

    def export_weights(self) -> dict[str, torch.Tensor]:
        return self.model.export_weights()

    def weight_bytes(self) -> int:
        return self.model.weight_bytes()

    # -- the compiled decode step ------------------------------------------------------------
    def _weight_versions(self) -> tuple[int, ...] | None:
        """Every weight tensor's version counter (bumped by each in-place write); ``None`` where untracked.

        Called at every decode step: the weight tensors are listed once (imports copy into
        the same tensors; only the KV cache's buffers are ever replaced, and they are not weights).
        """
        if self._weights is None:
            m = self.model
            self._weights = [*m.parameters(), *(b for n, b in m.named_buffers() if ".kv_cache." not in f".{n}")]
        try:
            return tuple(t._version for t in self._weights)
        except RuntimeError:  # inference-mode tensors keep no version counter
            return None

    def _decode(self, idx: torch.Tensor, attention_mask: torch.Tensor | None,
                input_pos: torch.Tensor) -> torch.Tensor:
        assert self._no_padding is not None  # check_inputs: input_pos needs setup_caches()
        B, S = idx.size(0), self.model.cache_length
        if attention_mask is None:
            keys = self._no_padding[:B]  # (B, S)
        else:
            keys = F.pad(attention_mask.bool(), (0, S - attention_mask.size(1)))  # (B, S)
        if self._steps and self._weight_versions() != self._compiled_versions:
            self._steps = {}  # weights written in place since the steps froze them: compile again
        if (B, S) not in self._steps:
            return self._first_step((B, S), idx, input_pos, keys)
        step = self._steps[(B, S)]
        with torch.no_grad():  # as when it was compiled: a change of grad mode would compile it again
            if step is None:
                return decode_step(self.model, idx, input_pos, keys)
            if self.device.type == "cuda":
                torch.compiler.cudagraph_mark_step_begin()  # a new step: the last one's outputs may be reused
                return step(self.model, idx, input_pos, keys).clone()  # the graph's output buffer is reused
            return step(self.model, idx, input_pos, keys)

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
            self._compiled_versions = self._weight_versions()
            with torch.no_grad():
                return decode_step(self.model, idx, input_pos, keys)
        progress.info("compiling the decode step for batch %d, cache %d (%s, %s): the first call takes about %.0f s",
                      B, S, self.device.type, str(self.dtype).removeprefix("torch."), self.compile_seconds())
        start = time.perf_counter()
        step, logits = self._compile(idx, input_pos, keys)
        if self.device.type == "cpu" and _holds_int8(self.model):
            with torch.no_grad():  # the eager step writes the same cache slots again, with its own values
                eager = decode_step(self.model, idx, input_pos, keys)
            error = float((logits.float() - eager.float()).norm() / eager.float().norm().clamp_min(1e-30))
            if not error <= INT8_CHECK:  # NaN included
                log.info("the compiled int8 decode step differs from the eager one by %.2g of the logits' norm "
                         "(Inductor's C++ GEMM template); compiling it again with ATen's kernels", error)
                step, logits = self._compile(idx, input_pos, keys, aten_only=True)
        self._steps[key] = step
        self._compiled_versions = self._weight_versions()
        _compilers.add(self)
        progress.info("compiled the decode step for batch %d, cache %d in %.1f s", B, S, time.perf_counter() - start)
        return logits.clone() if self.device.type == "cuda" else logits

    def _compile(self, idx: torch.Tensor, input_pos: torch.Tensor, keys: torch.Tensor,
                 aten_only: bool = False) -> tuple[Any, torch.Tensor]:
        """A freshly compiled decode step, and its logits for this first call."""
        mode = CUDA_MODE if self.device.type == "cuda" else CPU_MODE
        with warnings.catch_warnings():
            # torch's own deprecations, met while Inductor compiles: its first import reaches
            # torch.jit.script_method, and max-autotune's benchmarking a TypedStorage API
            warnings.filterwarnings("ignore", message="`torch.jit.script_method` is deprecated",
                                    category=DeprecationWarning)
            warnings.filterwarnings("ignore", message="TypedStorage is deprecated", category=UserWarning)
            step = torch.compile(_own_code(decode_step), mode=mode, dynamic=False)
            with torch.no_grad(), torch._inductor.config.patch(_inductor_settings(self.device.type, aten_only)):
                if self.device.type == "cuda":
                    torch.compiler.cudagraph_mark_step_begin()
                return step, step(self.model, idx, input_pos, keys)

    def compile_seconds(self) -> float:
        """A rough guess of what compiling one decode step costs, for the progress message."""
        fixed, per_million = COMPILE_SECONDS.get(self.device.type, COMPILE_SECONDS["cpu"])
        return fixed + per_million * self.config.n_params / 1e6


def compile_decode(model: GPT) -> CompiledDecode:
    """``model`` with its one-token decode steps compiled (see the module docstring); the model is shared, not copied."""
    if not isinstance(model, GPT):
        raise TypeError(f"compile_decode takes a zoo.nn.GPT (or a subclass), got {type(model).__name__}: "
                        "the compiled step calls its positions-free run(); build the model with zoo.nn.build")
    missing = compile_unavailable()
    if missing:
        raise CapabilityError(missing)
    return CompiledDecode(model)
