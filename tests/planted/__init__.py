"""Planted bugs: small modifications of ``pure`` that the conformance harness must catch.

Each :class:`PlantedBug` names the property expected to catch it. The
catalogue is registered at run time (``zoo.register``) by the tests in
``tests/test_planted_bugs.py``; nothing here registers itself on import.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn

import zoo
from zoo.nn.kernels import Int8Linear
from zoo.nn.model import GPT

from .base import (
    CursorCache,
    ExactGeluMLP,
    NoBiasMLP,
    PerTokenInt8Input,
    Planted,
    swap_attention,
    swap_mlp,
    swap_positions,
)
from .context import ClampedPositions, ShortMaskWindow, WrappingCache
from .samplers import BoundaryDroppingTopP, TemperatureAfterFiltering, TopKOneTooMany

__all__ = ["CATALOGUE", "PlantedBug", "variant"]


# -- the bugs ----------------------------------------------------------------------------
class ExactGelu(Planted):
    def plant(self) -> None:
        swap_mlp(self, ExactGeluMLP)


class UntransposedProjection(Planted):
    def import_weights(self, weights: Mapping[str, Any]) -> None:  # one Conv1D weight left as Hugging Face stores it
        super().import_weights({k: (weights[k].T if k.endswith("attn.c_proj.weight") else weights[k]) for k in weights})


class NoCausalMask(Planted):
    def plant(self) -> None:
        swap_attention(self, causal=False)


class ScaleByD(Planted):
    def plant(self) -> None:
        swap_attention(self, scale_by_d=True)


class SoftmaxWrongAxis(Planted):
    def plant(self) -> None:
        swap_attention(self, softmax_dim=-2)


class CachePositionOffByOne(Planted):
    def plant(self) -> None:
        def mangle(pos: torch.Tensor, call: Any) -> torch.Tensor:
            ids, _, input_pos = call
            decoding = input_pos is not None and ids.size(1) == 1
            return (pos - 1).clamp_min(0) if decoding else pos

        swap_positions(self, mangle)


class PaddingPositions(Planted):
    def plant(self) -> None:
        def mangle(pos: torch.Tensor, call: Any) -> torch.Tensor:
            ids, _, input_pos = call  # forgets cumsum(mask) - 1: positions count the padding
            slots = torch.arange(ids.size(1), device=ids.device) if input_pos is None else input_pos
            return slots[None, :].expand_as(pos)

        swap_positions(self, mangle)


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
        swap_mlp(self, NoBiasMLP)


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


class HeadExportedAsWte(UntiedHead):
    """The head's own copy exported as wte, the lookup computing with another: right after every import."""

    def export_weights(self) -> dict[str, torch.Tensor]:
        out = super().export_weights()
        out["wte.weight"] = self.lm_head.weight.detach()
        return out


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


class QuantisedActivations(Planted):
    """int8 weight-only, as the int8 scheme declares, but the activations are rounded to int8 per token too."""

    @classmethod
    def build(cls, config: zoo.GPT2Config, *, device: Any = "cpu", dtype: torch.dtype = torch.bfloat16) -> GPT:
        model = zoo.nn.build(config, device=device, dtype=dtype, scheme="int8", cls=cls)
        for module in model.modules():
            if type(module) is Int8Linear:  # the Linears; the tied head and embedding are subclasses
                module.__class__ = PerTokenInt8Input
        return model


class UnwrittenSlotsAccepted(Planted):
    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                input_pos: torch.Tensor | None = None) -> torch.Tensor:
        if self.max_seq_length is not None:  # "robust": any slot of the cache counts as written
            self.cache_cursor = self.max_seq_length
        return super().forward(input_ids, attention_mask, input_pos)


@dataclass(frozen=True)
class PlantedBug:
    name: str  # registered as planted-NAME
    model: type[Planted]
    catches: str  # the property expected to fail
    summary: str
    also: tuple[str, ...] = ()  # other properties that must fail it too
    trainable: bool = True  # declared; a bug that training would catch hides better without it
    like: str | None = None  # declared as this built-in variant is (an approximate one: its dtype and tolerances)


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
    PlantedBug("untied-lm-head", UntiedHead, "training", "lm_head a separate parameter copied from wte",
               also=("tie",)),
    PlantedBug("stale-lm-head", StaleHead, "weights", "lm_head copied from wte at build, not on import",
               also=("tie",)),
    PlantedBug("head-exported-as-wte", HeadExportedAsWte, "tie",
               "lm_head's copy exported as wte; the lookup keeps its own (not trainable)", trainable=False),
    PlantedBug("stale-kv-cache", StaleCache, "incremental", "setup_caches() does not rewind the cache"),
    PlantedBug("nondeterministic", Noisy, "determinism", "logits carry random noise"),
    PlantedBug("clamps-ids", ClampsIds, "bad-input", "out-of-range ids silently clamped"),
    PlantedBug("unwritten-slots-accepted", UnwrittenSlotsAccepted, "bad-input",
               "input_pos may start past the slots written since setup_caches()"),
    PlantedBug("positions-clamped-at-63", ClampedPositions, "logits", "position ids clamped to 63",
               also=("padding",)),
    PlantedBug("kv-cache-wraps-at-256", WrappingCache, "incremental", "the KV cache writes position p at slot p % 256"),
    PlantedBug("mask-window-128", ShortMaskWindow, "padding",
               "the causal mask built for a window of 128: keys further back are masked", also=("logits",)),
    PlantedBug("top-k-one-too-many", TopKOneTooMany, "sampling", "top-k keeps the k + 1 likeliest tokens"),
    PlantedBug("top-p-drops-boundary", BoundaryDroppingTopP, "sampling",
               "top-p drops the token whose mass crosses top_p"),
    PlantedBug("temperature-after-filtering", TemperatureAfterFiltering, "sampling",
               "top-k and top-p filter the logits before the temperature divides them"),
    PlantedBug("int8-activations", QuantisedActivations, "fidelity",
               "declared int8 weight-only, but activations are rounded to int8 per token as well (naive W8A8)",
               trainable=False, like="quantised"),
)


def variant(bug: PlantedBug) -> zoo.Variant:
    """The zoo.Variant of a planted bug: pure's capabilities, float32 only (to keep the tests cheap)."""
    if bug.like is not None:
        declared = zoo.get_variant(bug.like)
        return dataclasses.replace(declared, name=f"planted-{bug.name}", build=bug.model.build,
                                   summary=f"{declared.name} with a planted bug: {bug.summary}")
    return zoo.Variant(
        name=f"planted-{bug.name}",
        build=bug.model.build,
        summary=f"pure with a planted bug: {bug.summary}",
        capabilities=zoo.Capabilities(devices=("cpu",), dtypes=("float32",), trainable=bug.trainable),
    )
