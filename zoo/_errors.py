"""The zoo's one error hierarchy.

Every class also subclasses the builtin that matches its meaning (as
hypothesis' ``InvalidArgument`` is a ``TypeError``), so callers that catch
``ValueError`` or ``LookupError`` keep working. Messages name the bad value
and say what to do instead.
"""

from __future__ import annotations

__all__ = [
    "BrokenPluginError",
    "CapabilityError",
    "ConfigError",
    "DuplicateVariantError",
    "InvalidInputError",
    "TokenizerError",
    "UnknownVariantError",
    "WeightsError",
    "WeightsMismatchError",
    "WeightsSourceError",
    "ZooError",
]


class ZooError(Exception):
    """Base class of every error the zoo raises on purpose."""


class ConfigError(ZooError, ValueError):
    """A GPT-2 configuration is impossible or unsupported."""


class InvalidInputError(ZooError, ValueError):
    """Token ids, attention mask or positions passed to a model are invalid.

    Raised by every variant, on every device, for ids out of range, empty or
    over-long sequences, floating-point or wrong-rank ids, and masks or
    positions of the wrong shape.
    """


class CapabilityError(ZooError, NotImplementedError):
    """A variant was asked for something it does not declare (device, dtype, KV cache...)."""


class WeightsError(ZooError, ValueError):
    """Weights cannot be used as GPT-2 weights."""


class WeightsMismatchError(WeightsError):
    """A state dict does not match the weight-mapping spec.

    ``missing``, ``unexpected`` and ``mismatched`` list every problem at once.
    """

    def __init__(
        self,
        message: str,
        *,
        missing: list[str] | None = None,
        unexpected: list[str] | None = None,
        mismatched: list[tuple[str, tuple[int, ...], tuple[int, ...]]] | None = None,
    ) -> None:
        super().__init__(message)
        self.missing = missing or []
        self.unexpected = unexpected or []
        self.mismatched = mismatched or []


class WeightsSourceError(ZooError, OSError):
    """A weight source (hub id, folder, file) cannot be found, reached or read."""


class UnknownVariantError(ZooError, LookupError):
    """No variant of that name is registered."""

    def __str__(self) -> str:  # LookupError would quote the message like a key
        return str(self.args[0]) if self.args else ""


class DuplicateVariantError(ZooError, ValueError):
    """Two sources register a variant under the same name."""


class BrokenPluginError(ZooError, ImportError):
    """A plugin failed to import or to declare its variants."""


class TokenizerError(ZooError, RuntimeError):
    """The GPT-2 tokenizer files cannot be found or do not match their hashes."""
