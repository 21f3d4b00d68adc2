"""The weight-mapping spec: every GPT-2 tensor, once, as data.

The *canonical* state dict is the zoo's exchange format between variants:

- names without any prefix, as ``pure`` names its modules (``wte.weight``,
  ``h.0.attn.c_attn.weight``, ``ln_f.bias``...);
- every projection in ``nn.Linear`` orientation, ``[out_features, in_features]``;
- ``lm_head.weight`` left out, because it *is* ``wte.weight`` (the tie).

A :class:`Layout` says how another format stores the same tensors (key prefix,
prefixes to strip, whether the four projections are transposed as Hugging
Face's ``Conv1D`` stores them). :func:`to_canonical` checks a whole state dict
against the spec and reports every missing, unexpected and mis-shaped key in
one error; :func:`from_canonical` goes the other way.
"""

from __future__ import annotations

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


@dataclass(frozen=True)
class Layout:
    """How a checkpoint format names and orients the canonical tensors."""

    name: str
    body_prefix: str = ""  # put before every tensor but lm_head ("transformer.")
    body_prefix_optional: bool = False  # also accept body keys without it
    strip_prefixes: tuple[str, ...] = ()  # removed from every key on import if present
    transpose_linear: bool = False  # projections stored [in, out] (Conv1D)
    writes_tied: bool = True  # whether export writes lm_head.weight beside wte.weight

    def key(self, canonical: str) -> str:
        """The stored key of a canonical name."""
        return canonical if canonical == TIED[0] else self.body_prefix + canonical

    def strip(self, key: str) -> str:
        """``key`` without the prefixes this layout removes on import (``_orig_mod.``)."""
        for prefix in self.strip_prefixes:
            key = key.removeprefix(prefix)
        return key

    def stored_shape(self, tensor: TensorSpec, config: GPT2Config) -> Shape:
        shape = tensor.shape(config)
        return shape[::-1] if tensor.linear and self.transpose_linear else shape


#: Hugging Face ``GPT2LMHeadModel`` (and ``GPT2Model``, whose keys have no ``transformer.``).
HF = Layout("hf", body_prefix="transformer.", body_prefix_optional=True, transpose_linear=True)
#: nanoGPT / build-nanogpt: Hugging Face's names in ``nn.Linear`` orientation; compiled models add ``_orig_mod.``.
NANOGPT = Layout("nanogpt", body_prefix="transformer.", strip_prefixes=("_orig_mod.",))
#: The zoo's own canonical layout.
CANONICAL = Layout("canonical", writes_tied=False)

LAYOUTS: dict[str, Layout] = {layout.name: layout for layout in (HF, NANOGPT, CANONICAL)}


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
    """

    def __init__(
        self, source: Mapping[str, Any] | TensorSource, keys: dict[str, tuple[str, bool]]
    ) -> None:
        self._source = source
        self._keys = keys  # canonical -> (source key, transpose)

    def __getitem__(self, name: str) -> Any:
        key, transpose = self._keys[name]
        tensor = self._source[key]
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
    wanted: dict[str, tuple[str, TensorSpec]] = {}  # stored key (after stripping) -> canonical
    for tensor in SPEC:
        for name in _expand(tensor.name, config):
            wanted[layout.key(name)] = (name, tensor)
            if layout.body_prefix_optional:
                wanted[name] = (name, tensor)

    found: dict[str, tuple[str, bool]] = {}
    seen_from: dict[str, str] = {}
    unexpected: list[str] = []
    mismatched: list[tuple[str, Shape, Shape]] = []
    duplicated: list[str] = []
    tied_key: str | None = None
    for raw_key in source.keys():
        key = layout.strip(raw_key)
        if key == TIED[0]:
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
        found[name] = (raw_key, tensor.linear and layout.transpose_linear)
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
        if mismatched and all(actual == expected[::-1] for _, actual, expected in mismatched):
            other = "nanogpt" if layout.transpose_linear else "hf"
            lines.append(
                f"  every mis-shaped tensor is transposed: is this a {other} checkpoint? "
                f"pass layout={other!r}"
            )
        elif mismatched and not missing and not unexpected:
            lines.append("  (is the config right? pass config=... to match the checkpoint)")
        raise WeightsMismatchError(
            "\n".join(lines), missing=missing, unexpected=unexpected, mismatched=mismatched
        )
    weights = CanonicalWeights(source, {name: found[name] for name in order})
    if tied_key is not None:
        _check_tie(source, tied_key, weights)
    return weights


def _check_tie(source: Mapping[str, Any] | TensorSource, tied_key: str, weights: CanonicalWeights) -> None:
    import torch

    head, wte = source[tied_key], weights[TIED[1]]
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
    """Yield ``(key, tensor)`` in ``layout`` for canonical ``weights``, lazily and in order.

    Projection weights are transposed views where the layout needs it; the tied
    ``lm_head.weight`` is the same object as ``wte.weight`` where the layout
    writes it.
    """
    linear = tuple(_template_regex(t.name) for t in SPEC if t.linear)
    for name in weights:
        tensor = weights[name]
        if layout.transpose_linear and any(p.match(name) for p in linear):
            tensor = tensor.T
        yield layout.key(name), tensor
        if name == TIED[1] and layout.writes_tied:
            yield TIED[0], tensor
