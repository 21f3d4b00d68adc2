"""GPT-2 whose attention is one call to ``torch.nn.functional.scaled_dot_product_attention``.

Module names equal Hugging Face's (``wte``, ``h.{i}.attn.c_attn``, ``ln_f``...), so
``named_parameters()`` is already the zoo's canonical state dict, and there is no
``lm_head`` module: the logits are ``x @ wte.weight.T``, which is GPT-2's weight tie
by construction.

Everything attention needs besides q, k and v goes into SDPA's ``attn_mask``: the
causal rule, left padding and, with the KV cache, which cache slots exist yet. A
plain forward (no padding, no cache) passes ``is_causal=True`` instead, the case
that SDPA's fused kernels serve best.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
import zoo
from torch import nn
from zoo.weight_map import CANONICAL, CanonicalWeights, to_canonical


class CausalSelfAttention(nn.Module):
    k_cache: torch.Tensor | None
    v_cache: torch.Tensor | None

    def __init__(self, config: zoo.GPT2Config) -> None:
        super().__init__()
        self.n_head = config.n_head
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd)  # q, k, v for all heads at once
        self.c_proj = nn.Linear(config.n_embd, config.n_embd)
        # the static KV cache, (max_batch_size, nh, max_seq_length, hs): allocated by setup_caches()
        self.register_buffer("k_cache", None, persistent=False)
        self.register_buffer("v_cache", None, persistent=False)

    def allocate_cache(self, shape: tuple[int, ...], device: torch.device, dtype: torch.dtype) -> None:
        # zeros, not empty(): slots not yet written must hold finite values
        self.k_cache = torch.zeros(shape, device=device, dtype=dtype)
        self.v_cache = torch.zeros(shape, device=device, dtype=dtype)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None,
                input_pos: torch.Tensor | None) -> torch.Tensor:
        B, T, C = x.size()  # batch, tokens, n_embd
        hs = C // self.n_head
        qkv = self.c_attn(x).view(B, T, 3, self.n_head, hs)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # 3 x (B, nh, T, hs)
        if input_pos is not None:
            if self.k_cache is None or self.v_cache is None:
                raise zoo.InvalidInputError("input_pos was given but no KV cache is set up; "
                                            "call setup_caches() first")
            self.k_cache[:B, :, input_pos] = k
            self.v_cache[:B, :, input_pos] = v
            k, v = self.k_cache[:B], self.v_cache[:B]  # (B, nh, S, hs)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, is_causal=attn_mask is None,
                                           scale=1.0 / math.sqrt(hs))  # (B, nh, T, hs)
        y = y.transpose(1, 2).reshape(B, T, C)  # re-assemble all heads side by side
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

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None,
                input_pos: torch.Tensor | None) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), attn_mask, input_pos)  # pre-norm residual stream
        return x + self.mlp(self.ln_2(x))


class SdpaGPT(nn.Module, zoo.GPT2):
    def __init__(self, config: zoo.GPT2Config) -> None:
        super().__init__()
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)  # token embedding, and the output layer
        self.wpe = nn.Embedding(config.n_positions, config.n_embd)  # position embedding
        self.h = nn.ModuleList([Block(config) for _ in range(config.n_layer)])
        self.ln_f = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)
        self.max_batch_size = 0
        self.max_seq_length: int | None = None  # set by setup_caches()

    @classmethod
    def build(cls, config: zoo.GPT2Config, *, device: torch.device | str = "cpu",
              dtype: torch.dtype = torch.float32) -> SdpaGPT:
        """GPT-2's random initialisation, drawn from torch's global RNG, allocated once on ``device``.

        The weights come from ``zoo.random_weights``, so after the same
        ``torch.manual_seed`` this model holds the same weights as every other variant.
        """
        with torch.device("meta"):
            model = cls(config).to(dtype=dtype)
        model.to_empty(device=device)
        model.import_weights(zoo.random_weights(config, seed=int(torch.randint(2**31, ()))))
        return model.eval()

    @property
    def device(self) -> torch.device:
        return self.wte.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.wte.weight.dtype

    def setup_caches(self, max_batch_size: int, max_seq_length: int) -> None:
        if not 0 < max_seq_length <= self.config.n_positions:
            raise zoo.InvalidInputError(
                f"max_seq_length={max_seq_length} must be in [1, n_positions={self.config.n_positions}]"
            )
        if max_batch_size <= 0:
            raise zoo.InvalidInputError(f"max_batch_size={max_batch_size} must be positive")
        self.max_batch_size, self.max_seq_length = max_batch_size, max_seq_length
        shape = (max_batch_size, self.config.n_head, max_seq_length, self.config.head_size)
        for module in self.modules():
            if isinstance(module, CausalSelfAttention):
                module.allocate_cache(shape, self.device, self.dtype)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                input_pos: torch.Tensor | None = None) -> torch.Tensor:
        zoo.check_inputs(self.config, input_ids, attention_mask, input_pos, device=self.device,
                         max_seq_length=self.max_seq_length, max_batch_size=self.max_batch_size)
        B, T = input_ids.size()
        attn_mask, pos = self._attention_mask(B, T, attention_mask, input_pos)
        x = self.wte(input_ids) + self.wpe(pos)  # (B, T, C)
        for block in self.h:
            x = block(x, attn_mask, input_pos)
        x = self.ln_f(x)
        return F.linear(x, self.wte.weight)  # (B, T, vocab_size): the tied output layer, every position

    def _attention_mask(self, B: int, T: int, attention_mask: torch.Tensor | None,
                        input_pos: torch.Tensor | None) -> tuple[torch.Tensor | None, torch.Tensor]:
        """SDPA's boolean ``attn_mask`` (True: may attend; ``None``: plain causal) and positions (B, T)."""
        device = self.device
        query_slots = torch.arange(T, device=device) if input_pos is None else input_pos  # (T,)
        if attention_mask is None:
            pos = query_slots[None, :].expand(B, T)
            if input_pos is None:
                return None, pos  # SDPA's is_causal=True
        else:
            mask = attention_mask.bool()  # (B, L): L = T, or the cache slots written so far
            pos = (mask.long().cumsum(-1) - 1).masked_fill(~mask, 1)  # as Hugging Face's generate
            pos = pos[:, query_slots]  # (B, T)
        S = self.max_seq_length if input_pos is not None and self.max_seq_length else T  # key slots
        allowed = torch.arange(S, device=device)[None, :] <= query_slots[:, None]  # causal (T, S)
        if attention_mask is None:
            return allowed[None, None], pos  # (1, 1, T, S)
        keys = F.pad(mask, (0, S - mask.size(-1)))  # (B, S): padding and unwritten slots are False
        allowed = allowed[None] & keys[:, None, :]  # (B, T, S)
        # a padding token may have no key to attend to. SDPA kernels have not always agreed on such a
        # row (NaN in some torch versions and GPU kernels, zeros in torch 2.13 on the CPU), so let it
        # attend to every slot instead: finite everywhere (its logits are unspecified; no real token reads it)
        allowed = allowed | ~allowed.any(dim=-1, keepdim=True)
        return allowed[:, None], pos  # (B, 1, T, S)

    def import_weights(self, weights: Mapping[str, Any]) -> None:
        if not isinstance(weights, CanonicalWeights):  # a plain dict: check every key and shape first
            weights = to_canonical(weights, self.config, CANONICAL)
        params = dict(self.named_parameters())
        with torch.no_grad():
            for name in weights:  # one tensor at a time: never two full copies
                tensor = torch.as_tensor(weights[name])
                if tensor.shape != params[name].shape:
                    expected = tuple(params[name].shape)
                    raise zoo.WeightsMismatchError(
                        f"{name} is {list(tensor.shape)}, expected {list(expected)} for {self.config}",
                        mismatched=[(name, tuple(tensor.shape), expected)],
                    )
                params[name].copy_(tensor)

    def export_weights(self) -> dict[str, torch.Tensor]:
        return {name: p.detach() for name, p in self.named_parameters()}
