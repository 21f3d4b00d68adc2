"""``zoo.load``: a variant by name, with weights from anywhere the zoo can read."""

from __future__ import annotations

import inspect
import logging
import os
import time
from collections.abc import Mapping
from typing import Any

from ._config import PRESETS, GPT2Config
from ._errors import CapabilityError, ConfigError, WeightsError
from ._inputs import check_seed, device_memory, format_bytes
from ._interface import GPT2, PRECISIONS, Variant
from ._random import random_weights
from ._registry import get_variant
from ._weights import open_weights

__all__ = ["load", "resolve_dtype"]

log = logging.getLogger("zoo")


def resolve_dtype(dtype: Any, allowed: tuple[str, ...], variant: str) -> Any:
    """A ``torch.dtype`` from a dtype or its name, checked against a variant's declared dtypes."""
    import torch

    if dtype is None:
        name = allowed[0]
    elif isinstance(dtype, torch.dtype):
        name = str(dtype).removeprefix("torch.")
    else:
        name = {"fp32": "float32", "fp64": "float64", "bf16": "bfloat16", "float": "float32",
                "double": "float64"}.get(str(dtype), str(dtype).removeprefix("torch."))
    if name not in allowed:
        raise CapabilityError(
            f"variant {variant!r} does not support dtype {name!r}; it offers {', '.join(allowed)}"
        )
    return getattr(torch, name)


def _resolve_device(device: Any, allowed: tuple[str, ...], variant: str) -> Any:
    import torch

    try:
        dev = torch.device(device if device is not None else "cpu")
    except (RuntimeError, TypeError) as exc:
        raise CapabilityError(
            f"{device!r} is not a device torch knows; variant {variant!r} offers {', '.join(allowed)}"
        ) from exc
    if dev.type not in allowed:
        raise CapabilityError(
            f"variant {variant!r} does not run on {dev.type!r}; it offers {', '.join(allowed)}"
        )
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise CapabilityError("device 'cuda' was asked for but torch sees no CUDA GPU; use device='cpu'")
    return dev


def _check_fits(config: GPT2Config, variant: Variant, dtype: Any, device: Any) -> None:
    """A model whose weights alone cannot fit in the device's memory is refused before it is built."""
    dtype_name = str(dtype).removeprefix("torch.")
    stored = PRECISIONS.get(variant.precision or dtype_name)
    needed = int(config.n_params * (stored.bits / 8 if stored is not None else dtype.itemsize))
    memory, where = device_memory(device)
    if memory is not None and needed > memory:
        raise ConfigError(
            f"{config} has {config.n_params:,} parameters: {format_bytes(needed)} of weights for variant "
            f"{variant.name!r} in {variant.precision or dtype_name}, more than {where} "
            f"{format_bytes(memory)}; choose a smaller config (presets: {', '.join(PRESETS)})"
        )


def load(
    name: str,
    weights: str | os.PathLike[str] | Mapping[str, Any] | None = None,
    *,
    config: GPT2Config | str | None = None,
    device: Any = None,
    dtype: Any = None,
    seed: int = 0,
    layout: str | None = None,
    revision: str | None = None,
    allow_nonfinite: bool = False,
) -> GPT2:
    """Build variant ``name`` and load weights into it.

    :param weights: a Hugging Face hub id (``"gpt2"``, ``"openai-community/gpt2"``),
        a ``save_pretrained`` folder, a ``.safetensors`` file, a ``.bin``/``.pt``
        state dict, a nanoGPT or build-nanogpt checkpoint, an llm.c ``.bin``
        file, an F32 or BF16 GGUF file, an in-memory state dict, or ``None``
        for GPT-2's random initialisation from ``seed`` (an int in ``[0, 2**64)``).
    :param config: a :class:`GPT2Config` or preset name; taken from the weights
        when they carry one, GPT-2 small (124M) for random weights.
    :param device: ``"cpu"`` (default), ``"cuda"``...; checked against the variant.
    :param dtype: a ``torch.dtype`` or its name; the variant's first declared dtype by default.
    :param layout: key layout of a bare state dict: ``hf`` (default), ``nanogpt``, ``canonical``.
    :param revision: branch, tag or commit of a hub id (hub ids only).
    :param allow_nonfinite: load weights holding NaN or Inf; by default each tensor is checked as it
        is copied in, and one that holds them raises :class:`WeightsError`.
    :returns: the model, in eval mode.
    """
    variant = get_variant(name)
    missing = variant.why_unavailable()
    if missing:
        raise CapabilityError(f"variant {name!r} cannot run here: {missing}")
    check_seed(seed)  # used by random weights only, checked whatever the weights, as every argument is
    caps = variant.capabilities
    torch_device = _resolve_device(device, caps.devices, name)
    torch_dtype = resolve_dtype(dtype, caps.dtypes, name)
    if isinstance(config, str):
        config = GPT2Config.preset(config)
    start = time.perf_counter()
    if weights is None:
        if layout is not None or revision is not None:
            raise WeightsError(
                "layout= and revision= describe a weight source, but weights=None asks for random "
                "weights; pass weights=... or drop them"
            )
        config = config or GPT2Config()
        _check_fits(config, variant, torch_dtype, torch_device)
        canonical = random_weights(config, seed)
    else:
        config, canonical = open_weights(
            weights, config=config, layout=layout, revision=revision, allow_nonfinite=allow_nonfinite
        )
        _check_fits(config, variant, torch_dtype, torch_device)
    if "weights" in inspect.signature(variant.build).parameters:
        model = variant.build(config, device=torch_device, dtype=torch_dtype, weights=canonical)
    else:  # an older build(): a random model first, then the weights
        model = variant.build(config, device=torch_device, dtype=torch_dtype)
        model.import_weights(canonical)
    log.info("loaded %s (%s) in %.2fs", name, config, time.perf_counter() - start)
    return model
