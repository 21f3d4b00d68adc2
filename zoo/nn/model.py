"""GPT-2 in plain PyTorch, in reading order: KV cache, attention, MLP, block, model.

The base every torch variant of the zoo builds on. ``pure`` is this model as
it is; ``quantised`` is this model after :func:`zoo.nn.quantise_` swapped its
Linear layers; ``compiled`` is this model wrapped by
:func:`zoo.nn.compile_decode`; :func:`zoo.nn.build` (``zoo/nn/compose.py``)
puts them together. A third party subclasses a module (say its own attention)
and keeps the rest.

Module names equal Hugging Face's (``wte``, ``wpe``, ``h.{i}.attn.c_attn``,
``ln_f``), so the canonical state dict is this module's own. Unlike nanoGPT:
GELU is the tanh approximation GPT-2 was trained with, the forward returns
logits for every position, and the KV cache is static (gpt-fast's design).
Attention is one ``F.scaled_dot_product_attention`` call with an additive bias
(causal mask and padding, computed once per forward), written out for a decode
step (see :meth:`CausalSelfAttention.attend`); the arithmetic SDPA fuses,
``softmax(q @ k.T / sqrt(hs) + bias) @ v``, is written out step by step in the
example plugin (``examples/zoo-plugin-example``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, cast

import torch
import torch.nn as nn
import torch.nn.functional as F

from .._config import GPT2Config
from .._errors import InvalidInputError
from .._inputs import check_cache_size, check_inputs
from .._interface import GPT2
from ..weight_map import canonical_shapes, checked

__all__ = ["GPT", "MLP", "Block", "CausalSelfAttention", "KVCache", "attention_bias"]


class KVCache(nn.Module):
    """Preallocated keys and values for one layer; ``update`` writes slots in place."""

    k: torch.Tensor  # (max_batch_size, nh, S, hs)
    v: torch.Tensor

    def __init__(self, max_batch_size: int, length: int, n_head: int, head_size: int,
                 device: torch.device, dtype: torch.dtype) -> None:
        super().__init__()
        shape = (max_batch_size, n_head, length, head_size)
        self.register_buffer("k", torch.zeros(shape, device=device, dtype=dtype), persistent=False)
        self.register_buffer("v", torch.zeros(shape, device=device, dtype=dtype), persistent=False)

    def update(self, input_pos: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        B = k.size(0)
        self.k[:B, :, input_pos] = k
        self.v[:B, :, input_pos] = v
        return self.k[:B], self.v[:B]  # (B, nh, S, hs)


def attention_bias(allowed: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """0 where a query may attend to a key, the most negative finite value elsewhere.

    A finite fill (Hugging Face's choice) keeps the rows of padded queries,
    which may attend to nothing, finite; a boolean mask would give NaN there.
    """
    zeros = torch.zeros(allowed.shape, dtype=dtype, device=allowed.device)
    return zeros.masked_fill(~allowed, torch.finfo(dtype).min)


class CausalSelfAttention(nn.Module):
    def __init__(self, config: GPT2Config) -> None:
        super().__init__()
        self.n_head = config.n_head
        self.n_embd = config.n_embd
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd)  # q, k, v for all heads at once
        self.c_proj = nn.Linear(config.n_embd, config.n_embd)
        self.kv_cache: KVCache | None = None

    def forward(self, x: torch.Tensor, bias: torch.Tensor, input_pos: torch.Tensor | None) -> torch.Tensor:
        B, T, C = x.size()  # batch, tokens, n_embd
        q, k, v = self.c_attn(x).split(self.n_embd, dim=2)
        hs = C // self.n_head
        q = q.view(B, T, self.n_head, hs).transpose(1, 2)  # (B, nh, T, hs)
        k = k.view(B, T, self.n_head, hs).transpose(1, 2)  # (B, nh, T, hs)
        v = v.view(B, T, self.n_head, hs).transpose(1, 2)  # (B, nh, T, hs)
        if input_pos is not None:
            if self.kv_cache is None:
                raise InvalidInputError("input_pos was given but no KV cache is set up; call setup_caches()")
            k, v = self.kv_cache.update(input_pos, k, v)  # (B, nh, S, hs)
        y = self.attend(q, k, v, bias)  # (B, nh, T, hs)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # re-assemble all heads side by side
        return self.c_proj(y)

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        """``softmax(q @ k^T / sqrt(hs) + bias) @ v``: ``q (B, nh, T, hs)``, ``k, v (B, nh, S, hs)`` -> ``(B, nh, T, hs)``.

        One fused call, except for one query per row (a decode step), where it is
        written out: under ``torch.compile`` Inductor fuses the scaling, bias and
        softmax between the two small matrix products. A compiled int4 decode step
        of GPT-2 124M took 5.6 ms so, 6.7 ms through SDPA's CPU kernel (2-core CPU,
        batch 1, 256 cache slots). Override it to change the arithmetic and nothing else.
        """
        scale = 1.0 / math.sqrt(q.size(-1))
        if q.size(2) == 1:
            return ((q @ k.transpose(-2, -1)) * scale + bias).softmax(dim=-1) @ v  # (B, nh, 1, hs)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=scale)


class MLP(nn.Module):
    def __init__(self, config: GPT2Config) -> None:
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd)
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c_proj(F.gelu(self.c_fc(x), approximate="tanh"))  # GPT-2's GELU is the tanh one


class Block(nn.Module):
    def __init__(self, config: GPT2Config) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor, bias: torch.Tensor, input_pos: torch.Tensor | None) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), bias, input_pos)  # pre-norm residual stream
        x = x + self.mlp(self.ln_2(x))
        return x


class GPT(nn.Module, GPT2):
    def __init__(self, config: GPT2Config) -> None:
        super().__init__()
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)  # token embedding
        self.wpe = nn.Embedding(config.n_positions, config.n_embd)  # position embedding
        self.h = nn.ModuleList([Block(config) for _ in range(config.n_layer)])
        self.ln_f = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.tie_weights()  # lm_head.weight is wte.weight, as GPT-2 was trained
        self.max_batch_size = 0
        self.max_seq_length: int | None = None
        self.cache_length = 0  # slots allocated in each layer's cache (>= max_seq_length)
        self.cache_cursor = 0  # the slot after the last one written since setup_caches()

    def tie_weights(self) -> None:
        """``lm_head.weight`` *is* ``wte.weight`` (again: ``to_empty`` re-creates parameters).

        A quantised tied embedding (:class:`zoo.nn.kernels.TiedHead`) holds the tie itself.
        """
        if isinstance(self.lm_head, nn.Linear) and isinstance(self.wte, nn.Embedding):
            self.lm_head.weight = self.wte.weight

    @property
    def device(self) -> torch.device:
        return self.wpe.weight.device  # the position embedding: never quantised

    @property
    def dtype(self) -> torch.dtype:
        return self.wpe.weight.dtype  # the dtype activations are computed in

    def setup_caches(self, max_batch_size: int, max_seq_length: int, *, cache_length: int | None = None) -> None:
        """Allocate (or zero) each layer's cache; ``cache_length`` slots (default ``max_seq_length``).

        Buffers of the same shape are zeroed in place rather than replaced, so
        code compiled against them (:func:`zoo.nn.compile_decode`) stays valid.
        """
        check_cache_size(self.config, max_batch_size, max_seq_length, dtype=self.dtype, device=self.device)
        S = max(max_seq_length, cache_length or 0)
        self.max_batch_size, self.max_seq_length, self.cache_length = max_batch_size, max_seq_length, S
        self.cache_cursor = 0
        shape = (max_batch_size, self.config.n_head, S, self.config.head_size)
        for attn in self.attentions():
            cache = attn.kv_cache
            if cache is not None and tuple(cache.k.shape) == shape and cache.k.dtype == self.dtype:
                cache.k.zero_()
                cache.v.zero_()
            else:
                attn.kv_cache = KVCache(max_batch_size, S, self.config.n_head, self.config.head_size,
                                              self.device, self.dtype)

    def attentions(self) -> list[CausalSelfAttention]:
        """Each block's attention module (where its KV cache lives)."""
        return [cast(Block, block).attn for block in self.h]

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                input_pos: torch.Tensor | None = None) -> torch.Tensor:
        check_inputs(self.config, input_ids, attention_mask, input_pos, device=self.device,
                     max_seq_length=self.max_seq_length, max_batch_size=self.max_batch_size,
                     cache_cursor=self.cache_cursor)
        pos, allowed = self.positions(input_ids, attention_mask, input_pos)
        logits = self.run(input_ids, pos, allowed, input_pos)
        if input_pos is not None:  # slots after this call's last one are stale: never attended, then overwritten
            self.cache_cursor = int(input_pos[-1]) + 1
        return logits

    def positions(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None,
                  input_pos: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Each token's position ``[B, T]``, and where each query may attend: ``[1 or B, 1, T, S]``."""
        B, T = input_ids.size()
        device = input_ids.device
        if input_pos is None:
            query_slots = torch.arange(T, device=device)  # (T,)
            key_slots = query_slots  # (T,)
        else:
            query_slots = input_pos
            key_slots = torch.arange(self.cache_length, device=device)  # (S,): every cache slot
        allowed = key_slots[None, :] <= query_slots[:, None]  # causal mask (T, S)
        allowed = allowed[None, None]  # (1, 1, T, S)
        if attention_mask is None:
            return query_slots[None, :].expand(B, T), allowed  # (B, T)
        mask = attention_mask.bool()  # (B, L): L = T, or slots written so far
        pos = (mask.long().cumsum(-1) - 1).masked_fill(~mask, 1)  # as Hugging Face's generate
        keys = F.pad(mask, (0, allowed.size(-1) - mask.size(-1)))  # (B, S)
        return pos[:, query_slots], allowed & keys[:, None, None, :]  # (B, T), (B, 1, T, S)

    def run(self, idx: torch.Tensor, pos: torch.Tensor, allowed: torch.Tensor,
            input_pos: torch.Tensor | None) -> torch.Tensor:
        """The layers: tokens ``idx [B, T]`` at positions ``pos [B, T]``, attending where ``allowed``."""
        bias = attention_bias(allowed, self.dtype)  # (1 or B, 1, T, S)
        x = self.wte(idx) + self.wpe(pos)  # (B, T, C)
        for block in self.h:
            x = block(x, bias, input_pos)
        x = self.ln_f(x)
        return self.lm_head(x)  # (B, T, vocab_size), every position

    # -- weights ---------------------------------------------------------------------------
    # A module that quantises what it stores (zoo.nn.quantise_) has ``load(weight)`` and
    # ``dequantised()`` for its weight; every other tensor is a parameter or buffer, copied as it is.
    def import_weights(self, weights: Mapping[str, Any]) -> None:
        """Copy canonical weights in one tensor at a time: never two full copies of the model."""
        weights = checked(weights, self.config)
        modules = dict(self.named_modules())
        with torch.no_grad():
            for name in weights:
                owner, _, kind = name.rpartition(".")
                module = modules[owner]
                tensor = torch.as_tensor(weights[name])
                if kind == "weight" and hasattr(module, "load"):
                    module.load(tensor)  # quantised as it arrives
                else:
                    getattr(module, kind).copy_(tensor)

    def export_weights(self) -> dict[str, torch.Tensor]:
        """The canonical state dict.

        Dense: the parameters themselves (views, no copies; a trainable
        variant's export must be its parameters). Quantised: what the model
        computes with, dequantised, every tensor in float32.
        """
        modules = dict(self.named_modules())
        quantised = any(hasattr(m, "dequantised") for m in modules.values())
        out: dict[str, torch.Tensor] = {}
        for name in canonical_shapes(self.config):
            owner, _, kind = name.rpartition(".")
            module = modules[owner]
            if kind == "weight" and hasattr(module, "dequantised"):
                out[name] = module.dequantised()
            else:
                tensor = getattr(module, kind).detach()
                out[name] = tensor.float() if quantised else tensor
        return out

    def weight_bytes(self) -> int:
        """Bytes held by the weights, each storage once (a tied pair once; the KV cache excluded)."""
        tensors = [*self.parameters(), *(b for n, b in self.named_buffers() if ".kv_cache." not in f".{n}")]
        return sum({t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in tensors}.values())
