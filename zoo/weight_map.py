"""The weight-mapping spec: every GPT-2 tensor, once, as data.

The *canonical* state dict is the zoo's exchange format between variants:

- names without any prefix, as ``pure`` names its modules (``wte.weight``,
  ``h.0.attn.c_attn.weight``, ``ln_f.bias``...);
- every projection in ``nn.Linear`` orientation, ``[out_features, in_features]``;
- ``lm_head.weight`` left out, because it *is* ``wte.weight`` (the tie).

A :class:`Layout` says how another format stores the same tensors (key prefix,
prefixes to strip, whether the four projections are transposed as Hugging
Face's ``Conv1D`` stores them, a table of other names, a padded vocabulary,
the order in a flat file). :func:`to_canonical` checks a whole state dict
against the spec and reports every missing, unexpected and mis-shaped key in
one error; :func:`from_canonical` goes the other way.

The layouts of state dicts a caller may hand over are here (:data:`LAYOUTS`);
a file format that fixes its own names keeps its layout in its module of
:mod:`zoo.formats`.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from ._config import GPT2Config
from ._errors import WeightsError, WeightsMismatchError

__all__ = [
    "HF",
    "IGNORED_BUFFERS",
    "LAYOUTS",
    "NANOGPT",
    "SPEC",
    "TIED",
    "Layout",
    "TensorSpec",
    "canonical_shapes",
    "from_canonical",
    "template_of",
    "to_canonical",
]

Shape = tuple[int, ...]


@dataclass(frozen=True)
class TensorSpec:
    """One GPT-2 tensor: its canonical name template and its shape for a config."""

    name: str  # "{i}" stands for the layer index
    shape: Callable[[GPT2Config], Shape]  # canonical orientation
    linear: bool = False  # a projection weight; Hugging Face's Conv1D stores it transposed

    @property
    def per_layer(self) -> bool:
        return "{i}" in self.name


# fmt: off
SPEC: tuple[TensorSpec, ...] = (
    TensorSpec("wte.weight",               lambda c: (c.vocab_size, c.n_embd)),
    TensorSpec("wpe.weight",               lambda c: (c.n_positions, c.n_embd)),
    TensorSpec("h.{i}.ln_1.weight",        lambda c: (c.n_embd,)),
    TensorSpec("h.{i}.ln_1.bias",          lambda c: (c.n_embd,)),
    TensorSpec("h.{i}.attn.c_attn.weight", lambda c: (3 * c.n_embd, c.n_embd), linear=True),
    TensorSpec("h.{i}.attn.c_attn.bias",   lambda c: (3 * c.n_embd,)),
    TensorSpec("h.{i}.attn.c_proj.weight", lambda c: (c.n_embd, c.n_embd), linear=True),
    TensorSpec("h.{i}.attn.c_proj.bias",   lambda c: (c.n_embd,)),
    TensorSpec("h.{i}.ln_2.weight",        lambda c: (c.n_embd,)),
    TensorSpec("h.{i}.ln_2.bias",          lambda c: (c.n_embd,)),
    TensorSpec("h.{i}.mlp.c_fc.weight",    lambda c: (4 * c.n_embd, c.n_embd), linear=True),
    TensorSpec("h.{i}.mlp.c_fc.bias",      lambda c: (4 * c.n_embd,)),
    TensorSpec("h.{i}.mlp.c_proj.weight",  lambda c: (c.n_embd, 4 * c.n_embd), linear=True),
    TensorSpec("h.{i}.mlp.c_proj.bias",    lambda c: (c.n_embd,)),
    TensorSpec("ln_f.weight",              lambda c: (c.n_embd,)),
    TensorSpec("ln_f.bias",                lambda c: (c.n_embd,)),
)
# fmt: on

#: Buffers some checkpoints carry that are not weights (the causal mask and its fill value).
IGNORED_BUFFERS: tuple[str, ...] = ("h.{i}.attn.bias", "h.{i}.attn.masked_bias")

#: ``(alias, canonical)``: the output projection is the token embedding.
TIED: tuple[str, str] = ("lm_head.weight", "wte.weight")


_LAYER_NAME = re.compile(r"h\.(\d+)\.")


def template_of(name: str) -> tuple[str, int | None]:
    """``("h.{i}.ln_1.weight", 3)`` for ``"h.3.ln_1.weight"``; ``(name, None)`` for a tensor outside the blocks."""
    found = _LAYER_NAME.match(name)
    if found is None:
        return name, None
    return "h.{i}." + name[found.end():], int(found.group(1))


@dataclass(frozen=True)
class Layout:
    """How a checkpoint format names, shapes and orders the canonical tensors."""

    name: str
    body_prefix: str = ""  # put before every tensor but lm_head ("transformer.")
    body_prefix_optional: bool = False  # also accept body keys without it
    strip_prefixes: tuple[str, ...] = ()  # removed from every key on import if present
    transpose_linear: bool = False  # projections stored [in, out] (Conv1D)
    writes_tied: bool = True  # whether export writes lm_head.weight beside wte.weight
    names: tuple[tuple[str, str], ...] = ()  # (canonical template, stored template) where the format renames
    vocab_multiple: int = 1  # wte stored with zero rows appended up to a multiple of this
    kind_major: bool = False  # ordered kind by kind across the layers, not layer by layer

    @functools.cached_property
    def _renamed(self) -> dict[str, str]:
        return dict(self.names)

    def key(self, canonical: str) -> str:
        """The stored key of a canonical name (``lm_head.weight`` for the tie)."""
        template, layer = template_of(canonical)
        renamed = self._renamed.get(template)
        if renamed is not None:
            return renamed.format(i=layer)
        return canonical if canonical == TIED[0] else self.body_prefix + canonical

    def strip(self, key: str) -> str:
        """``key`` without the prefixes this layout removes on import (``_orig_mod.``)."""
        for prefix in self.strip_prefixes:
            key = key.removeprefix(prefix)
        return key

    def padded_vocab(self, config: GPT2Config) -> int:
        """Rows of the stored token embedding: the vocabulary rounded up to ``vocab_multiple``."""
        return -(-config.vocab_size // self.vocab_multiple) * self.vocab_multiple

    def stored_shape(self, tensor: TensorSpec, config: GPT2Config) -> Shape:
        shape = tensor.shape(config)
        if tensor.name == TIED[1]:
            return (self.padded_vocab(config), *shape[1:])
        return shape[::-1] if tensor.linear and self.transpose_linear else shape

    def order(self, names: list[str]) -> list[str]:
        """Canonical ``names`` in the order this layout stores them."""
        if not self.kind_major:
            return names
        return sorted(names, key=lambda name: (_SPEC_INDEX[template_of(name)[0]], template_of(name)[1] or 0))


#: Hugging Face ``GPT2LMHeadModel`` (and ``GPT2Model``, whose keys have no ``transformer.``).
HF = Layout("hf", body_prefix="transformer.", body_prefix_optional=True, transpose_linear=True)
#: nanoGPT / build-nanogpt: Hugging Face's names in ``nn.Linear`` orientation; compiled models add ``_orig_mod.``.
NANOGPT = Layout("nanogpt", body_prefix="transformer.", strip_prefixes=("_orig_mod.",))
#: The zoo's own canonical layout.
CANONICAL = Layout("canonical", writes_tied=False)

#: Key layouts a state dict may be in (``layout=`` of ``zoo.load`` and ``zoo.open_weights``).
LAYOUTS: dict[str, Layout] = {layout.name: layout for layout in (HF, NANOGPT, CANONICAL)}

_SPEC_INDEX = {tensor.name: index for index, tensor in enumerate(SPEC)}


class TensorSource(Protocol):
    """A possibly lazy state dict: keys, a shape per key without loading, and the tensor on access."""

    def keys(self) -> Any: ...
    def shape_of(self, key: str) -> Shape: ...
    def __getitem__(self, key: str) -> Any: ...


def _expand(template: str, config: GPT2Config) -> list[str]:
    if "{i}" not in template:
        return [template]
    return [template.format(i=i) for i in range(config.n_layer)]


def canonical_shapes(config: GPT2Config) -> dict[str, Shape]:
    """Every canonical key with its shape, in a model's own order: embeddings, layer by layer, ln_f."""
    layer = [t for t in SPEC if t.per_layer]
    shapes: dict[str, Shape] = {}
    for tensor in SPEC:
        if not tensor.per_layer:
            shapes[tensor.name] = tensor.shape(config)
        elif tensor is layer[0]:  # the blocks, one after another, where the spec lists the first
            for i in range(config.n_layer):
                shapes.update({t.name.format(i=i): t.shape(config) for t in layer})
    return shapes


def _shape_of(source: Mapping[str, Any] | TensorSource, key: str) -> Shape:
    shape_of = getattr(source, "shape_of", None)
    if shape_of is not None:
        return tuple(shape_of(key))
    return tuple(source[key].shape)


def _template_regex(template: str) -> re.Pattern[str]:
    return re.compile(re.escape(template).replace(re.escape("{i}"), r"\d+") + r"\Z")


_IGNORED = tuple(_template_regex(t) for t in IGNORED_BUFFERS)


class CanonicalWeights(Mapping[str, Any]):
    """A checked, lazy view of a state dict in canonical names and orientation.

    Each tensor is read from its source only when looked up, so a loader can
    copy tensors into a model one at a time and never hold two full copies.
    ``config`` is the config every name and shape was checked against: a
    variant whose config equals it can copy the tensors in without checking
    them again.
    """

    def __init__(
        self,
        source: Mapping[str, Any] | TensorSource,
        keys: dict[str, tuple[str, bool, int | None]],
        config: GPT2Config,
    ) -> None:
        self._source = source
        self._keys = keys  # canonical -> (source key, transpose, rows to keep of a padded tensor)
        self.config = config
        self.check: Callable[[str, Any], None] | None = None  # run on each tensor as it is read

    def __getitem__(self, name: str) -> Any:
        key, transpose, rows = self._keys[name]
        tensor = self._source[key]
        if rows is not None:
            tensor = tensor[:rows]
        if self.check is not None:
            self.check(name, tensor)
        return tensor.T if transpose else tensor

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)


def to_canonical(
    source: Mapping[str, Any] | TensorSource, config: GPT2Config, layout: Layout = HF
) -> CanonicalWeights:
    """Check ``source`` against the spec for ``config`` and return its canonical view.

    :raises WeightsMismatchError: listing every missing, unexpected and
        mis-shaped key at once.
    :raises WeightsError: if ``lm_head.weight`` is present but differs from
        ``wte.weight`` (GPT-2 ties them).
    """
    _check_count(source, config, layout)
    wanted: dict[str, tuple[str, TensorSpec]] = {}  # stored key (after stripping) -> canonical
    for tensor in SPEC:
        for name in _expand(tensor.name, config):
            wanted[layout.key(name)] = (name, tensor)
            if layout.body_prefix_optional:
                wanted[name] = (name, tensor)

    found: dict[str, tuple[str, bool, int | None]] = {}
    seen_from: dict[str, str] = {}
    unexpected: list[str] = []
    mismatched: list[tuple[str, Shape, Shape]] = []
    duplicated: list[str] = []
    tied_key: str | None = None
    padded = layout.padded_vocab(config) != config.vocab_size
    for raw_key in source.keys():  # noqa: SIM118  # a lazy source may offer keys() but not iterate
        key = layout.strip(raw_key)
        if key == layout.key(TIED[0]):
            tied_key = raw_key
            continue
        if key not in wanted:
            bare = key.removeprefix(layout.body_prefix)
            if not any(p.match(bare) for p in _IGNORED):
                unexpected.append(raw_key)
            continue
        name, tensor = wanted[key]
        if name in found:
            duplicated.append(f"{seen_from[name]!r} and {raw_key!r}")
            continue
        expected = layout.stored_shape(tensor, config)
        actual = _shape_of(source, raw_key)
        if actual != expected:
            mismatched.append((raw_key, actual, expected))
        rows = config.vocab_size if padded and name == TIED[1] else None
        found[name] = (raw_key, tensor.linear and layout.transpose_linear, rows)
        seen_from[name] = raw_key

    order = canonical_shapes(config)
    missing = [layout.key(name) for name in order if name not in found]
    if tied_key is not None:
        tied_shape = _shape_of(source, tied_key)
        if tied_shape != order[TIED[1]]:
            mismatched.append((tied_key, tied_shape, order[TIED[1]]))
    if missing or unexpected or mismatched or duplicated:
        lines = [f"state dict does not match GPT-2 ({layout.name} layout) for {config}:"]
        if missing:
            lines.append(f"  missing ({len(missing)}): {', '.join(missing)}")
        if unexpected:
            lines.append(f"  unexpected ({len(unexpected)}): {', '.join(unexpected)}")
        for key, actual, expected in mismatched:
            lines.append(f"  mis-shaped: {key} is {list(actual)}, expected {list(expected)}")
        for pair in duplicated:
            lines.append(f"  given twice: {pair}")
        other = {"hf": "nanogpt", "nanogpt": "hf"}.get(layout.name)
        if other and mismatched and all(actual == expected[::-1] for _, actual, expected in mismatched):
            lines.append(
                f"  every mis-shaped tensor is transposed: is this a {other} checkpoint? "
                f"pass layout={other!r}"
            )
        elif mismatched and not missing and not unexpected:
            lines.append("  (is the config right? pass config=... to match the checkpoint)")
        raise WeightsMismatchError(
            "\n".join(lines), missing=missing, unexpected=unexpected, mismatched=mismatched
        )
    weights = CanonicalWeights(source, {name: found[name] for name in order}, config)
    if tied_key is not None:
        _check_tie(source, tied_key, weights, config.vocab_size)
    return weights


def _check_count(source: Mapping[str, Any] | TensorSource, config: GPT2Config, layout: Layout) -> None:
    """Refuse a config that needs far more tensors than ``source`` holds, before a name is built for any.

    A corrupt or hostile header may declare ``n_layer`` of 10**9: the names and
    shapes it implies are never built, as the count alone shows the mismatch.
    A nearer miss (a layer or two) gets the full report of missing names.
    """
    per_layer = sum(t.per_layer for t in SPEC)
    needed = len(SPEC) - per_layer + per_layer * config.n_layer
    held = len(source.keys())
    if needed > 2 * held + len(SPEC):
        raise WeightsMismatchError(
            f"the config declares n_layer={config.n_layer}, which needs {needed} tensors, but the weights "
            f"({layout.name} layout) hold only {held}; the config does not describe these weights "
            "(a corrupt header?): pass the right config=zoo.GPT2Config(...)"
        )


def _check_tie(
    source: Mapping[str, Any] | TensorSource, tied_key: str, weights: CanonicalWeights, vocab_size: int
) -> None:
    import torch

    head, wte = source[tied_key][:vocab_size], weights[TIED[1]]
    if isinstance(head, torch.Tensor) and isinstance(wte, torch.Tensor):
        same = head.data_ptr() == wte.data_ptr() or torch.equal(head, wte)
    else:  # NumPy arrays
        same = bool((head == wte).all())
    if not same:
        raise WeightsError(
            f"{tied_key!r} differs from the token embedding: GPT-2 ties lm_head.weight to "
            "wte.weight, and this checkpoint was trained with them untied, so no GPT-2 variant "
            "can load it faithfully"
        )


def from_canonical(
    weights: Mapping[str, Any], layout: Layout = HF
) -> Iterator[tuple[str, Any]]:
    """Yield ``(key, tensor)`` in ``layout`` for canonical ``weights``, lazily, in the layout's order.

    Projection weights are transposed views where the layout needs it; a padded
    token embedding gets zero rows; the tied ``lm_head.weight`` is the same
    object as ``wte.weight`` where the layout writes it.
    """
    linear = {t.name for t in SPEC if t.linear}
    for name in layout.order(list(weights)):
        tensor = weights[name]
        if layout.transpose_linear and template_of(name)[0] in linear:
            tensor = tensor.T
        if name == TIED[1] and layout.vocab_multiple > 1:
            tensor = _pad_rows(tensor, layout.vocab_multiple)
        yield layout.key(name), tensor
        if name == TIED[1] and layout.writes_tied:
            yield layout.key(TIED[0]), tensor


def _pad_rows(tensor: Any, multiple: int) -> Any:
    """``tensor`` with zero rows appended up to a multiple of ``multiple`` rows (torch or NumPy)."""
    import numpy as np
    import torch

    missing = -len(tensor) % multiple
    if not missing:
        return tensor
    if isinstance(tensor, torch.Tensor):
        return torch.cat([tensor, tensor.new_zeros((missing, *tensor.shape[1:]))])
    return np.concatenate([tensor, np.zeros((missing, *tensor.shape[1:]), dtype=tensor.dtype)])


def checked(weights: Mapping[str, Any], config: GPT2Config) -> CanonicalWeights:
    """``weights`` as canonical weights for ``config``: as they are if already checked against it, else checked now.

    What every ``import_weights`` starts with: a plain dict (or weights
    checked for another config) has every key and shape checked first, and
    the error lists every problem at once.
    """
    if isinstance(weights, CanonicalWeights) and weights.config == config:
        return weights
    return to_canonical(weights, config, CANONICAL)
