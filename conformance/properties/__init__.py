"""The properties every GPT-2 variant must have, one module each, and the table that orders them.

Layout:

- :mod:`~conformance.properties.framework`: :class:`Context` (what a
  property is given), :class:`Property` (what it is), the helpers the
  properties share (:func:`~.framework.logits_of`,
  :func:`~.framework.references`, :func:`~.framework.left_pad`...) and
  :func:`check_interface`, the cheap checks that run before any property.
- one module per property (:mod:`~conformance.properties.logits`,
  :mod:`~conformance.properties.causality`...), each with a ``build(ctx)``
  that returns the property's ``@given`` test and the pinned cases it must
  also pass.
- :data:`PROPERTIES`, below: one row per property, in the order they run,
  with its name, its one-line summary, its ``build`` and the capability it
  needs.

A new property is a new module here with a ``build(ctx: Context) -> Built``
(its strategy goes in :mod:`conformance.strategies`, its tolerances come from
the variant's declared :class:`zoo.Tolerances` through ``ctx.judge``), and one
row in :data:`PROPERTIES`. The runner (``zoo check``) and the pytest plugin
read the table; neither needs changing.
"""

from __future__ import annotations

from . import (
    bad_input,
    batch,
    causality,
    determinism,
    fidelity,
    generation,
    incremental,
    logits,
    padding,
    sampling,
    ties,
    training,
    weights,
)
from .framework import Context, Property, check_interface, needs

__all__ = ["PROPERTIES", "Context", "Property", "check_interface", "get_property"]

PROPERTIES: tuple[Property, ...] = (
    Property("logits", "logits equal Hugging Face's on the same weights, for every declared dtype", logits.build),
    Property("causality", "changing the token at t changes no logits before t", causality.build),
    Property("batch", "a batch gives the same rows as each sequence alone", batch.build),
    Property("padding", "left padding with a mask changes nothing for real tokens, as in Hugging Face",
             padding.build, needs("padding", "padding")),
    Property("incremental", "prefill then decoding through the KV cache equals one full forward",
             incremental.build, needs("kv_cache", "a KV cache")),
    Property("generation", "greedy generation equals Hugging Face's generate; seeded sampling repeats",
             generation.build),
    Property("sampling", "the sampling distribution equals Hugging Face's warpers (temperature, top-k, top-p) "
             "on the same and on the reference logits; seeded draws follow it", sampling.build),
    Property("weights", "import, export, import is lossless and lm_head stays tied to wte", weights.build),
    Property("tie", "after wte is updated in place through export_weights() (or re-imported), lm_head and the "
             "logits follow it as Hugging Face's do", ties.build),
    Property("training", "loss and every parameter's gradient equal Hugging Face's", training.build,
             needs("trainable", "trainable")),
    Property("bad-input", "bad ids, lengths, ranks and masks raise zoo.InvalidInputError naming the problem",
             bad_input.build),
    Property("determinism", "the same input twice gives the same output", determinism.build),
    Property("fidelity", "on learned weights (and with GPT-2's activation outliers planted), KL, top-1 and "
             "perplexity against float32 stay within the variant's budget", fidelity.build),
)


def get_property(name: str) -> Property:
    """The property called ``name`` (as ``zoo check --property`` spells it).

    :raises ValueError: naming the properties there are.
    """
    for prop in PROPERTIES:
        if prop.name == name:
            return prop
    raise ValueError(f"unknown property {name!r}; choose from {', '.join(p.name for p in PROPERTIES)}")
