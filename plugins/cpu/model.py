"""GPT-2 in NumPy, in reading order: helpers, layers, attention, MLP, block, model.

A second, independent implementation of GPT-2: the arithmetic and the weights
are NumPy float32 arrays, and no torch operator is involved. Names follow
Hugging Face's (``wte``, ``h.{i}.attn.c_attn``, ``ln_f``), so
:meth:`GPT.named_weights` lists exactly the canonical state dict. Projection
weights are stored ``[in, out]`` (the transpose of the canonical ``nn.Linear``
orientation) because batch-1 decoding is a vector-matrix product per layer,
and OpenBLAS streams ``x @ W`` with ``W`` ``[in, out]`` C-contiguous faster
than ``W @ x`` with ``W`` ``[out, in]`` (by about a quarter on the 124M shape,
one thread). ``lm_head`` is ``wte`` itself, one array, and the same argument
holds for the largest product of a decoding step: the token embedding is stored
``[n_embd, vocab_size]``, so the logits are ``x @ wte.weight_t`` (about 1.5x
faster than ``x @ wte.T`` from ``[vocab_size, n_embd]``), and an embedding
lookup gathers columns instead of rows, which costs little even for a
1024-token prefill.

Torch appears only at the zoo's interface (:meth:`GPT.forward` takes and
returns torch tensors, :meth:`GPT.export_weights` returns them, and the
``device``/``dtype`` properties name torch objects), always imported inside
those methods. Everything else, :meth:`GPT.forward_numpy` included, runs where
torch is not installed.
"""

from __future__ import annotations

import logging
import math
import sys
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING, Any

import numpy as np

import zoo
from zoo.host import HostGPT2, initial_weights, placement
from zoo.weight_map import checked

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

DTYPE = np.float32
FILL = np.finfo(DTYPE).min  # a large finite fill keeps rows with nothing to attend to (padding) finite


def gelu(x: np.ndarray) -> np.ndarray:
    """GELU, tanh approximation: the one GPT-2 was trained with (Hugging Face's ``gelu_new``)."""
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * (x * x * x))))


def softmax(x: np.ndarray) -> np.ndarray:
    """Softmax over the last axis, shifted by the row maximum so ``exp`` never overflows."""
    x = x - x.max(axis=-1, keepdims=True)
    np.exp(x, out=x)
    x /= x.sum(axis=-1, keepdims=True)
    return x


class Module:
    """Weights held as NumPy arrays in attributes, listed under torch-style dotted names."""

    def named_weights(self, prefix: str = "") -> Iterator[tuple[str, np.ndarray]]:
        """``(canonical name, array in canonical orientation)``; writing into an array writes the weight."""
        for name, value in vars(self).items():
            if isinstance(value, np.ndarray):
                yield prefix + name, value
            elif isinstance(value, Module):
                yield from value.named_weights(f"{prefix}{name}.")
            elif isinstance(value, list):
                for i, item in enumerate(value):
                    yield from item.named_weights(f"{prefix}{name}.{i}.")


class Linear(Module):
    """``y = x @ weight + bias`` with ``weight`` stored ``[in, out]`` (see the module docstring)."""

    def __init__(self, n_in: int, n_out: int) -> None:
        self.weight = np.empty((n_in, n_out), dtype=DTYPE)
        self.bias = np.empty(n_out, dtype=DTYPE)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        *lead, n_in = x.shape
        # one 2-D product for every token: a stacked (B, T, C) @ W would re-read W once per sequence
        y = x.reshape(-1, n_in) @ self.weight  # (B*T, out)
        y += self.bias
        return y.reshape(*lead, -1)

    def named_weights(self, prefix: str = "") -> Iterator[tuple[str, np.ndarray]]:
        yield prefix + "weight", self.weight.T  # a view in nn.Linear orientation, [out, in]
        yield prefix + "bias", self.bias


class Embedding(Module):
    def __init__(self, n: int, dim: int) -> None:
        self.weight = np.empty((n, dim), dtype=DTYPE)

    def __call__(self, idx: np.ndarray) -> np.ndarray:
        return self.weight[idx]


class TiedEmbedding(Module):
    """The token embedding, which is also ``lm_head``: one array, stored ``[dim, n]``."""

    def __init__(self, n: int, dim: int) -> None:
        self.weight_t = np.empty((dim, n), dtype=DTYPE)

    def __call__(self, idx: np.ndarray) -> np.ndarray:
        return np.moveaxis(self.weight_t[:, idx], 0, -1)  # (C, B, T) -> (B, T, C)

    def logits(self, x: np.ndarray) -> np.ndarray:
        return x @ self.weight_t  # (N, C) @ (C, n): the weights stream in the fast orientation

    def named_weights(self, prefix: str = "") -> Iterator[tuple[str, np.ndarray]]:
        yield prefix + "weight", self.weight_t.T  # a view in nn.Embedding orientation, [n, dim]


class LayerNorm(Module):
    def __init__(self, n: int, eps: float) -> None:
        self.weight = np.empty(n, dtype=DTYPE)
        self.bias = np.empty(n, dtype=DTYPE)
        self.eps = eps

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = x - x.mean(axis=-1, keepdims=True)
        var = (x * x).mean(axis=-1, keepdims=True)  # biased variance, as torch's LayerNorm
        x /= np.sqrt(var + self.eps)
        x *= self.weight
        x += self.bias
        return x


class KVCache:
    """Preallocated keys and values for one layer; ``update`` writes slots in place."""

    def __init__(self, max_batch_size: int, max_seq_length: int, n_head: int, head_size: int) -> None:
        shape = (max_batch_size, n_head, max_seq_length, head_size)
        self.k = np.zeros(shape, dtype=DTYPE)
        self.v = np.zeros(shape, dtype=DTYPE)

    def update(self, input_pos: np.ndarray, k: np.ndarray, v: np.ndarray,
               n_slots: int) -> tuple[np.ndarray, np.ndarray]:
        B = k.shape[0]
        self.k[:B, :, input_pos] = k
        self.v[:B, :, input_pos] = v
        return self.k[:B, :, :n_slots], self.v[:B, :, :n_slots]  # (B, nh, S, hs)


class CausalSelfAttention(Module):
    def __init__(self, config: zoo.GPT2Config) -> None:
        self.c_attn = Linear(config.n_embd, 3 * config.n_embd)  # q, k, v for all heads at once
        self.c_proj = Linear(config.n_embd, config.n_embd)
        self.n_head = config.n_head
        self.kv_cache: KVCache | None = None

    def __call__(self, x: np.ndarray, allowed: np.ndarray, input_pos: np.ndarray | None) -> np.ndarray:
        B, T, C = x.shape  # batch, tokens, n_embd
        hs = C // self.n_head
        q, k, v = np.split(self.c_attn(x), 3, axis=2)
        q = q.reshape(B, T, self.n_head, hs).transpose(0, 2, 1, 3)  # (B, nh, T, hs)
        k = k.reshape(B, T, self.n_head, hs).transpose(0, 2, 1, 3)  # (B, nh, T, hs)
        v = v.reshape(B, T, self.n_head, hs).transpose(0, 2, 1, 3)  # (B, nh, T, hs)
        if input_pos is not None:
            assert self.kv_cache is not None  # setup_caches() ran: GPT.forward_numpy checks
            k, v = self.kv_cache.update(input_pos, k, v, allowed.shape[-1])  # (B, nh, S, hs)
        att = (q @ k.transpose(0, 1, 3, 2)) * (1.0 / math.sqrt(hs))  # (B, nh, T, S)
        att = softmax(np.where(allowed, att, FILL))
        y = att @ v  # (B, nh, T, hs)
        y = y.transpose(0, 2, 1, 3).reshape(B, T, C)  # re-assemble all heads side by side
        return self.c_proj(y)


class MLP(Module):
    def __init__(self, config: zoo.GPT2Config) -> None:
        self.c_fc = Linear(config.n_embd, 4 * config.n_embd)
        self.c_proj = Linear(4 * config.n_embd, config.n_embd)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.c_proj(gelu(self.c_fc(x)))


class Block(Module):
    def __init__(self, config: zoo.GPT2Config) -> None:
        self.ln_1 = LayerNorm(config.n_embd, config.layer_norm_epsilon)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = LayerNorm(config.n_embd, config.layer_norm_epsilon)
        self.mlp = MLP(config)

    def __call__(self, x: np.ndarray, allowed: np.ndarray, input_pos: np.ndarray | None) -> np.ndarray:
        x = x + self.attn(self.ln_1(x), allowed, input_pos)  # pre-norm residual stream
        x = x + self.mlp(self.ln_2(x))
        return x


def _blas_threads(n: int) -> AbstractContextManager[Any]:
    """Limit NumPy's BLAS to ``n`` threads for the duration of a ``with`` block."""
    global _controller  # noqa: PLW0603  # found on first use: scanning the loaded libraries is slow
    if _controller is None:
        try:
            from threadpoolctl import ThreadpoolController
        except ImportError:
            _controller = False
            log.warning(
                "threadpoolctl is not installed, so the cpu variant cannot match NumPy's BLAS "
                "threads to torch's: OpenBLAS uses OPENBLAS_NUM_THREADS (default: every core). "
                "Install threadpoolctl, or set OPENBLAS_NUM_THREADS before starting Python"
            )
        else:
            _controller = ThreadpoolController()  # scans the loaded libraries once
    if _controller is False:
        return nullcontext()
    return _controller.limit(limits=n, user_api="blas")  # restores the previous count on exit


_controller: Any = None  # threadpoolctl.ThreadpoolController, False if unavailable, None until asked


class GPT(Module, HostGPT2):
    def __init__(self, config: zoo.GPT2Config) -> None:
        self.config = config
        self.wte = TiedEmbedding(config.vocab_size, config.n_embd)  # token embedding, and lm_head
        self.wpe = Embedding(config.n_positions, config.n_embd)  # position embedding
        self.h = [Block(config) for _ in range(config.n_layer)]
        self.ln_f = LayerNorm(config.n_embd, config.layer_norm_epsilon)
        self.threads: int | None = None  # BLAS threads; None: as many as torch.get_num_threads()
        self.max_batch_size = 0
        self.max_seq_length: int | None = None
        self.cache_cursor = 0  # the slot after the last one written since setup_caches()

    @classmethod
    def build(cls, config: zoo.GPT2Config, *, device: Any = "cpu", dtype: Any = None,
              weights: Mapping[str, Any] | None = None) -> GPT:
        """A model holding ``weights``, or GPT-2's random initialisation drawn from torch's global RNG.

        The random weights come from ``zoo.random_weights``, as ``pure``'s do,
        so variants built after the same ``torch.manual_seed`` hold the same
        ones. ``GPT(config)`` allocates without initialising, and without torch.
        """
        placement("the cpu variant", device, dtype)
        model = cls(config)
        model.import_weights(initial_weights(config, weights))
        return model

    def setup_caches(self, max_batch_size: int, max_seq_length: int) -> None:
        zoo.check_cache_size(self.config, max_batch_size, max_seq_length)  # float32 on the CPU: the defaults, no torch
        self.max_batch_size, self.max_seq_length, self.cache_cursor = max_batch_size, max_seq_length, 0
        for block in self.h:
            block.attn.kv_cache = KVCache(max_batch_size, max_seq_length, self.config.n_head,
                                          self.config.head_size)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                input_pos: torch.Tensor | None = None) -> torch.Tensor:
        """The zoo's interface: torch tensors in and out, NumPy in between."""
        import torch

        zoo.check_inputs(self.config, input_ids, attention_mask, input_pos, device=self.device,
                         max_seq_length=self.max_seq_length, max_batch_size=self.max_batch_size,
                         cache_cursor=self.cache_cursor)
        idx = input_ids.numpy()
        mask = None if attention_mask is None else attention_mask.to(torch.bool).numpy()
        pos = None if input_pos is None else input_pos.numpy()
        with _blas_threads(self.threads or torch.get_num_threads()):
            logits = self.forward_numpy(idx, mask, pos)
        if pos is not None:  # slots after this call's last one are stale: never attended, then overwritten
            self.cache_cursor = int(pos[-1]) + 1
        return torch.from_numpy(logits)

    def forward_numpy(self, idx: np.ndarray, attention_mask: np.ndarray | None = None,
                      input_pos: np.ndarray | None = None) -> np.ndarray:
        """:meth:`forward` on NumPy arrays, without checking them: ``idx (B, T)`` -> ``logits (B, T, V)``."""
        B, T = idx.shape
        if input_pos is None:
            query_slots = np.arange(T)  # (T,)
            key_slots = query_slots  # (T,)
        else:
            if self.max_seq_length is None:
                raise zoo.InvalidInputError(
                    "input_pos was given but no KV cache is set up; call setup_caches() first"
                )
            query_slots = input_pos
            key_slots = np.arange(int(input_pos.max()) + 1)  # (S,): later slots are never attended
        allowed = key_slots[None, :] <= query_slots[:, None]  # causal mask (T, S)
        allowed = allowed[None, None]  # (1, 1, T, S)
        if attention_mask is None:
            pos = np.broadcast_to(query_slots, (B, T))  # (B, T)
        else:
            mask = attention_mask.astype(bool)  # (B, S): S = T, or the slots written so far
            pos = np.where(mask, mask.cumsum(-1) - 1, 1)  # as Hugging Face's generate
            pos = pos[:, query_slots]  # (B, T)
            allowed = allowed & mask[:, None, None, :]  # (B, 1, T, S)
        x = self.wte(idx) + self.wpe(pos)  # (B, T, C)
        for block in self.h:
            x = block(x, allowed, input_pos)
        x = self.ln_f(x)
        logits = self.wte.logits(x.reshape(B * T, -1))  # tied lm_head: (B*T, vocab_size), every position
        return logits.reshape(B, T, -1)

    def import_weights(self, weights: Mapping[str, Any]) -> None:
        """Copy canonical weights (torch tensors or NumPy arrays) in, one tensor at a time."""
        own = dict(self.named_weights())
        for name, value in checked(weights, self.config).items():  # one tensor at a time: never two copies
            own[name][...] = _as_numpy(value)  # through the [out, in] view into the [in, out] array: a transposing copy

    def export_weights(self) -> dict[str, torch.Tensor]:
        """Canonical weights as torch tensors sharing memory with the model.

        Projection weights are transposed views of the ``[in, out]`` arrays;
        call ``.contiguous()`` where a writer needs contiguous tensors.
        """
        import torch

        return {name: torch.from_numpy(array) for name, array in self.named_weights()}


def _as_numpy(value: Any) -> np.ndarray:
    """A NumPy view of a tensor or array where possible; a float32 copy otherwise."""
    if isinstance(value, np.ndarray):
        return value
    torch = sys.modules.get("torch")  # a torch tensor exists only once torch is imported
    if torch is not None and isinstance(value, torch.Tensor):
        value = value.detach().cpu()
        if value.dtype not in (torch.float32, torch.float64):
            value = value.float()  # bfloat16 and float16 have no NumPy counterpart
        return value.numpy()
    return np.asarray(value)
