"""The adapter from ``GPT2LMHeadModel`` to ``zoo.GPT2``."""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn as nn

import zoo
from zoo.hf import hf_model
from zoo.weight_map import HF, TIED, checked, from_canonical, to_canonical


def _new_cache() -> Any:
    from transformers import DynamicCache

    return DynamicCache()


def _cache_kwarg(model: nn.Module) -> str:
    """transformers 5 renamed ``past_key_values`` to ``cache``; 4.x knows only the old name."""
    return "cache" if "cache" in inspect.signature(type(model).forward).parameters else "past_key_values"


class HFGPT2(nn.Module, zoo.GPT2):
    def __init__(self, model: nn.Module, config: zoo.GPT2Config) -> None:
        super().__init__()
        self.model = model
        self.config = config
        self._cache: Any = None
        self._cache_len = 0
        self.max_batch_size = 0
        self.max_seq_length: int | None = None

    @classmethod
    def build(cls, config: zoo.GPT2Config, *, device: Any = "cpu", dtype: Any = None,
              weights: Mapping[str, Any] | None = None, attn_implementation: str = "sdpa") -> HFGPT2:
        if weights is None:
            # GPT-2's initialisation from torch's global RNG: the same weights as ``pure`` after one seed
            weights = zoo.random_weights(config, seed=int(torch.randint(2**31, ())))
        wrapped = cls(hf_model(config, attn_implementation=attn_implementation, device=device, dtype=dtype), config)
        wrapped.import_weights(weights)
        return wrapped.eval()

    @property
    def device(self) -> torch.device:
        return self.model.transformer.wte.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.model.transformer.wte.weight.dtype

    def setup_caches(self, max_batch_size: int, max_seq_length: int) -> None:
        zoo.check_cache_size(self.config, max_batch_size, max_seq_length, dtype=self.dtype, device=self.device)
        self.max_batch_size, self.max_seq_length = max_batch_size, max_seq_length
        self._cache, self._cache_len = _new_cache(), 0

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                input_pos: torch.Tensor | None = None) -> torch.Tensor:
        zoo.check_inputs(self.config, input_ids, attention_mask, input_pos, device=self.device,
                         max_seq_length=self.max_seq_length, max_batch_size=self.max_batch_size,
                         cache_cursor=self._cache_len)
        B, T = input_ids.shape
        if input_pos is None:
            positions = torch.arange(T, device=input_ids.device)
            cache = None
        else:
            start = int(input_pos[0])  # check_inputs: consecutive, and start <= self._cache_len
            if start == 0:
                self._cache, self._cache_len = _new_cache(), 0
            elif start < self._cache_len:  # going back: forget the slots from start on, as a static cache would
                self._cache.crop(start - self._cache_len)  # negative: drop that many (transformers 4 and 5 alike)
                self._cache_len = start
            positions, cache = input_pos, self._cache
        if attention_mask is None:
            position_ids = positions[None, :].expand(B, T)
        else:
            mask = attention_mask.long()
            position_ids = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 1)[:, positions]
        kwargs = {_cache_kwarg(self.model): cache} if cache is not None else {}
        out = self.model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                         use_cache=cache is not None, **kwargs)
        if cache is not None:
            self._cache_len += T
        return out.logits

    def import_weights(self, weights: Mapping[str, Any]) -> None:
        params = dict(self.model.named_parameters())  # lm_head.weight is tied: not listed
        with torch.no_grad():
            for key, tensor in from_canonical(checked(weights, self.config), HF):  # one tensor at a time
                if key != TIED[0]:  # lm_head.weight is the same parameter as wte.weight
                    params[key].copy_(torch.as_tensor(tensor))

    def export_weights(self) -> dict[str, torch.Tensor]:
        state = {k: p.detach() for k, p in self.model.named_parameters()}
        return dict(to_canonical(state, self.config, HF))
