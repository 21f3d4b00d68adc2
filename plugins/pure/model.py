"""GPT-2 from scratch in plain PyTorch, in reading order: config, attention, MLP, block, model.

Module names equal Hugging Face's (``wte``, ``wpe``, ``h.{i}.attn.c_attn``,
``ln_f``), so the canonical state dict is this module's own. Unlike nanoGPT:
GELU is the tanh approximation GPT-2 was trained with, the forward returns
logits for every position, and the KV cache is static (gpt-fast's design).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

import zoo
from zoo.weight_map import CANONICAL, CanonicalWeights, to_canonical


class KVCache(nn.Module):
    """Preallocated keys and values for one layer; ``update`` writes slots in place."""

    def __init__(self, max_batch_size: int, max_seq_length: int, n_head: int, head_size: int,
                 device: torch.device, dtype: torch.dtype) -> None:
        super().__init__()
        shape = (max_batch_size, n_head, max_seq_length, head_size)
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
    def __init__(self, config: zoo.GPT2Config) -> None:
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
                raise zoo.InvalidInputError("input_pos was given but no KV cache is set up; call setup_caches()")
            k, v = self.kv_cache.update(input_pos, k, v)  # (B, nh, S, hs)
        # softmax(q @ k^T / sqrt(hs) + bias) @ v in one fused call
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=1.0 / math.sqrt(hs))  # (B, nh, T, hs)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # re-assemble all heads side by side
        return self.c_proj(y)


class MLP(nn.Module):
    def __init__(self, config: zoo.GPT2Config) -> None:
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd)
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c_proj(F.gelu(self.c_fc(x), approximate="tanh"))  # GPT-2's GELU is the tanh one


class Block(nn.Module):
    def __init__(self, config: zoo.GPT2Config) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor, bias: torch.Tensor, input_pos: torch.Tensor | None) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), bias, input_pos)  # pre-norm residual stream
        x = x + self.mlp(self.ln_2(x))
        return x


class GPT(nn.Module, zoo.GPT2):
    def __init__(self, config: zoo.GPT2Config) -> None:
        super().__init__()
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)  # token embedding
        self.wpe = nn.Embedding(config.n_positions, config.n_embd)  # position embedding
        self.h = nn.ModuleList([Block(config) for _ in range(config.n_layer)])
        self.ln_f = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.lm_head.weight = self.wte.weight  # weight tying, as GPT-2 was trained
        self.max_batch_size = 0
        self.max_seq_length: int | None = None
        self.cache_length = 0  # slots allocated in each layer's cache (compiled rounds max_seq_length up)

    @classmethod
    def build(cls, config: zoo.GPT2Config, *, device: torch.device | str = "cpu",
              dtype: torch.dtype = torch.float32) -> GPT:
        """A model with GPT-2's random initialisation, drawn from torch's global RNG.

        The modules are created on the meta device and allocated once, directly
        in ``dtype`` on ``device``; the weights come from ``zoo.random_weights``,
        so ``hf`` built after the same ``torch.manual_seed`` holds the same ones.
        """
        with torch.device("meta"):
            model = cls(config).to(dtype=dtype)
        model.to_empty(device=device)
        model.lm_head.weight = model.wte.weight  # to_empty() re-creates the parameters
        model.import_weights(zoo.random_weights(config, seed=int(torch.randint(2**31, ()))))
        return model.eval()  # there is no dropout here, but callers may rely on eval mode

    @property
    def device(self) -> torch.device:
        return self.wte.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.wte.weight.dtype

    def setup_caches(self, max_batch_size: int, max_seq_length: int) -> None:
        zoo.check_cache_size(self.config, max_batch_size, max_seq_length)
        self.max_batch_size, self.max_seq_length = max_batch_size, max_seq_length
        self.cache_length = max_seq_length
        for block in self.h:
            block.attn.kv_cache = KVCache(max_batch_size, max_seq_length, self.config.n_head,
                                          self.config.head_size, self.device, self.dtype)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                input_pos: torch.Tensor | None = None) -> torch.Tensor:
        zoo.check_inputs(self.config, input_ids, attention_mask, input_pos, device=self.device,
                         max_seq_length=self.max_seq_length, max_batch_size=self.max_batch_size)
        pos, allowed = self.positions(input_ids, attention_mask, input_pos)
        return self.run(input_ids, pos, allowed, input_pos)

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

    def import_weights(self, weights: Mapping[str, Any]) -> None:
        if not isinstance(weights, CanonicalWeights):  # a plain dict: check every key and shape first
            weights = to_canonical(weights, self.config, CANONICAL)
        params = dict(self.named_parameters())  # lm_head.weight is wte.weight: listed once
        with torch.no_grad():
            for name in weights:  # one tensor at a time: never two full copies
                tensor = torch.as_tensor(weights[name])
                if tensor.shape != params[name].shape:
                    raise zoo.WeightsMismatchError(
                        f"{name} is {list(tensor.shape)}, expected {list(params[name].shape)} for {self.config}",
                        mismatched=[(name, tuple(tensor.shape), tuple(params[name].shape))],
                    )
                params[name].copy_(tensor)

    def export_weights(self) -> dict[str, torch.Tensor]:
        return {name: p.detach() for name, p in self.named_parameters()}
