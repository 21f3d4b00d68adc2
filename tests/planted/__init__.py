"""Planted bugs: small modifications of ``pure`` that the conformance harness must catch.

Each :class:`PlantedBug` names the property expected to catch it. The
catalogue is registered at run time (``zoo.register``) by the tests in
``tests/test_planted_bugs.py``; nothing here registers itself on import.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

import zoo
import zoo.nn
from zoo.nn.model import GPT, MLP, CausalSelfAttention, KVCache

__all__ = ["CATALOGUE", "PlantedBug", "variant"]


# -- modified pieces ---------------------------------------------------------------------
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


def _swap_attention(model: GPT, **knobs: Any) -> None:
    cls = type("PlantedAttention", (Attention,), knobs)
    for block in model.h:
        block.attn.__class__ = cls


def _swap_mlp(model: GPT, cls: type[MLP]) -> None:
    for block in model.h:
        block.mlp.__class__ = cls


def _swap_positions(model: GPT, mangle: Callable[[torch.Tensor, Any], torch.Tensor]) -> None:
    model.wpe.__class__ = type("PlantedPositions", (Positions,), {"mangle": staticmethod(mangle)})


# -- the bugs ----------------------------------------------------------------------------
class ExactGelu(Planted):
    def plant(self) -> None:
        _swap_mlp(self, ExactGeluMLP)


class UntransposedProjection(Planted):
    def import_weights(self, weights: Mapping[str, Any]) -> None:  # one Conv1D weight left as Hugging Face stores it
        super().import_weights({k: (weights[k].T if k.endswith("attn.c_proj.weight") else weights[k]) for k in weights})


class NoCausalMask(Planted):
    def plant(self) -> None:
        _swap_attention(self, causal=False)


class ScaleByD(Planted):
    def plant(self) -> None:
        _swap_attention(self, scale_by_d=True)


class SoftmaxWrongAxis(Planted):
    def plant(self) -> None:
        _swap_attention(self, softmax_dim=-2)


class CachePositionOffByOne(Planted):
    def plant(self) -> None:
        def mangle(pos: torch.Tensor, call: Any) -> torch.Tensor:
            ids, _, input_pos = call
            decoding = input_pos is not None and ids.size(1) == 1
            return (pos - 1).clamp_min(0) if decoding else pos

        _swap_positions(self, mangle)


class PaddingPositions(Planted):
    def plant(self) -> None:
        def mangle(pos: torch.Tensor, call: Any) -> torch.Tensor:
            ids, _, input_pos = call  # forgets cumsum(mask) - 1: positions count the padding
            slots = torch.arange(ids.size(1), device=ids.device) if input_pos is None else input_pos
            return slots[None, :].expand_as(pos)

        _swap_positions(self, mangle)


class LayerNormEps(Planted):
    eps = 1e-3

    def plant(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.LayerNorm):
                module.eps = self.eps


class LayerNormNoEps(LayerNormEps):
    eps = 0.0


class DroppedBias(Planted):
    def plant(self) -> None:
        _swap_mlp(self, NoBiasMLP)


class IgnoresPaddingMask(Planted):
    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                input_pos: torch.Tensor | None = None) -> torch.Tensor:
        return super().forward(input_ids, None, input_pos)


class LastPositionOnly(Planted):
    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                input_pos: torch.Tensor | None = None) -> torch.Tensor:
        logits = super().forward(input_ids, attention_mask, input_pos)
        return logits[:, -1:].expand_as(logits)


class UntiedHead(Planted):
    """lm_head is its own parameter, refreshed from wte on import: logits are right, training is not."""

    def plant(self) -> None:
        self.lm_head.weight = nn.Parameter(self.wte.weight.detach().clone())

    def import_weights(self, weights: Mapping[str, Any]) -> None:
        super().import_weights(weights)
        if self.lm_head.weight is not self.wte.weight:
            with torch.no_grad():
                self.lm_head.weight.copy_(self.wte.weight)

    def export_weights(self) -> dict[str, torch.Tensor]:
        out = super().export_weights()
        out.pop("lm_head.weight", None)
        return out


class StaleHead(UntiedHead):
    """lm_head copied from wte once, when the model was built, and never again."""

    def import_weights(self, weights: Mapping[str, Any]) -> None:
        GPT.import_weights(self, weights)


class StaleCache(Planted):
    def setup_caches(self, max_batch_size: int, max_seq_length: int) -> None:
        cache = self.h[0].attn.kv_cache
        if cache is not None and cache.k.size(0) >= max_batch_size and cache.k.size(2) >= max_seq_length:
            self.max_batch_size, self.max_seq_length = cache.k.size(0), cache.k.size(2)
            return  # "already allocated": but the cursor is never rewound
        super().setup_caches(max_batch_size, max_seq_length)
        for block in self.h:
            block.attn.kv_cache.__class__ = CursorCache


class Noisy(Planted):
    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                input_pos: torch.Tensor | None = None) -> torch.Tensor:
        logits = super().forward(input_ids, attention_mask, input_pos)
        return logits + 1e-4 * torch.randn_like(logits)


class ClampsIds(Planted):
    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                input_pos: torch.Tensor | None = None) -> torch.Tensor:
        if isinstance(input_ids, torch.Tensor) and not input_ids.is_floating_point() and input_ids.numel():
            input_ids = input_ids.clamp(0, self.config.vocab_size - 1)  # "robust": silently wrong
        return super().forward(input_ids, attention_mask, input_pos)


@dataclass(frozen=True)
class PlantedBug:
    name: str  # registered as planted-NAME
    model: type[Planted]
    catches: str  # the property expected to fail
    summary: str


CATALOGUE: tuple[PlantedBug, ...] = (
    PlantedBug("exact-gelu", ExactGelu, "logits", "exact GELU instead of GPT-2's tanh approximation"),
    PlantedBug("untransposed-c-proj", UntransposedProjection, "logits", "attn.c_proj weight imported transposed"),
    PlantedBug("no-causal-mask", NoCausalMask, "causality", "attention sees future tokens"),
    PlantedBug("scale-by-d", ScaleByD, "logits", "attention scaled by 1/d instead of 1/sqrt(d)"),
    PlantedBug("softmax-wrong-axis", SoftmaxWrongAxis, "logits", "softmax over queries instead of keys"),
    PlantedBug("cache-position-off-by-one", CachePositionOffByOne, "incremental",
               "decode steps through the KV cache use position t-1"),
    PlantedBug("padding-positions", PaddingPositions, "padding", "positions count padding (no cumsum of the mask)"),
    PlantedBug("ln-eps-1e-3", LayerNormEps, "logits", "LayerNorm eps 1e-3 instead of the config's"),
    PlantedBug("ln-no-eps", LayerNormNoEps, "logits", "LayerNorm without eps"),
    PlantedBug("dropped-bias", DroppedBias, "logits", "the MLP's c_fc bias is dropped"),
    PlantedBug("ignores-padding-mask", IgnoresPaddingMask, "padding", "attention_mask ignored"),
    PlantedBug("last-position-only", LastPositionOnly, "logits", "logits right only at the last position"),
    PlantedBug("untied-lm-head", UntiedHead, "training", "lm_head a separate parameter copied from wte"),
    PlantedBug("stale-lm-head", StaleHead, "weights", "lm_head copied from wte at build, not on import"),
    PlantedBug("stale-kv-cache", StaleCache, "incremental", "setup_caches() does not rewind the cache"),
    PlantedBug("nondeterministic", Noisy, "determinism", "logits carry random noise"),
    PlantedBug("clamps-ids", ClampsIds, "bad-input", "out-of-range ids silently clamped"),
)


def variant(bug: PlantedBug) -> zoo.Variant:
    """The zoo.Variant of a planted bug: pure's capabilities, float32 only (to keep the tests cheap)."""
    return zoo.Variant(
        name=f"planted-{bug.name}",
        build=bug.model.build,
        summary=f"pure with a planted bug: {bug.summary}",
        capabilities=zoo.Capabilities(devices=("cpu",), dtypes=("float32",), trainable=True),
    )
