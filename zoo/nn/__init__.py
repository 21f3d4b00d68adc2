"""GPT-2 in PyTorch, and the transforms the zoo's torch variants are made of.

- :class:`GPT` (:mod:`zoo.nn.model`): the model, in the nanoGPT style, with
  Hugging Face's module names and a static KV cache. ``pure`` is this model.
- :func:`quantise_` (:mod:`zoo.nn.quantise`): swaps a model's Linears and its
  tied embedding for quantised ones, as a row of :data:`SCHEMES`
  (:mod:`zoo.nn.schemes`) says. ``quantised`` and ``quantised-int4`` are this.
- :func:`compile_decode` (:mod:`zoo.nn.compile`): wraps a model so that its
  one-token decode steps run under ``torch.compile``. ``compiled``,
  ``quantised-compiled`` and ``quantised-int4-compiled`` are this.
- :func:`build` (:mod:`zoo.nn.compose`): allocates a model once on its
  device, quantises and compiles it as asked, and fills it with weights
  (never a random init first).
- :func:`declare`: a ``zoo.Variant`` for any (model class, scheme, compiled)
  combination, as the built-in plugins declare theirs; ``declare("mine",
  "...", cls="my_package.model:MyGPT")`` for a subclass with a module of one's own.

Importing this package imports no torch (listing variants stays cheap); the
names above import their module on first use.
"""

from __future__ import annotations

import functools
import importlib
import sys
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from .._interface import Capabilities, Tolerances, Variant, older_than
from .schemes import SCHEMES, Scheme, get_scheme, load_object

if TYPE_CHECKING:
    from .compile import compile_decode
    from .compose import build
    from .model import GPT
    from .quantise import quantise_

__all__ = ["GPT", "SCHEMES", "Scheme", "build", "compile_decode", "compile_unavailable", "declare", "get_scheme",
           "quantise_"]

_LAZY = {"GPT": "model", "build": "compose", "quantise_": "quantise", "compile_decode": "compile"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def compile_unavailable() -> str | None:
    """``None`` where ``torch.compile`` runs; otherwise why not (no torch import).

    torch 2.5 has wheels for Python 3.13 but its ``torch.compile`` refuses that
    Python; 2.6 is the first that compiles there.
    """
    if sys.version_info < (3, 13):
        return None
    return older_than("torch", "2.6", needs="torch.compile on Python 3.13")


def _first_reason(checks: tuple[Callable[[], str | None], ...]) -> str | None:
    return next((reason for check in checks if (reason := check()) is not None), None)


def _build(config: Any, *, scheme: str | Scheme | None, compiled: bool, cls: type[GPT] | str | None,
           device: Any = "cpu", dtype: Any = None, weights: Any = None) -> Any:
    from .compose import build
    from .model import GPT

    model_class = load_object(cls) if isinstance(cls, str) else cls or GPT
    return build(config, scheme=scheme, compiled=compiled, cls=model_class, device=device, dtype=dtype,
                 weights=weights)


def declare(name: str, summary: str, *, scheme: Scheme | str | None = None, compiled: bool = False,
            cls: type[GPT] | str | None = None, notes: str = "", **capabilities: Any) -> Variant:
    """The ``zoo.Variant`` of :class:`GPT` (or ``cls``, a subclass), quantised with ``scheme`` and/or compiled.

    ``cls`` may be named as ``"package.module:Class"``, imported only when a
    model is built, so that a plugin's hook imports no torch.

    A scheme fixes what a quantised model offers: its devices, its one dtype
    (the activations'), approximate logits held to the scheme's tolerances,
    lossy export, no training, and its precision family. ``capabilities``
    are the remaining :class:`zoo.Capabilities` fields (``devices``,
    ``dtypes``, ``trainable``, ``test_configs``...), and override those.
    ``build`` imports torch only when called.
    """
    caps = Capabilities()
    tolerances = Tolerances()
    precision = ""
    if scheme is not None:
        row = get_scheme(scheme)
        caps = replace(caps, devices=row.devices, dtypes=(row.activations,), exact=False,
                       trainable=False, lossless_weights=False)
        tolerances, precision = row.tolerances, row.precision
    caps = replace(caps, **capabilities)
    build = functools.partial(_build, scheme=scheme, compiled=compiled, cls=cls)
    # what a torch may lack for it: the kernels of a scheme newer than the zoo's floor, torch.compile on Python 3.13
    checks = ((get_scheme(scheme).unavailable,) if scheme is not None and get_scheme(scheme).torch else ()) + \
        ((compile_unavailable,) if compiled and sys.version_info >= (3, 13) else ())
    return Variant(name=name, build=build, summary=summary, capabilities=caps, tolerances=tolerances,
                   notes=notes, precision=precision,
                   unavailable=functools.partial(_first_reason, checks) if checks else None)
