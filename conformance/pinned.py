"""The pinned examples: edge cases every run checks, among them the GPT-2 124M shape.

The properties pin them with ``@example`` (small ones, so that a failure is
still reported by hypothesis) or run them after hypothesis' examples (the
124M shape, whose models :mod:`conformance.models` keeps for the whole run).
:func:`edge_ids` makes their token ids: deterministic, rich in the
vocabulary's edges.
"""

from __future__ import annotations

import zoo

from .models import WeightInit
from .strategies import (
    GPT2_124M,
    LONG_POSITIONS,
    MAX_SCALE,
    OTHER_ID_DTYPES,
    PINNED_INIT,
    BadInput,
    Batch,
    CausalityCase,
    ForwardCase,
    GenerationCase,
    Ids,
    IncrementalCase,
    PaddedCase,
    SamplingCase,
    bad_kinds,
)


def edge_ids(config: zoo.GPT2Config, length: int, batch: int = 1) -> Ids:
    """``batch`` rows of ``length`` ids: every third one an edge (0, the last id, eos, 1), the rest spread
    over the vocabulary; row ``b`` is the first row rotated by ``b``."""
    base = [0, config.vocab_size - 1, config.eos_token_id, 1 % config.vocab_size]
    row = tuple(base[i % len(base)] if i % 3 == 0 else (i * 7919) % config.vocab_size for i in range(length))
    return tuple(row[b:] + row[:b] for b in range(batch))


def pinned_config(declared: tuple[zoo.GPT2Config, ...] = ()) -> zoo.GPT2Config:
    """The 124M shape, or the largest declared test config."""
    if declared:
        return max(declared, key=lambda c: c.n_params)
    return GPT2_124M


def forward_example(dtype: str, declared: tuple[zoo.GPT2Config, ...] = ()) -> ForwardCase:
    config = pinned_config(declared)
    return ForwardCase(config, PINNED_INIT, edge_ids(config, min(8, config.n_positions)), dtype)


def small_full_length_example(dtype: str, declared: tuple[zoo.GPT2Config, ...] = ()) -> ForwardCase:
    """Every position used, at the largest weight scale."""
    config = declared[0] if declared else zoo.GPT2Config(vocab_size=97, n_positions=16, n_embd=32,
                                                         n_layer=2, n_head=4)
    return ForwardCase(config, WeightInit(1, MAX_SCALE), edge_ids(config, config.n_positions, 2), dtype)


#: the whole of GPT-2's context at a width that costs milliseconds
LONG_NARROW = zoo.GPT2Config(vocab_size=97, n_positions=LONG_POSITIONS, n_embd=16, n_layer=2, n_head=2)


def full_context_example(dtype: str, declared: tuple[zoo.GPT2Config, ...] = ()) -> ForwardCase:
    """One row filling the 124M shape's whole context (1024 tokens), or the largest declared test config's."""
    config = pinned_config(declared)
    return ForwardCase(config, PINNED_INIT, edge_ids(config, config.n_positions), dtype)


def long_narrow_examples(dtype: str, declared: tuple[zoo.GPT2Config, ...] = ()) -> list[ForwardCase]:
    """Two rows over GPT-2's whole context at a narrow width and the largest weight scale (none where test
    configs are declared: :func:`small_full_length_example` fills theirs)."""
    if declared:
        return []
    return [ForwardCase(LONG_NARROW, WeightInit(1, MAX_SCALE), edge_ids(LONG_NARROW, LONG_POSITIONS, 2), dtype)]


def causality_example(declared: tuple[zoo.GPT2Config, ...] = ()) -> CausalityCase:
    config = pinned_config(declared)
    ids = edge_ids(config, min(8, config.n_positions))
    return CausalityCase(config, PINNED_INIT, ids, len(ids[0]) // 2, (ids[0][len(ids[0]) // 2] + 1) % config.vocab_size)


def batch_example(declared: tuple[zoo.GPT2Config, ...] = ()) -> Batch:
    config = pinned_config(declared)
    return Batch(config, PINNED_INIT, edge_ids(config, min(6, config.n_positions), 2))


def padded_example(declared: tuple[zoo.GPT2Config, ...] = ()) -> PaddedCase:
    config = pinned_config(declared)
    length = min(6, config.n_positions)
    return PaddedCase(config, PINNED_INIT, edge_ids(config, length, 2), (length, max(1, length - 3)),
                      config.eos_token_id)


def full_context_incremental_example(declared: tuple[zoo.GPT2Config, ...] = ()) -> IncrementalCase:
    """The 124M shape's whole context (or the largest declared test config's): prefill all but the last three
    tokens, then decode to the last position through a cache of the whole context (one split: a 124M prefill
    of 1021 tokens costs seconds)."""
    config = pinned_config(declared)
    n = config.n_positions
    return IncrementalCase(config, PINNED_INIT, edge_ids(config, n), None, (max(1, n - 3),), n)


def long_narrow_incremental_examples(padding: bool, declared: tuple[zoo.GPT2Config, ...] = ()) -> list[IncrementalCase]:
    """GPT-2's whole context at a narrow width, rows padded to end at different lengths where supported."""
    if declared:
        return []
    n = LONG_POSITIONS
    real = (n, n - 9) if padding else None
    return [IncrementalCase(LONG_NARROW, WeightInit(2, 10.0), edge_ids(LONG_NARROW, n, 2), real, (n - 20, n - 1), n)]


def long_narrow_padded_examples(declared: tuple[zoo.GPT2Config, ...] = ()) -> list[PaddedCase]:
    """Two rows over GPT-2's whole context at a narrow width, ending 1024 and 1011 tokens after their padding."""
    if declared:
        return []
    return [PaddedCase(LONG_NARROW, WeightInit(3, 10.0), edge_ids(LONG_NARROW, LONG_POSITIONS, 2),
                       (LONG_POSITIONS, LONG_POSITIONS - 13), LONG_NARROW.eos_token_id)]


def incremental_example(padding: bool, declared: tuple[zoo.GPT2Config, ...] = ()) -> IncrementalCase:
    config = pinned_config(declared)
    length = min(6, config.n_positions)
    real = (length, max(1, length - 2)) if padding else None
    first = length - min(real) + 1 if real else 1
    return IncrementalCase(config, PINNED_INIT, edge_ids(config, length, 2), real, (first, max(first, length - 1)),
                           min(config.n_positions, length + 2))


def generation_example(padding: bool, declared: tuple[zoo.GPT2Config, ...] = ()) -> GenerationCase:
    config = pinned_config(declared)
    n = min(5, config.n_positions - 1)
    prompts = edge_ids(config, n, 2)
    if padding:
        prompts = (prompts[0], prompts[1][: max(1, n - 2)])
    return GenerationCase(config, PINNED_INIT, prompts, min(3, config.n_positions - n), 1234, 1.0, 50, 0.9)


def sampling_examples(declared: tuple[zoo.GPT2Config, ...] = ()) -> list[SamplingCase]:
    """The 124M shape at GPT-2's init (a flat distribution: top-p keeps many tokens), each filter with a
    temperature other than 1, so that the order of temperature and filtering shows."""
    config = pinned_config(declared)
    ids = edge_ids(config, min(5, config.n_positions))
    return [SamplingCase(config, PINNED_INIT, ids, 1234, 0.7, None, 0.9),
            SamplingCase(config, PINNED_INIT, ids, 99, 1.5, 40, 0.5)]


def bad_input_examples(kv_cache: bool, declared: tuple[zoo.GPT2Config, ...] = ()) -> list[BadInput]:
    """Every kind of bad input once, so that none is left to chance."""
    config = declared[0] if declared else zoo.GPT2Config(vocab_size=50, n_positions=8, n_embd=8, n_layer=1,
                                                         n_head=2)
    values = {"negative id": -1, "id >= vocab_size": config.vocab_size, "decoding past n_positions": config.n_positions,
              "longer than n_positions": config.n_positions + 1, "mask of the wrong shape": 1,
              "input_pos with a gap": 1, "input_pos past the written slots": 1}
    cases = [BadInput(config, kind, values.get(kind, 0)) for kind in bad_kinds(config, kv_cache)]
    # every other integer dtype of token ids, not only the first
    cases += [BadInput(config, "ids of another integer dtype", i) for i in range(1, len(OTHER_ID_DTYPES))]
    return cases

