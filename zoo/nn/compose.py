"""``build``: a torch variant put together from the pieces of ``zoo.nn``, allocated once, never initialised twice.

The model (:class:`zoo.nn.GPT`, or a subclass of one's own), quantised by a
scheme (:func:`zoo.nn.quantise_`), with its decode step compiled
(:func:`zoo.nn.compile_decode`): each built-in torch variant is one call of
:func:`build`, as ``zoo.nn.declare`` writes it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from .. import random_weights
from .._config import GPT2Config
from .._interface import GPT2
from .compile import compile_decode
from .model import GPT
from .quantise import quantise_
from .schemes import Scheme, get_scheme

__all__ = ["build"]


def build(config: GPT2Config, *, device: torch.device | str = "cpu", dtype: torch.dtype | None = None,
          weights: Mapping[str, Any] | None = None, scheme: Scheme | str | None = None, compiled: bool = False,
          cls: type[GPT] = GPT) -> GPT2:
    """A :class:`GPT` (or ``cls``, a subclass) on ``device`` in ``dtype``, holding ``weights``, in eval mode.

    The modules are created on the meta device (no memory, no init), swapped by
    :func:`zoo.nn.quantise_` for ``scheme`` (a :class:`zoo.nn.Scheme` or the
    name of a row of ``zoo.nn.SCHEMES``), allocated on ``device``, and filled
    with ``weights`` (canonical), or with GPT-2's random initialisation drawn
    from torch's global RNG when ``weights`` is ``None`` (so ``hf`` built after
    the same ``torch.manual_seed`` holds the same ones). ``dtype`` defaults to
    the scheme's activation dtype, else float32. ``compiled`` wraps the result
    with :func:`zoo.nn.compile_decode`.

    :raises zoo.CapabilityError: if the scheme does not run on ``device`` or in ``dtype``.
    """
    if dtype is None:
        dtype = getattr(torch, get_scheme(scheme).activations) if scheme is not None else torch.float32
    if scheme is not None:
        get_scheme(scheme).check(torch.device(device).type, str(dtype).removeprefix("torch."))
    if weights is None:
        weights = random_weights(config, seed=int(torch.randint(2**31, ())))
    with torch.device("meta"):
        model = cls(config).to(dtype=dtype)
    if scheme is not None:
        quantise_(model, scheme, device=device)
    model.to_empty(device=device)
    model.tie_weights()  # to_empty() re-creates the parameters
    model.import_weights(weights)
    model.eval()  # there is no dropout here, but callers may rely on eval mode
    return compile_decode(model) if compiled else model
