"""The gpt2-zoo conformance harness: is a registered variant still GPT-2?

Every property (logits parity, causality, batch invariance, padding,
incremental decoding, generation, weights round trip, training, bad input,
determinism) is a hypothesis test against Hugging Face's ``GPT2LMHeadModel``
in float64, gated by the capabilities the variant declares and judged by the
tolerances it declares. Run it with::

    zoo check [NAME ...] [--profile quick|ci|thorough] [--device cpu|cuda] [--json FILE]
    pytest --zoo-variant NAME [--zoo-profile P] [--zoo-device D]

Modules: :mod:`~conformance.strategies` (what is drawn),
:mod:`~conformance.properties` (what is checked), :mod:`~conformance.assertions`
(how it is judged and reported), :mod:`~conformance.models` (the cached
models), :mod:`~conformance.profiles`, :mod:`~conformance.runner`,
:mod:`~conformance.cli` and :mod:`~conformance.pytest_plugin`.
"""

from __future__ import annotations

__all__ = ["check"]


def __getattr__(name: str) -> object:  # keep `import conformance` cheap (the pytest plugin imports it)
    if name == "check":
        from .runner import check

        return check
    raise AttributeError(f"module 'conformance' has no attribute {name!r}")
