"""The pieces planted bugs are made of: pure's model with hooks a bug overrides, and modified modules."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

import zoo
import zoo.nn
from zoo.nn.kernels import Int8Linear
from zoo.nn.model import GPT, MLP, CausalSelfAttention, KVCache

__all__ = ["Attention", "CursorCache", "ExactGeluMLP", "NoBiasMLP", "Planted", "Positions",
           "swap_attention", "swap_mlp", "swap_positions"]


class Attention(CausalSelfAttention):
    """pure's attention with knobs for the classic mistakes."""

    scale_by_d = False  # 1/d instead of 1/sqrt(d)
    causal = True
    softmax_dim = -1

    def forward(self, x: torch.Tensor, bias: torch.Tensor, input_pos: torch.Tensor | None) -> torch.Tensor:
        B, T, C = x.size()
        q, k, v = self.c_attn(x).split(self.n_embd, dim=2)
        hs = C // self.n_head
        q = q.view(B, T, self.n_head, hs).transpose(1, 2)
        k = k.view(B, T, self.n_head, hs).transpose(1, 2)
        v = v.view(B, T, self.n_head, hs).transpose(1, 2)
        if input_pos is not None:
            assert self.kv_cache is not None
            k, v = self.kv_cache.update(input_pos, k, v)
        att = (q @ k.transpose(-2, -1)) * (1.0 / (hs if self.scale_by_d else math.sqrt(hs)))
        if not self.causal and input_pos is None:
            bias = torch.zeros_like(bias)
        att = att + bias
        att = F.softmax(att, dim=self.softmax_dim)
        y = (att @ v).transpose(1, 2).contiguous().view(B, T, C)
        return self.c_proj(y)


class ExactGeluMLP(MLP):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c_proj(F.gelu(self.c_fc(x)))  # nanoGPT's trap: GPT-2 uses the tanh approximation


class NoBiasMLP(MLP):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c_proj(F.gelu(F.linear(x, self.c_fc.weight), approximate="tanh"))


class PerTokenInt8Input(Int8Linear):
    """An int8 Linear that also rounds its input to int8, one symmetric scale per token."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = x.abs().amax(-1, keepdim=True).clamp_min(1e-8) / 127
        return super().forward((x / scale).round().clamp(-127, 127) * scale)


class Positions(nn.Embedding):
    """wpe, with the positions its model hands it mangled."""

    mangle: Callable[[torch.Tensor, Any], torch.Tensor] = staticmethod(lambda pos, call: pos)
    call: Any = None

    def forward(self, pos: torch.Tensor) -> torch.Tensor:
        return super().forward(type(self).mangle(pos, self.call))


class CursorCache(KVCache):
    """A cache that writes where it last stopped, whatever input_pos says, and is never rewound."""

    cursor = 0

    def update(self, input_pos: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        slots = torch.arange(self.cursor, self.cursor + k.size(2), device=k.device)
        self.cursor += k.size(2)
        return super().update(slots, k, v)


class Planted(GPT):
    """pure, plus hooks a bug overrides."""

    @classmethod
    def build(cls, config: zoo.GPT2Config, *, device: Any = "cpu", dtype: torch.dtype = torch.float32) -> GPT:
        model = zoo.nn.build(config, device=device, dtype=dtype, cls=cls)
        assert isinstance(model, Planted)
        model.plant()
        return model

    def plant(self) -> None:
        """Swap modules after building."""

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                input_pos: torch.Tensor | None = None) -> torch.Tensor:
        if isinstance(self.wpe, Positions):
            self.wpe.call = (input_ids, attention_mask, input_pos)
        return super().forward(input_ids, attention_mask, input_pos)


def swap_attention(model: GPT, **knobs: Any) -> None:
    cls = type("PlantedAttention", (Attention,), knobs)
    for block in model.h:
        block.attn.__class__ = cls


def swap_mlp(model: GPT, cls: type[MLP]) -> None:
    for block in model.h:
        block.mlp.__class__ = cls


def swap_positions(model: GPT, mangle: Callable[[torch.Tensor, Any], torch.Tensor]) -> None:
    model.wpe.__class__ = type("PlantedPositions", (Positions,), {"mangle": staticmethod(mangle)})
