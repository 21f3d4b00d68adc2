"""gpt2-zoo: GPT-2 implementations behind one interface, and the evidence that each is still GPT-2.

>>> import zoo
>>> "pure" in zoo.list_variants()
True
"""

from __future__ import annotations

from ._cache import cache_dir
from ._config import PRESETS, GPT2Config
from ._convert import convert
from ._errors import (
    BrokenPluginError,
    CapabilityError,
    ConfigError,
    DuplicateVariantError,
    InvalidInputError,
    TokenizerError,
    UnknownVariantError,
    WeightsError,
    WeightsMismatchError,
    WeightsSourceError,
    ZooError,
)
from ._generate import generate, sampling_distribution, stream
from ._inputs import check_cache_size, check_inputs
from ._interface import (
    GPT2,
    PRECISIONS,
    Capabilities,
    Fidelity,
    Precision,
    Tolerances,
    Variant,
    implements,
    missing_modules,
    older_than,
)
from ._load import load
from ._random import random_weights
from ._registry import (
    broken_plugins,
    distribution_of,
    get_variant,
    list_variants,
    plugin_manager,
    register,
    resolve,
    unregister,
)
from ._tokenizer import get_tokenizer
from ._weights import open_weights
from .hookspec import hookimpl

__version__ = "0.1.0"

__all__ = [
    "GPT2",
    "PRECISIONS",
    "PRESETS",
    "BrokenPluginError",
    "Capabilities",
    "CapabilityError",
    "ConfigError",
    "DuplicateVariantError",
    "Fidelity",
    "GPT2Config",
    "InvalidInputError",
    "Precision",
    "TokenizerError",
    "Tolerances",
    "UnknownVariantError",
    "Variant",
    "WeightsError",
    "WeightsMismatchError",
    "WeightsSourceError",
    "ZooError",
    "__version__",
    "broken_plugins",
    "cache_dir",
    "check_cache_size",
    "check_inputs",
    "convert",
    "distribution_of",
    "generate",
    "get_tokenizer",
    "get_variant",
    "hookimpl",
    "implements",
    "list_variants",
    "load",
    "missing_modules",
    "older_than",
    "open_weights",
    "plugin_manager",
    "random_weights",
    "register",
    "resolve",
    "sampling_distribution",
    "stream",
    "unregister",
]
