"""Hypothesis strategies for GPT-2 conformance: plural nouns, built with ``@st.composite``.

Small pieces (:func:`configs`, :func:`weight_inits`, :func:`token_ids`,
:func:`lengths`, :func:`batch_sizes`, :func:`padding_patterns`,
:func:`split_points`) compose into one case per property
(:func:`forward_cases`, :func:`padded_cases`...), each a ``NamedTuple`` so
that coupled draws (a config and ids inside its vocabulary) stay together and
print readably in a falsifying example. Token ids are nested tuples of ints,
not tensors, so a counterexample can be pasted back.

Edge cases worth pinning (among them the GPT-2 124M shape that every
inference property runs once per run) are built in :mod:`conformance.pinned`.
"""

from __future__ import annotations

from typing import NamedTuple

from hypothesis import strategies as st

import zoo

from .models import WeightInit

__all__ = [
    "BadInput",
    "Batch",
    "CausalityCase",
    "ForwardCase",
    "GenerationCase",
    "IncrementalCase",
    "PaddedCase",
    "SamplingCase",
    "TrainingCase",
    "WeightsCase",
    "bad_inputs",
    "batch_sizes",
    "causality_cases",
    "configs",
    "forward_cases",
    "generation_cases",
    "incremental_cases",
    "lengths",
    "long_lengths",
    "padded_cases",
    "padding_patterns",
    "sampling_cases",
    "split_points",
    "token_ids",
    "training_cases",
    "weight_inits",
    "weights_cases",
]

Ids = tuple[tuple[int, ...], ...]  # [B][T]

GPT2_124M = zoo.GPT2Config()
PINNED_INIT = WeightInit(seed=0, scale=1.0)
MAX_SCALE = 30.0  # x GPT-2's 0.02: attention logits and GELU inputs of order 1 to 10
LONG_POSITIONS = 1024  # GPT-2's context: long configs reach it, narrow enough to stay cheap
MAX_DECODE = 24  # decode steps per split point: long sequences prefill most of their length
NEAR_END = 16  # "near the end of the context": within this many positions of the last one


# -- pieces ------------------------------------------------------------------------------
@st.composite
def configs(
    draw: st.DrawFn,
    *,
    declared: tuple[zoo.GPT2Config, ...] = (),
    min_positions: int = 1,
    max_layers: int = 3,
    max_heads: int = 4,
    head_sizes: tuple[int, int] = (4, 16),
    max_vocab: int = 512,
    max_positions: int = 64,
    long_positions: int = LONG_POSITIONS,
) -> zoo.GPT2Config:
    """Small GPT-2 configs: 1-3 layers, 1-4 heads of 4-16, vocab 2-512, 1-64 positions; or long ones.

    A long config has ``max_positions + 1`` to ``long_positions`` positions
    (128, 256, 512 and ``long_positions`` among them), 1-2 layers and 1-2
    heads of 4-8: wide enough for a position bug to show, narrow enough that a
    whole context costs milliseconds. ``declared``: the variant's own
    ``Capabilities.test_configs``, drawn from instead when given (those with
    at least ``min_positions``).
    """
    if declared:
        usable = [c for c in declared if c.n_positions >= min_positions]
        if not usable:
            raise ValueError(f"no declared test config has n_positions >= {min_positions}")
        return draw(st.sampled_from(usable))
    if long_positions > max_positions and draw(st.booleans()):
        edges = [n for n in (128, 256, 512, long_positions) if max_positions < n <= long_positions]
        n_positions = draw(st.integers(max_positions + 1, long_positions) | st.sampled_from(edges))
        max_layers, max_heads, head_sizes = min(max_layers, 2), min(max_heads, 2), (4, 8)
    else:
        n_positions = draw(st.integers(max(1, min_positions), max(min_positions, max_positions)))
    n_head = draw(st.integers(1, max_heads))
    head_size = draw(st.integers(*head_sizes))
    return zoo.GPT2Config(
        vocab_size=draw(st.integers(2, max_vocab)),
        n_positions=n_positions,
        n_embd=n_head * head_size,
        n_layer=draw(st.integers(1, max_layers)),
        n_head=n_head,
        layer_norm_epsilon=draw(st.sampled_from([1e-5, 1e-6, 1e-4])),
    )


@st.composite
def weight_inits(draw: st.DrawFn, *, max_scale: float = MAX_SCALE) -> WeightInit:
    """A weight seed and a scale of GPT-2's init std, from 1 (GPT-2 itself) to ``max_scale``."""
    scale = draw(st.sampled_from([1.0, 3.0, 10.0, max_scale]) | st.floats(1.0, max_scale))
    return WeightInit(seed=draw(st.integers(0, 2**16)), scale=scale)


def lengths(config: zoo.GPT2Config, *, min_length: int = 1, max_length: int | None = None) -> st.SearchStrategy[int]:
    """Sequence lengths from ``min_length`` to ``n_positions`` (or ``max_length``)."""
    top = config.n_positions if max_length is None else min(max_length, config.n_positions)
    return st.integers(min(min_length, top), top)


def long_lengths(config: zoo.GPT2Config, *, min_length: int = 1, max_length: int | None = None) -> st.SearchStrategy[int]:
    """:func:`lengths` up to ``max_length``, or a length within ``NEAR_END`` of the whole context (it included)."""
    n = config.n_positions
    near = st.just(n) | st.integers(max(min_length, n - NEAR_END), n)
    return lengths(config, min_length=min_length, max_length=max_length) | near


def batch_sizes(*, min_size: int = 1, max_size: int = 3) -> st.SearchStrategy[int]:
    return st.integers(min_size, max_size)


def _token(config: zoo.GPT2Config) -> st.SearchStrategy[int]:
    edges = sorted({0, config.vocab_size - 1, config.eos_token_id})
    return st.sampled_from(edges) | st.integers(0, config.vocab_size - 1)


@st.composite
def token_ids(draw: st.DrawFn, config: zoo.GPT2Config, batch: int, length: int) -> Ids:
    """``batch`` rows of ``length`` ids in the vocabulary, rich in 0, vocab-1 and ``<|endoftext|>``."""
    row = st.lists(_token(config), min_size=length, max_size=length).map(tuple)
    return tuple(draw(row) for _ in range(batch))


@st.composite
def padding_patterns(draw: st.DrawFn, batch: int, length: int) -> tuple[int, ...]:
    """Real tokens per row of a left-padded batch: each in [1, length], at least one row full."""
    counts = [draw(st.integers(1, length) | st.integers(max(1, length - NEAR_END), length)) for _ in range(batch)]
    counts[draw(st.integers(0, batch - 1))] = length
    return tuple(counts)


def split_points(length: int, first: int = 1, max_decode: int = MAX_DECODE) -> st.SearchStrategy[int]:
    """How many tokens to prefill before decoding the rest one by one: ``first`` to ``length``, leaving at most
    ``max_decode`` to decode."""
    return st.integers(max(first, length - max_decode), length)


# -- cases, one per property -------------------------------------------------------------
class ForwardCase(NamedTuple):
    config: zoo.GPT2Config
    init: WeightInit
    ids: Ids
    dtype: str


class CausalityCase(NamedTuple):
    config: zoo.GPT2Config
    init: WeightInit
    ids: Ids
    position: int  # the token changed; logits before it must not move
    token: int  # its new value


class Batch(NamedTuple):
    config: zoo.GPT2Config
    init: WeightInit
    ids: Ids


class PaddedCase(NamedTuple):
    config: zoo.GPT2Config
    init: WeightInit
    ids: Ids  # each row's real tokens, right-aligned after the padding
    real: tuple[int, ...]  # real tokens per row; the rest is padding
    pad: int  # the id written at padded places (any id: it must not matter)


class IncrementalCase(NamedTuple):
    config: zoo.GPT2Config
    init: WeightInit
    ids: Ids
    real: tuple[int, ...] | None  # left padding, when the variant supports it
    splits: tuple[int, ...]  # prefill sizes, each decoded to the end through one cache
    cache_length: int  # max_seq_length given to setup_caches (>= the sequence)


class GenerationCase(NamedTuple):
    config: zoo.GPT2Config
    init: WeightInit
    prompts: Ids  # ragged when the variant supports padding
    max_new_tokens: int
    seed: int
    temperature: float
    top_k: int | None
    top_p: float | None


class SamplingCase(NamedTuple):
    config: zoo.GPT2Config
    init: WeightInit
    ids: Ids  # prompts of one length: the next token of each row is sampled
    seed: int
    temperature: float  # > 0: sampling
    top_k: int | None
    top_p: float | None


class WeightsCase(NamedTuple):
    config: zoo.GPT2Config
    first: WeightInit
    second: WeightInit


class TrainingCase(NamedTuple):
    config: zoo.GPT2Config
    init: WeightInit
    ids: Ids


class BadInput(NamedTuple):
    config: zoo.GPT2Config
    kind: str  # see BAD_KINDS
    value: int  # the offending id, length or size, where the kind has one


BAD_KINDS = (
    "negative id",
    "id >= vocab_size",
    "longer than n_positions",
    "empty sequence",
    "empty batch",
    "float ids",
    "ids of another integer dtype",
    "1-D ids",
    "3-D ids",
    "mask of the wrong shape",
    "complex mask",
    "input_pos outside the cache",
    "decoding past n_positions",
    "input_pos with a gap",
    "input_pos going backwards",
    "input_pos past the written slots",
)
#: the kinds that need a KV cache, so only a variant declaring kv_cache gets them
CACHE_KINDS = ("input_pos outside the cache", "decoding past n_positions", "input_pos with a gap",
               "input_pos going backwards", "input_pos past the written slots")
#: the integer dtypes token ids must not have (int64 and int32 are the interface's); BadInput.value indexes it
OTHER_ID_DTYPES = ("uint8", "int8", "int16", "bool")
#: kinds that need a cache of this many slots, so a config of fewer positions cannot have them
_SLOTS_NEEDED = {"input_pos with a gap": 3, "input_pos going backwards": 2,
                 "input_pos past the written slots": 2}


def bad_kinds(config: zoo.GPT2Config, kv_cache: bool) -> tuple[str, ...]:
    """The kinds of bad input that apply to a variant (``kv_cache``: it declares a cache) at ``config``."""
    return tuple(k for k in BAD_KINDS if (kv_cache or k not in CACHE_KINDS)
                 and config.n_positions >= _SLOTS_NEEDED.get(k, 1))


@st.composite
def forward_cases(draw: st.DrawFn, configs: st.SearchStrategy[zoo.GPT2Config],
                  dtypes: tuple[str, ...] = ("float32",)) -> ForwardCase:
    config = draw(configs)
    length = draw(long_lengths(config))
    batch = draw(batch_sizes(max_size=2))
    return ForwardCase(config, draw(weight_inits()), draw(token_ids(config, batch, length)),
                       draw(st.sampled_from(dtypes)))


@st.composite
def causality_cases(draw: st.DrawFn, configs: st.SearchStrategy[zoo.GPT2Config]) -> CausalityCase:
    config = draw(configs)
    length = draw(lengths(config, min_length=2))
    ids = draw(token_ids(config, 1, length))
    position = draw(st.integers(1, length - 1))
    token = draw(_token(config).filter(lambda t: t != ids[0][position]))
    return CausalityCase(config, draw(weight_inits()), ids, position, token)


@st.composite
def batches(draw: st.DrawFn, configs: st.SearchStrategy[zoo.GPT2Config]) -> Batch:
    config = draw(configs)
    length = draw(long_lengths(config, max_length=24))
    return Batch(config, draw(weight_inits()), draw(token_ids(config, draw(batch_sizes(min_size=2)), length)))


@st.composite
def padded_cases(draw: st.DrawFn, configs: st.SearchStrategy[zoo.GPT2Config]) -> PaddedCase:
    config = draw(configs)
    length = draw(long_lengths(config, min_length=2, max_length=24))
    batch = draw(batch_sizes(min_size=2))
    real = draw(padding_patterns(batch, length))
    return PaddedCase(config, draw(weight_inits()), draw(token_ids(config, batch, length)), real,
                      draw(_token(config)))


@st.composite
def incremental_cases(draw: st.DrawFn, configs: st.SearchStrategy[zoo.GPT2Config],
                      padding: bool = True) -> IncrementalCase:
    config = draw(configs)
    length = draw(long_lengths(config, min_length=2, max_length=20))
    batch = draw(batch_sizes(max_size=2))
    real = draw(padding_patterns(batch, length)) if padding and draw(st.booleans()) else None
    # every row needs a real token in the prefill: a mask row of zeros is invalid input
    first = length - min(real) + 1 if real else 1
    splits = (draw(split_points(length, first)), draw(split_points(length, first)))
    cache_length = draw(st.integers(length, config.n_positions))
    return IncrementalCase(config, draw(weight_inits()), draw(token_ids(config, batch, length)), real,
                           splits, cache_length)


@st.composite
def generation_cases(draw: st.DrawFn, configs: st.SearchStrategy[zoo.GPT2Config],
                     padding: bool = True) -> GenerationCase:
    config = draw(configs)
    new = draw(st.integers(1, min(6, config.n_positions - 1)))
    room = config.n_positions - new  # the longest prompt generation may start from: it ends at the last position
    longest = draw(st.integers(1, min(12, room)) | st.integers(max(1, room - NEAR_END), room))
    batch = draw(batch_sizes(max_size=3 if padding else 2))
    sizes = [draw(st.integers(1, longest)) if padding else longest for _ in range(batch)]
    sizes[0] = longest
    prompts = tuple(draw(token_ids(config, 1, n))[0] for n in sizes)
    return GenerationCase(
        config, draw(weight_inits()), prompts, new,
        seed=draw(st.integers(0, 2**31 - 1)),
        temperature=draw(st.sampled_from([1.0, 0.7, 1.5])),
        top_k=draw(st.none() | st.integers(1, config.vocab_size)),
        top_p=draw(st.none() | st.sampled_from([0.5, 0.9, 1.0])),
    )


@st.composite
def sampling_cases(draw: st.DrawFn, configs: st.SearchStrategy[zoo.GPT2Config]) -> SamplingCase:
    """Temperature, top-k and top-p alone and combined, at their edges (top-k 1 and vocab - 1, top-p 1)."""
    config = draw(configs)
    length = draw(lengths(config, max_length=min(12, config.n_positions - 1)))  # room for the sampled token
    V = config.vocab_size
    return SamplingCase(
        config, draw(weight_inits(max_scale=10.0)), draw(token_ids(config, draw(batch_sizes(max_size=2)), length)),
        seed=draw(st.integers(0, 2**31 - 1)),
        temperature=draw(st.sampled_from([1.0, 0.7, 2.0]) | st.floats(0.1, 4.0)),
        top_k=draw(st.none() | st.sampled_from(sorted({1, 2, max(1, V - 1)})) | st.integers(1, V)),
        top_p=draw(st.none() | st.sampled_from([0.5, 0.9, 1.0]) | st.floats(0.05, 1.0)),
    )


@st.composite
def weights_cases(draw: st.DrawFn, configs: st.SearchStrategy[zoo.GPT2Config]) -> WeightsCase:
    config = draw(configs)
    first = draw(weight_inits())
    second = draw(weight_inits().filter(lambda w: w.seed != first.seed))
    return WeightsCase(config, first, second)


@st.composite
def training_cases(draw: st.DrawFn, configs: st.SearchStrategy[zoo.GPT2Config]) -> TrainingCase:
    config = draw(configs)
    length = draw(lengths(config, min_length=2, max_length=16))
    batch = draw(batch_sizes(max_size=2))
    return TrainingCase(config, draw(weight_inits(max_scale=10.0)), draw(token_ids(config, batch, length)))


@st.composite
def bad_inputs(draw: st.DrawFn, configs: st.SearchStrategy[zoo.GPT2Config],
               kv_cache: bool = True) -> BadInput:
    config = draw(configs)
    kind = draw(st.sampled_from(bad_kinds(config, kv_cache)))
    value = 0
    if kind == "negative id":
        value = draw(st.integers(-(2**31), -1))
    elif kind == "id >= vocab_size":
        value = draw(st.integers(config.vocab_size, config.vocab_size + 2**20))
    elif kind == "longer than n_positions":
        value = draw(st.integers(config.n_positions + 1, config.n_positions + 8))
    elif kind == "decoding past n_positions":
        value = config.n_positions
    elif kind == "mask of the wrong shape":
        value = draw(st.integers(-1, 1).filter(lambda d: d != 0))  # mask longer or shorter by one
    elif kind == "ids of another integer dtype":
        value = draw(st.integers(0, len(OTHER_ID_DTYPES) - 1))
    elif kind == "input_pos with a gap":  # two tokens at [0, 1 + value]
        value = draw(st.integers(1, config.n_positions - 2))
    elif kind == "input_pos past the written slots":  # one token at [value] right after setup_caches
        value = draw(st.integers(1, config.n_positions - 1))
    return BadInput(config, kind, value)
