"""GPT-2's random initialisation, as canonical weights generated one tensor at a time."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from ._config import GPT2Config
from ._inputs import SEED_LIMIT, check_seed
from .weight_map import CANONICAL, CanonicalWeights, canonical_shapes, to_canonical

__all__ = ["random_weights"]


class _RandomWeights(Mapping[str, Any]):
    """GPT-2's initialisation, generated one tensor at a time, reproducibly per (seed, name)."""

    def __init__(self, config: GPT2Config, seed: int) -> None:
        self._config = config
        self._seed = seed
        self._shapes = canonical_shapes(config)
        self._index = {name: i for i, name in enumerate(self._shapes)}

    def shape_of(self, name: str) -> tuple[int, ...]:
        return self._shapes[name]

    def __getitem__(self, name: str) -> Any:
        import torch

        shape, c = self._shapes[name], self._config
        if name.endswith(".bias"):
            return torch.zeros(shape)
        if ".ln_" in "." + name:
            return torch.ones(shape)
        generator = torch.Generator().manual_seed((self._seed * 1_000_003 + self._index[name]) % SEED_LIMIT)
        # GPT-2's scheme: residual projections scaled by 1/sqrt(2 * n_layer)
        std = c.initializer_range
        if name.endswith("c_proj.weight"):
            std /= (2 * c.n_layer) ** 0.5
        return torch.empty(shape).normal_(0.0, std, generator=generator)

    def __iter__(self) -> Iterator[str]:
        return iter(self._shapes)

    def __len__(self) -> int:
        return len(self._shapes)


def random_weights(config: GPT2Config, seed: int = 0) -> CanonicalWeights:
    """Canonical GPT-2 weights with Hugging Face's initialisation, generated lazily.

    ``seed`` is an int in ``[0, 2**64)`` (:class:`zoo.InvalidInputError` otherwise).
    The same ``(config, seed)`` gives the same weights for every variant, so
    two variants loaded with one seed are directly comparable.
    """
    return to_canonical(_RandomWeights(config, check_seed(seed)), config, CANONICAL)
