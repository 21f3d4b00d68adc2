"""The GPT-2 interface every variant implements, and what a variant declares about itself."""

from __future__ import annotations

import abc
import importlib.metadata
import importlib.util
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ._config import GPT2Config
from ._errors import CapabilityError

if TYPE_CHECKING:
    import torch

__all__ = [
    "GPT2",
    "PRECISIONS",
    "Capabilities",
    "Fidelity",
    "Precision",
    "Tolerances",
    "Variant",
    "implements",
    "missing_modules",
    "older_than",
]


class GPT2(abc.ABC):
    """A GPT-2 language model: the contract between a variant and the zoo.

    Shapes: ``B`` batch, ``T`` tokens in this call, ``V`` vocabulary,
    ``S`` the ``max_seq_length`` given to :meth:`setup_caches`.

    **Full-sequence forward.** ``model(input_ids)`` with ``input_ids [B, T]``
    int64 returns ``logits [B, T, V]`` for *every* position (not only the
    last). With ``attention_mask [B, T]`` (1 = token, 0 = padding), batches are
    left-padded: positions are ``cumsum(mask) - 1`` as Hugging Face's
    ``generate`` computes them, padded keys are never attended to, and logits at
    padded positions are unspecified but finite.

    **Incremental decoding.** After ``setup_caches(max_batch_size,
    max_seq_length)`` has allocated a static KV cache, ``model(input_ids,
    input_pos=pos)`` with ``pos [T]`` int64 writes the keys and values of the
    ``T`` tokens at cache slots ``pos`` and attends to every slot ``<= pos[t]``;
    prefill is ``pos = arange(T0)``, each decode step ``pos = tensor([t])``. An
    ``attention_mask [B, pos[-1] + 1]`` then covers every slot written so far.
    ``pos`` is always ``arange(start, start + T)``, and ``start`` is at most the
    slot after the last one written since ``setup_caches``: a call continues
    there, or goes back to overwrite from an earlier slot (the slots after its
    last one are then forgotten). A repeat, gap or step back inside ``pos``, or
    a start beyond the written slots, raises :class:`zoo.InvalidInputError`.
    Token ids and positions are ``int64`` (``int32`` is accepted too).

    **Weights.** :meth:`import_weights` takes a canonical state dict (see
    ``zoo.weight_map``), possibly lazy: read each tensor once and copy it in,
    so that loading never holds two full copies. :meth:`export_weights` returns
    one.

    **Its own greedy generation (optional).** A model that keeps no KV cache
    across calls, but whose engine decodes with one inside its own generation
    loop (CTranslate2's ``generate_batch``), overrides :meth:`generate_greedy`;
    ``zoo.generate`` then decodes greedily through it instead of running a full
    forward per token. Sampling does not go through it: the zoo's sampler and
    its seeded draws stay the zoo's.

    Bad input raises :class:`zoo.InvalidInputError` (``zoo.check_inputs`` does
    every check); asking for an undeclared capability raises
    :class:`zoo.CapabilityError`.
    """

    config: GPT2Config

    @abc.abstractmethod
    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        input_pos: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``input_ids [B, T]`` -> ``logits [B, T, V]``; see the class docstring."""

    def __call__(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        input_pos: torch.Tensor | None = None,
    ) -> torch.Tensor:
        return self.forward(input_ids, attention_mask=attention_mask, input_pos=input_pos)

    def setup_caches(self, max_batch_size: int, max_seq_length: int) -> None:
        """Allocate (or reset) a static KV cache for up to ``max_batch_size`` x ``max_seq_length``.

        Sizes beyond ``n_positions``, or a cache larger than the device's memory,
        raise :class:`zoo.InvalidInputError` (``zoo.check_cache_size``).
        """
        raise CapabilityError(f"{type(self).__name__} has no KV cache; run full forwards instead")

    def generate_greedy(self, prompts: list[list[int]], max_new_tokens: int, *,
                        stop_token: int | None) -> Iterator[list[int | None]]:
        """Greedy decoding by the model's own loop: yield, at each step, every prompt's new token.

        ``prompts`` are one list of token ids per row, of any lengths (at
        least one token each, in range, ``len + max_new_tokens <=
        n_positions``: ``zoo.stream`` has checked them). Each row continues its
        own prompt, at positions ``0...`` as a left-padded, masked batch would.
        Step ``k`` yields a list of one entry per row: the row's ``k``-th new
        token, the argmax of its logits, or ``None`` once the row has stopped.
        A row stops after it yields ``stop_token`` (``None``: rows never stop);
        the iterator ends when every row has stopped, or after
        ``max_new_tokens`` steps. The result is what ``zoo.stream`` yields for
        ``temperature=0`` on the model's own full forwards, up to rounding; the
        conformance harness's ``generation`` property judges it so. The engine
        may run ahead of the consumer; closing the iterator early stops it.

        Only a model without a KV cache needs it: ``zoo.generate`` uses it for
        greedy decoding when the model has no :meth:`setup_caches` and
        ``use_cache`` is not given, and ``zoo bench`` times decoding through
        it.
        """
        raise CapabilityError(f"{type(self).__name__} has no generation loop of its own; use zoo.generate")

    @abc.abstractmethod
    def import_weights(self, weights: Mapping[str, Any]) -> None:
        """Copy a canonical state dict (``lm_head`` tied, ``nn.Linear`` orientation) into the model."""

    @abc.abstractmethod
    def export_weights(self) -> dict[str, Any]:
        """The model's weights as a canonical state dict."""

    def weight_bytes(self) -> int:
        """Bytes the model's weights occupy where it keeps them (each storage once; KV cache excluded).

        The default counts an ``nn.Module``'s parameters, else the exported
        tensors; variants that keep weights elsewhere (buffers, NumPy, packed
        kernels) override it.
        """
        import torch

        tensors: list[torch.Tensor]
        if isinstance(self, torch.nn.Module):
            tensors = list(self.parameters())
        else:
            tensors = [torch.as_tensor(t) for t in self.export_weights().values()]
        storages = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in tensors}
        return sum(storages.values())

    @property
    @abc.abstractmethod
    def device(self) -> torch.device: ...

    @property
    @abc.abstractmethod
    def dtype(self) -> torch.dtype: ...


@dataclass(frozen=True)
class Capabilities:
    """What a variant supports; the conformance harness checks exactly these."""

    devices: tuple[str, ...] = ("cpu",)  # device types: "cpu", "cuda"
    dtypes: tuple[str, ...] = ("float32",)  # torch dtype names; the first is the default
    exact: bool = True  # same arithmetic as GPT-2 up to rounding (False: quantised and the like)
    kv_cache: bool = True  # setup_caches() and forward(..., input_pos=...)
    padding: bool = True  # attention_mask for left-padded batches
    trainable: bool = False  # gradients flow to every parameter
    lossless_weights: bool = True  # export_weights(import_weights(w)) == w exactly
    # configs the conformance harness draws from instead of random small ones (costly builds
    # such as torch.compile, or kernels with shape constraints); empty: any small config
    test_configs: tuple[GPT2Config, ...] = ()


@dataclass(frozen=True)
class Fidelity:
    """How far an approximate variant may stray from float32 GPT-2 on learned weights (a fidelity budget).

    Measured by the conformance harness's ``fidelity`` property on held-out
    text, against Hugging Face's float32 logits on the same weights.
    """

    max_kl: float  # mean KL(hf float32 || variant) of next-token distributions, nats
    max_ppl_ratio: float  # the variant's held-out perplexity over Hugging Face float32's
    min_top1: float = 0.0  # fraction of positions whose argmax agrees with float32's


@dataclass(frozen=True)
class Tolerances:
    """How close a variant must stay to Hugging Face; read by the conformance harness.

    Exact variants: the max-abs logit error against Hugging Face in float64
    must stay within ``error_factor`` times Hugging Face's own error at the
    same dtype on the same example, plus ``abs_floor[dtype]``. Approximate
    variants are held to the distribution-level bounds instead.
    """

    error_factor: float = 4.0
    abs_floor: Mapping[str, float] = field(
        default_factory=lambda: {"float64": 1e-10, "float32": 1e-5, "bfloat16": 5e-2}
    )
    max_kl: float | None = None  # mean KL(hf || variant) of next-token distributions, nats
    min_top1: float | None = None  # fraction of positions whose argmax agrees
    max_rel_logit_error: float | None = None  # ||variant - hf|| / ||hf|| over all logits
    # approximate variants: the budget on each fidelity preset ("learned", "outliers"); exact variants need
    # none: they stay within error_factor times Hugging Face's own fidelity in the same dtype
    fidelity: Mapping[str, Fidelity] = field(default_factory=dict)


@dataclass(frozen=True)
class Precision:
    """How weights are stored: a row of :data:`PRECISIONS`, named by a dtype or by ``Variant.precision``."""

    name: str
    family: str  # what zoo bench compares like with like: float32, bfloat16, int8, int4...
    # bits stored per weight: the data, plus the block scales of formats that fix them (q8_0 and q4_0 keep one
    # float16 scale per 32 weights). The int8 and int4 rows count the data alone: their scales and zero points
    # vary by scheme, and so every format of the family reads at least this much.
    bits: float


#: Every precision the zoo knows, by name: the dtypes, and what a variant may declare as ``Variant.precision``.
#: Read by ``zoo.load`` (will the weights fit?) and ``zoo bench`` (family, decode floor). A variant storing its
#: weights in a way not listed here adds a row.
PRECISIONS: dict[str, Precision] = {p.name: p for p in (
    Precision("float64", "float64", 64),
    Precision("float32", "float32", 32),
    Precision("bfloat16", "bfloat16", 16),
    Precision("float16", "float16", 16),
    Precision("int8", "int8", 8),
    Precision("int4", "int4", 4),
    Precision("q8_0", "int8", 8.5),  # GGUF Q8_0: blocks of 32 int8 and one float16 scale, 34 bytes
    Precision("q4_0", "int4", 4.5),  # GGUF Q4_0: blocks of 32 4-bit values and one float16 scale, 18 bytes
)}


@dataclass(frozen=True)
class Variant:
    """A named GPT-2 implementation, as plugins declare it to the zoo.

    ``build(config, *, device=..., dtype=..., weights=None)`` returns a model
    in eval mode holding ``weights`` (canonical, checked against ``config``:
    copy them in without checking them again), or GPT-2's random
    initialisation drawn from torch's global RNG (the caller seeds it with
    ``torch.manual_seed``) when ``weights`` is ``None``. A ``build`` without a
    ``weights`` parameter is called without it, and ``zoo.load`` then imports
    the weights into the random model: correct, but it pays for an
    initialisation it throws away.
    """

    name: str
    build: Callable[..., GPT2]
    summary: str
    capabilities: Capabilities = field(default_factory=Capabilities)
    tolerances: Tolerances = field(default_factory=Tolerances)
    notes: str = ""  # anything a user should know before choosing it (first-call cost...)
    # what the weights are stored as where that is not the dtype: a key of PRECISIONS ("int8", "int4" for
    # weight-only quantisation with bfloat16 activations, "q8_0" for llama.cpp's blocks); "" means the dtype.
    # Its row's family is what zoo bench compares the variant with (weight_precision()).
    precision: str = ""
    reference: bool = False  # the implementation the others are measured against (Hugging Face's: ``hf``)
    source: str = ""  # set by the registry: the distribution or place that registered it
    # why it cannot run here and how to fix that ("onnxruntime is not installed: pip install ..."), or None.
    # Called by `zoo list`, `zoo check` and `zoo bench`: keep it cheap (an import check, a version compare).
    unavailable: Callable[[], str | None] | None = None

    def weight_precision(self, dtype: str) -> Precision:
        """The row of :data:`PRECISIONS` its weights are stored in when it runs in ``dtype``.

        The declared ``precision``, else ``dtype`` itself.

        :raises CapabilityError: for a name that has no row, naming those that do.
        """
        name = self.precision or dtype
        if name not in PRECISIONS:
            raise CapabilityError(f"variant {self.name!r}: {name!r} is not a precision the zoo knows; "
                                  f"use one of {', '.join(PRECISIONS)} (zoo.PRECISIONS)")
        return PRECISIONS[name]

    def why_unavailable(self) -> str | None:
        """``None`` when the variant can run here; otherwise why not, and the fix."""
        if self.unavailable is None:
            return None
        try:
            return self.unavailable()
        except Exception as exc:  # noqa: BLE001  # a check that crashes means it cannot tell: say so
            return f"its availability check raised {type(exc).__name__}: {exc}"


def implements(model: GPT2, method: str) -> bool:
    """Whether ``model``'s class implements the interface's optional ``method`` (``"setup_caches"``, ``"generate_greedy"``).

    >>> import zoo
    >>> implements(zoo.load("pure", config=zoo.GPT2Config(n_layer=1, n_embd=8, n_head=2, vocab_size=50)), "setup_caches")
    True
    """
    if method not in ("setup_caches", "generate_greedy"):
        raise ValueError(f"{method!r} is not an optional method of zoo.GPT2; the optional ones are setup_caches and "
                         "generate_greedy")
    return getattr(type(model), method, None) is not getattr(GPT2, method)


def missing_modules(*modules: str, install: str) -> str | None:
    """``None`` when every one of ``modules`` is installed; otherwise which is not, and ``install``, the fix.

    What a variant that needs an optional package gives as ``unavailable``
    (``lambda: zoo.missing_modules("onnxruntime", install="pip install ...")``).
    It looks the modules up without importing them, so ``zoo list`` stays fast
    and imports nothing heavy; a module that is installed but broken is
    reported when a model is built.
    """
    for module in modules:
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):  # a parent package that is missing, or a half-imported module
            found = False
        if not found:
            return f"{module} is not installed: {install}"
    return None


def _release(version: str) -> tuple[int, ...]:
    """``"2.13.0+cpu"`` -> ``(2, 13, 0)``: the leading numbers of a version, local labels and suffixes dropped."""
    found = re.match(r"\d+(?:\.\d+)*", version)
    return tuple(int(n) for n in found.group(0).split(".")) if found else ()


def older_than(distribution: str, minimum: str, *, needs: str) -> str | None:
    """``None`` when ``distribution`` is installed at ``minimum`` or newer; otherwise which version is here, and the fix.

    What a variant that needs a newer release than the zoo's floor gives as
    ``unavailable`` (``lambda: zoo.older_than("torch", "2.6", needs="the int4
    CPU kernel")``). It reads the version from the installed metadata, without
    importing the package, so ``zoo list`` stays fast. A pre-release of
    ``minimum`` counts as ``minimum``.
    """
    try:
        installed = importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return (f"{needs} needs {distribution} >= {minimum}, and {distribution} is not installed: "
                f"pip install '{distribution}>={minimum}'")
    if _release(installed) >= _release(minimum):
        return None
    return (f"{needs} needs {distribution} >= {minimum}, and this is {distribution} {installed}: "
            f"pip install '{distribution}>={minimum}'")
