"""The harness reaches the whole context and judges sampling against Hugging Face: its own helpers, checked."""

from __future__ import annotations

import torch
from hypothesis import find, settings

import zoo
from conformance import pinned
from conformance import strategies as s
from conformance.properties import PROPERTIES
from conformance.properties.sampling import _support_difference, hf_distribution

FIND = settings(max_examples=500, database=None, derandomize=True)


def test_configs_reach_the_whole_context_narrowly() -> None:
    config = find(s.configs(), lambda c: c.n_positions == s.LONG_POSITIONS, settings=FIND)
    assert config.n_layer <= 2 and config.n_head <= 2 and config.head_size <= 8
    declared = (zoo.GPT2Config(vocab_size=101, n_positions=16, n_embd=32, n_layer=2, n_head=4),)
    assert find(s.configs(declared=declared), lambda c: True, settings=FIND) == declared[0]


def test_pinned_examples_fill_the_124m_context() -> None:
    case = pinned.full_context_example("float32")
    assert case.config == zoo.GPT2Config() and len(case.ids[0]) == 1024 > 512
    inc = pinned.full_context_incremental_example()
    assert inc.splits == (1021,) and inc.cache_length == 1024
    assert pinned.long_narrow_examples("float32", (zoo.GPT2Config(n_positions=16),)) == []


def test_decoding_past_the_context_is_a_bad_input_only_with_a_cache() -> None:
    assert "decoding past n_positions" in {b.kind for b in pinned.bad_input_examples(True)}
    assert not set(s.CACHE_KINDS) & {b.kind for b in pinned.bad_input_examples(False)}


def test_every_bad_input_kind_is_pinned_and_fits_its_config() -> None:
    cases = pinned.bad_input_examples(True)
    assert {b.kind for b in cases} == set(s.BAD_KINDS)
    assert sorted(b.value for b in cases if b.kind == "ids of another integer dtype") == [0, 1, 2, 3]
    one = zoo.GPT2Config(vocab_size=50, n_positions=1, n_embd=8, n_layer=1, n_head=2)
    assert not {"input_pos with a gap", "input_pos going backwards"} & set(s.bad_kinds(one, kv_cache=True))
    two = zoo.GPT2Config(vocab_size=50, n_positions=2, n_embd=8, n_layer=1, n_head=2)
    assert "input_pos with a gap" not in s.bad_kinds(two, kv_cache=True)  # [0, 2] needs three slots
    assert "input_pos going backwards" in s.bad_kinds(two, kv_cache=True)


def test_the_reference_distribution_is_the_shared_sampler() -> None:
    logits = torch.randn(3, 200, generator=torch.Generator().manual_seed(1)) * 4
    for temperature, top_k, top_p in ((1.0, None, None), (0.7, 5, None), (1.5, None, 0.9), (0.3, 40, 0.5)):
        expected = hf_distribution(logits, temperature, top_k, top_p)
        assert torch.equal(zoo.sampling_distribution(logits, temperature, top_k, top_p), expected)


def test_support_difference_names_the_first_token_outside_both_precisions() -> None:
    hf = torch.tensor([[0.5, 0.5, 0.0, 0.0]], dtype=torch.float64)
    assert _support_difference(hf > 0, hf, hf) is None
    kept = torch.tensor([[True, True, True, False]])
    assert _support_difference(kept, hf, hf) == (0, 2)
    hf32 = torch.tensor([[0.4, 0.4, 0.2, 0.0]], dtype=torch.float64)  # a boundary token float32 keeps
    assert _support_difference(kept, hf32, hf) is None


def test_the_new_properties_are_in_the_table() -> None:
    names = [p.name for p in PROPERTIES]
    assert names.index("generation") < names.index("sampling") < names.index("weights") < names.index("tie")
