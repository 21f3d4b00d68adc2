"""The Hugging Face reference: ``GPT2LMHeadModel`` for a zoo config, built the same way everywhere.

Public: the ``hf`` variant wraps it behind the zoo's interface, and the
conformance harness compares every variant with it. Third parties who want the
reference model itself (a float64 copy, their own comparison) call
:func:`hf_model`; transformers is imported on the first call, not before.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from ._config import GPT2Config

__all__ = ["hf_model"]


def _no_init() -> contextlib.AbstractContextManager[Any]:
    """transformers' own switch that skips weight initialisation (``from_pretrained`` uses it)."""
    import importlib

    for where in ("transformers.initialization", "transformers.modeling_utils"):  # transformers 5, 4.x
        try:
            no_init_weights = getattr(importlib.import_module(where), "no_init_weights", None)
        except ImportError:
            continue
        if no_init_weights is not None:
            return cast("contextlib.AbstractContextManager[Any]", no_init_weights())
    return contextlib.nullcontext()  # neither: initialise, slower but correct


def hf_model(
    config: GPT2Config, *, attn_implementation: str = "eager", device: Any = "cpu", dtype: Any = None
) -> Any:
    """An eval-mode ``GPT2LMHeadModel`` with tied ``lm_head``, its weights allocated but not initialised.

    Copy weights in before using it (the ``hf`` variant and the harness do).
    Not built on the meta device: transformers 4.x keeps the causal mask in a
    non-persistent buffer that only a real construction fills in; the weights'
    random initialisation is skipped (transformers' ``no_init_weights``).
    """
    import torch
    from transformers import GPT2LMHeadModel

    hf_config = config.to_hf()
    hf_config._attn_implementation = attn_implementation
    with torch.device(device), _no_init():
        model = GPT2LMHeadModel(hf_config)
    # transformers decorates .to with functools.wraps, typed by typeshed as a callable that binds no self
    model = model.to(dtype=dtype or torch.float32)  # type: ignore[call-arg]
    if model.lm_head.weight is not model.transformer.wte.weight:
        model.lm_head.weight = model.transformer.wte.weight
    return model.eval()
