"""Planted bugs in a sampler of the model's own (``sampling_distribution``, which ``zoo.generate`` then uses)."""

from __future__ import annotations

import torch

import zoo

from .base import Planted

__all__ = ["BoundaryDroppingTopP", "TemperatureAfterFiltering", "TopKOneTooMany"]


class TopKOneTooMany(Planted):
    """top-k keeps the k + 1 likeliest tokens (the threshold read one place too far down)."""

    def sampling_distribution(self, logits: torch.Tensor, temperature: float, top_k: int | None,
                              top_p: float | None) -> torch.Tensor:
        return zoo.sampling_distribution(logits, temperature, None if top_k is None else top_k + 1, top_p)


class BoundaryDroppingTopP(Planted):
    """top-p keeps the likeliest tokens whose mass stays within top_p, dropping the one that crosses it."""

    def sampling_distribution(self, logits: torch.Tensor, temperature: float, top_k: int | None,
                              top_p: float | None) -> torch.Tensor:
        probs = zoo.sampling_distribution(logits, temperature, top_k, None)
        if top_p is None or top_p >= 1.0:
            return probs
        ordered, order = torch.sort(probs, descending=True, dim=-1)
        drop = ordered.cumsum(dim=-1) > top_p  # Hugging Face keeps the token that crosses top_p
        drop[..., 0] = False
        probs = probs.masked_fill(drop.scatter(-1, order, drop), 0.0)
        return probs / probs.sum(dim=-1, keepdim=True)


class TemperatureAfterFiltering(Planted):
    """top-k and top-p filter the raw logits; the temperature only reshapes what is left."""

    def sampling_distribution(self, logits: torch.Tensor, temperature: float, top_k: int | None,
                              top_p: float | None) -> torch.Tensor:
        filtered = zoo.sampling_distribution(logits, 1.0, top_k, top_p).log()  # log(0) = -inf: still filtered
        return (filtered / temperature).softmax(dim=-1)
