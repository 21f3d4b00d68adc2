"""The models the harness compares, each built once per (config, weights, dtype) and cached.

The ground truth is Hugging Face's ``GPT2LMHeadModel`` (eager attention, eval
mode) on the CPU, loaded with the very tensors the variant under test imports.
Weights start from :func:`zoo.random_weights`; :class:`WeightInit` scales the
matrices (GPT-2's std of 0.02 makes softmax and LayerNorm nearly linear, which
hides bugs) and gives biases and LayerNorm parameters non-trivial values (GPT-2
initialises them to 0 and 1, which would hide a dropped bias or a swapped
LayerNorm).

Small models live in a bounded LRU cache; models of more than
``BIG_PARAMS`` parameters (the 124M shape) are kept until :func:`clear` so
that each property's pinned 124M example reuses them.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

import zoo
import zoo.hf
from zoo.weight_map import HF, TIED, from_canonical, to_canonical

if TYPE_CHECKING:
    import torch

__all__ = [
    "WeightInit",
    "canonical_weights",
    "clear",
    "hf_model",
    "reference_gradients",
    "reference_logits",
    "reference_model",
    "variant_model",
]

BIG_PARAMS = 5_000_000
_SMALL_ENTRIES = 48
T = TypeVar("T")


class WeightInit(NamedTuple):
    """How to make the canonical weights of one example."""

    seed: int = 0
    scale: float = 1.0  # multiplies the std of every weight matrix (GPT-2: 0.02)
    wte_seed: int | None = None  # take wte from another seed (checks that lm_head follows wte)


class _Cache:
    def __init__(self) -> None:
        self._small: OrderedDict[Hashable, Any] = OrderedDict()
        self._big: dict[Hashable, Any] = {}
        self._lock = threading.Lock()

    def get(self, key: Hashable, big: bool, make: Callable[[], T]) -> T:
        with self._lock:
            if key in self._big:
                return self._big[key]
            if key in self._small:
                self._small.move_to_end(key)
                return self._small[key]
        value = make()
        with self._lock:
            if big:
                self._big[key] = value
            else:
                self._small[key] = value
                while len(self._small) > _SMALL_ENTRIES:
                    self._small.popitem(last=False)
        return value

    def drop(self, predicate: Callable[[Hashable], bool]) -> None:
        with self._lock:
            for store in (self._small, self._big):
                for key in [k for k in store if predicate(k)]:
                    del store[key]


_weights = _Cache()
_references = _Cache()
_variants = _Cache()
_logits = _Cache()  # Hugging Face's logits on big configs (the 124M shape's whole context costs seconds)


def _is_big(config: zoo.GPT2Config) -> bool:
    return config.n_params > BIG_PARAMS


def clear(variant: str | None = None) -> None:
    """Forget cached variant models (of ``variant`` only, if given); ``None`` also drops references and weights."""
    if variant is None:
        for cache in (_weights, _references, _variants, _logits):
            cache.drop(lambda key: True)
    else:
        _variants.drop(lambda key: key[0] == variant)  # type: ignore[index]


def canonical_weights(config: zoo.GPT2Config, init: WeightInit) -> dict[str, torch.Tensor]:
    """The canonical float32 state dict of one example (cached; never modify it)."""

    def make() -> dict[str, torch.Tensor]:
        import torch

        base = zoo.random_weights(config, init.seed)
        g = torch.Generator().manual_seed(init.seed * 7919 + 17)
        out: dict[str, torch.Tensor] = {}
        for name in base:
            tensor = base[name]
            if name.endswith(".bias"):
                tensor = torch.randn(tensor.shape, generator=g) * (0.02 * init.scale)
            elif name.startswith("ln_") or ".ln_" in name:
                tensor = 1.0 + 0.1 * torch.randn(tensor.shape, generator=g)
            else:
                tensor = tensor * init.scale
            out[name] = tensor.contiguous()
        if init.wte_seed is not None:
            out["wte.weight"] = (zoo.random_weights(config, init.wte_seed)["wte.weight"] * init.scale).contiguous()
        return out

    return _weights.get((config, init), _is_big(config), make)


def hf_model(config: zoo.GPT2Config, weights: Mapping[str, Any], dtype: torch.dtype | None = None) -> Any:
    """Hugging Face's ``GPT2LMHeadModel`` (eager attention, eval mode, CPU) holding canonical ``weights``."""
    import torch

    model = zoo.hf.hf_model(config, dtype=dtype)  # the public reference; this function fills in weights
    params = dict(model.named_parameters())
    with torch.no_grad():
        for key, tensor in from_canonical(weights, HF):
            if key != TIED[0]:  # lm_head.weight is wte.weight
                params[key].copy_(tensor)
    return model.eval()


def reference_model(config: zoo.GPT2Config, init: WeightInit, dtype: torch.dtype) -> Any:
    """:func:`hf_model` with the example's weights (cached)."""
    return _references.get(
        (config, init, dtype), _is_big(config), lambda: hf_model(config, canonical_weights(config, init), dtype)
    )


def hf_position_ids(mask: torch.Tensor) -> torch.Tensor:
    """Position ids for a left-padded batch, as Hugging Face's ``generate`` computes them."""
    mask = mask.long()
    return (mask.cumsum(-1) - 1).masked_fill(mask == 0, 1)


def reference_logits(
    config: zoo.GPT2Config,
    init: WeightInit,
    dtype: torch.dtype,
    ids: torch.Tensor,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Hugging Face's logits in ``dtype`` for ``ids`` (and a left-padding mask), as float64 on the CPU.

    Those of big configs are kept (in ``dtype``) until :func:`clear`: every variant meets the same pinned cases.
    """
    import torch

    def make() -> torch.Tensor:
        model = reference_model(config, init, dtype)
        kwargs: dict[str, Any] = {}
        if mask is not None:
            kwargs = {"attention_mask": mask.cpu(), "position_ids": hf_position_ids(mask.cpu())}
        with torch.no_grad():
            return model(input_ids=ids.cpu(), use_cache=False, **kwargs).logits

    if not _is_big(config):
        return make().double()
    key = (config, init, dtype, ids.cpu().numpy().tobytes(), tuple(ids.shape),
           None if mask is None else mask.cpu().numpy().tobytes())
    return _logits.get(key, True, make).double()


def reference_gradients(
    config: zoo.GPT2Config, init: WeightInit, dtype: torch.dtype, ids: torch.Tensor
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Hugging Face's next-token cross-entropy loss and its gradient per canonical weight, as float64."""
    import torch

    model = reference_model(config, init, dtype)
    params = dict(model.named_parameters())
    with torch.enable_grad():
        logits = model(input_ids=ids.cpu(), use_cache=False).logits
        loss = next_token_loss(logits, ids.cpu())
        grads = torch.autograd.grad(loss, list(params.values()))
    by_hf_name = {name: g.double() for name, g in zip(params, grads, strict=True)}
    canonical = to_canonical(by_hf_name, config, HF)
    return loss.detach().double(), {name: canonical[name].contiguous() for name in canonical}


def next_token_loss(logits: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of predicting ``ids[:, 1:]`` from ``logits[:, :-1]``."""
    import torch.nn.functional as F

    V = logits.size(-1)
    return F.cross_entropy(logits[:, :-1].reshape(-1, V), ids[:, 1:].reshape(-1).to(logits.device))


def variant_model(
    variant: zoo.Variant,
    config: zoo.GPT2Config,
    init: WeightInit,
    device: str,
    dtype: torch.dtype,
    purpose: str = "shared",
) -> zoo.GPT2:
    """``variant`` built on ``device`` in ``dtype`` with the example's weights imported (cached).

    ``purpose`` separates models a property mutates (``"scratch"``: weights
    re-imported) from the shared, read-only ones.
    """

    def make() -> zoo.GPT2:
        import torch

        torch.manual_seed(init.seed)
        model = variant.build(config, device=torch.device(device), dtype=dtype)
        model.import_weights(canonical_weights(config, init))
        return model

    key = (variant.name, id(variant.build), config, init, device, dtype, purpose)
    return _variants.get(key, _is_big(config), make)
