"""Planted bugs that show only far into the context: past position 63, 128 or 256."""

from __future__ import annotations

import torch

from zoo.nn.model import KVCache

from .base import Planted, swap_positions

__all__ = ["ClampedPositions", "ShortMaskWindow", "WrappingCache"]


class ClampedPositions(Planted):
    """Position ids clamped to 63, as if the position table had 64 rows."""

    def plant(self) -> None:
        swap_positions(self, lambda pos, call: pos.clamp(max=63))


class RingCache(KVCache):
    """A cache that writes position p at slot p % 256: a ring of 256 slots, whatever was allocated."""

    def update(self, input_pos: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return super().update(input_pos % 256, k, v)


class WrappingCache(Planted):
    def setup_caches(self, max_batch_size: int, max_seq_length: int, *, cache_length: int | None = None) -> None:
        super().setup_caches(max_batch_size, max_seq_length, cache_length=cache_length)
        for attn in self.attentions():
            assert attn.kv_cache is not None
            attn.kv_cache.__class__ = RingCache


class ShortMaskWindow(Planted):
    """The causal mask from a band of 128 slots: keys more than 128 positions back are never attended to."""

    def positions(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None,
                  input_pos: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        pos, allowed = super().positions(input_ids, attention_mask, input_pos)
        queries = torch.arange(input_ids.size(1), device=input_ids.device) if input_pos is None else input_pos
        keys = torch.arange(allowed.size(-1), device=input_ids.device)
        return pos, allowed & (keys[None, :] > queries[:, None] - 128)[None, None]
