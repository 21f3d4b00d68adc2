"""``zoo.generate`` / ``zoo.stream`` against Hugging Face's ``generate``, and their own rules."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import zoo
from conformance.models import hf_model
from zoo._generate import _filter

# Wide initialisations: with GPT-2's own (0.02) a random model just repeats its last token,
# and every decoding strategy would agree for the wrong reason.
SMALL = zoo.GPT2Config(vocab_size=300, n_positions=64, n_embd=64, n_layer=2, n_head=4, initializer_range=0.2)
GPT2_SMALL = zoo.GPT2Config(initializer_range=0.1)  # the 124M shape
PROMPTS = [[5, 17, 250, 3, 99], [42], [7, 8, 9, 10, 11, 12, 13, 14, 15]]


def hf_reference(model: zoo.GPT2) -> torch.nn.Module:
    """Hugging Face's GPT2LMHeadModel (eager attention, eval) holding ``model``'s weights."""
    return hf_model(model.config, model.export_weights())


def hf_generate(reference: torch.nn.Module, prompts: list[list[int]], max_new_tokens: int, eos: int) -> list[list[int]]:
    """Greedy ``generate`` of left-padded prompts, cut after each row's first ``eos`` as zoo does."""
    longest = max(map(len, prompts))
    ids = torch.tensor([[eos] * (longest - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (longest - len(p)) + [1] * len(p) for p in prompts])
    with torch.no_grad():
        out = reference.generate(input_ids=ids, attention_mask=mask, do_sample=False,
                                 max_new_tokens=max_new_tokens, min_new_tokens=0,
                                 pad_token_id=eos, eos_token_id=eos)
    rows = []
    for row in out[:, longest:].tolist():
        rows.append(row[: row.index(eos) + 1] if eos in row else row)
    return rows


@pytest.fixture(scope="module")
def small_models():
    models = {name: zoo.load(name, config=SMALL, seed=1) for name in ("pure", "hf")}
    return models, hf_reference(models["pure"])


@pytest.fixture(scope="module")
def gpt2_models():
    models = {name: zoo.load(name, config=GPT2_SMALL, seed=2) for name in ("pure", "hf")}
    return models, hf_reference(models["pure"])


class NoCache(zoo.GPT2):
    """A variant without a KV cache: full forwards only."""

    def __init__(self, inner: zoo.GPT2) -> None:
        self.inner, self.config = inner, inner.config

    def forward(self, input_ids, attention_mask=None, input_pos=None):
        return self.inner(input_ids, attention_mask=attention_mask, input_pos=input_pos)

    def import_weights(self, weights):
        self.inner.import_weights(weights)

    def export_weights(self):
        return self.inner.export_weights()

    @property
    def device(self):
        return self.inner.device

    @property
    def dtype(self):
        return self.inner.dtype


# -- greedy equals Hugging Face ------------------------------------------------------------------


@pytest.mark.parametrize("use_cache", [True, False])
@pytest.mark.parametrize("name", ["pure", "hf"])
def test_greedy_batched_matches_hugging_face(small_models, name, use_cache):
    models, reference = small_models
    eos = SMALL.eos_token_id
    expected = hf_generate(reference, PROMPTS, 12, eos)
    assert all(len(set(row)) > 3 for row in expected)  # not a model that only repeats
    assert zoo.generate(models[name], PROMPTS, 12, use_cache=use_cache) == expected
    for prompt, row in zip(PROMPTS, expected, strict=True):  # and each prompt alone, unpadded
        assert zoo.generate(models[name], prompt, 12, use_cache=use_cache) == [row]


@pytest.mark.parametrize("name", ["pure", "hf"])
def test_greedy_matches_hugging_face_on_the_124m_shape(gpt2_models, name):
    models, reference = gpt2_models
    prompts = [[464, 2068, 7586, 21831], [40, 1101, 257, 3303, 2746, 11, 290]]
    eos = GPT2_SMALL.eos_token_id
    expected = hf_generate(reference, prompts, 4, eos)
    assert len({token for row in expected for token in row}) > 2  # not a model that only repeats
    assert zoo.generate(models[name], prompts, 4) == expected


def test_model_without_cache_runs_full_forwards(small_models):
    models, _ = small_models
    no_cache = NoCache(models["pure"])
    assert zoo.generate(no_cache, PROMPTS, 6) == zoo.generate(models["pure"], PROMPTS, 6)
    with pytest.raises(zoo.CapabilityError):
        zoo.generate(no_cache, PROMPTS, 2, use_cache=True)


class OwnLoop(NoCache):
    """No KV cache, but a greedy loop of its own (here: the zoo's, on full forwards), whose calls it records."""

    def __init__(self, inner: zoo.GPT2) -> None:
        super().__init__(inner)
        self.calls: list[tuple[list[list[int]], int, int | None]] = []

    def generate_greedy(self, prompts, max_new_tokens, *, stop_token):
        self.calls.append((prompts, max_new_tokens, stop_token))
        return zoo.stream(self, prompts, max_new_tokens, use_cache=False, stop_at_eos=stop_token is not None,
                          eos_token_id=stop_token)


def test_greedy_generation_goes_through_a_models_own_loop_when_it_has_no_cache(small_models):
    models, reference = small_models
    model = OwnLoop(models["pure"])
    eos = SMALL.eos_token_id
    assert zoo.generate(model, PROMPTS, 12) == hf_generate(reference, PROMPTS, 12, eos)
    assert model.calls == [(PROMPTS, 12, eos)]
    zoo.generate(model, PROMPTS, 3, eos_token_id=7, stop_at_eos=False)
    assert model.calls[-1] == (PROMPTS, 3, None)  # None: no row stops
    model.calls.clear()
    zoo.generate(model, PROMPTS, 3, use_cache=False)  # the zoo's loop, asked for
    zoo.generate(model, PROMPTS, 3, temperature=0.8, seed=1)  # sampling: the zoo's sampler and seeded draws
    assert list(zoo.stream(model, PROMPTS, 0)) == []
    assert model.calls == []
    with pytest.raises(zoo.CapabilityError):  # it has no KV cache of the interface's to use
        zoo.generate(model, PROMPTS, 2, use_cache=True)


def test_a_model_with_a_cache_never_needs_a_loop_of_its_own(small_models):
    with pytest.raises(zoo.CapabilityError, match=r"has no generation loop of its own; use zoo\.generate"):
        small_models[0]["pure"].generate_greedy(PROMPTS, 2, stop_token=None)


def test_prompt_forms_are_equivalent(small_models):
    model = small_models[0]["pure"]
    prompt = PROMPTS[0]
    expected = zoo.generate(model, [prompt], 4)
    assert zoo.generate(model, prompt, 4) == expected
    assert zoo.generate(model, torch.tensor(prompt), 4) == expected
    assert zoo.generate(model, torch.tensor([prompt]), 4) == expected
    assert zoo.generate(model, [torch.tensor(prompt)], 4) == expected
    assert zoo.generate(model, np.array(prompt), 4) == expected
    assert zoo.generate(model, (t for t in [prompt]), 4) == expected


# -- sampling --------------------------------------------------------------------------------------


def test_seeded_sampling_is_reproducible_and_seeds_differ(small_models):
    model = small_models[0]["pure"]
    kwargs = {"temperature": 1.5, "stop_at_eos": False}
    first = zoo.generate(model, PROMPTS, 16, seed=123, **kwargs)
    assert zoo.generate(model, PROMPTS, 16, seed=123, **kwargs) == first
    assert zoo.generate(model, PROMPTS, 16, seed=124, **kwargs) != first
    assert all(len(row) == 16 for row in first)
    greedy = zoo.generate(model, PROMPTS, 16, stop_at_eos=False)
    assert first != greedy


def test_top_k_1_is_greedy(small_models):
    model = small_models[0]["hf"]
    greedy = zoo.generate(model, PROMPTS, 10)
    for seed in range(3):
        assert zoo.generate(model, PROMPTS, 10, temperature=2.0, top_k=1, seed=seed) == greedy


def test_sampling_respects_top_k(small_models):
    model = small_models[0]["pure"]
    prompt = PROMPTS[0]
    with torch.no_grad():
        logits = model(torch.tensor([prompt]))[0, -1]
    allowed = set(torch.topk(logits, 3).indices.tolist())
    for seed in range(20):
        assert zoo.generate(model, prompt, 1, temperature=5.0, top_k=3, seed=seed)[0][0] in allowed


@pytest.mark.parametrize("seed", range(6))
def test_filter_matches_hugging_face_warpers(seed):
    from transformers.generation.logits_process import (
        TemperatureLogitsWarper,
        TopKLogitsWarper,
        TopPLogitsWarper,
    )

    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(4, 500, generator=generator) * (1 + seed)
    temperature = [0.5, 1.0, 1.7][seed % 3]
    top_k = [None, 1, 5, 40, 499, 1000][seed]
    top_p = [0.05, 0.5, 0.9, 0.99, None, 1.0][seed]
    expected = TemperatureLogitsWarper(temperature)(None, logits.clone())
    if top_k is not None:
        expected = TopKLogitsWarper(top_k)(None, expected)
    if top_p is not None and top_p < 1.0:
        expected = TopPLogitsWarper(top_p)(None, expected)
    actual = _filter(logits, temperature, top_k, top_p)
    assert torch.equal(torch.isinf(actual), torch.isinf(expected))
    assert torch.equal(actual, expected)
    assert bool(torch.isfinite(actual).any(dim=-1).all())  # at least one token survives


def test_sampling_distribution_is_the_filtered_softmax():
    logits = torch.randn(2, 50, generator=torch.Generator().manual_seed(0)) * 3
    probs = zoo.sampling_distribution(logits, 0.7, 10, 0.9)
    assert torch.equal(probs, _filter(logits, 0.7, 10, 0.9).softmax(-1))
    assert torch.allclose(probs.sum(-1), torch.ones(2))
    assert int((probs > 0).sum(-1).max()) <= 10


class OwnSampler(NoCache):
    """A model whose sampler is its own: always the last vocabulary id."""

    def sampling_distribution(self, logits, temperature, top_k, top_p):
        probs = torch.zeros_like(logits)
        probs[:, -1] = 1.0
        return probs


def test_a_model_with_its_own_sampler_is_sampled_through_it(small_models):
    model = OwnSampler(small_models[0]["pure"])
    last = model.config.vocab_size - 1
    assert zoo.generate(model, PROMPTS, 3, temperature=1.0, seed=0, stop_at_eos=False) == [[last] * 3] * 3
    assert zoo.generate(model, PROMPTS, 3, stop_at_eos=False) != [[last] * 3] * 3  # greedy never samples


# -- stopping --------------------------------------------------------------------------------------


def test_each_row_stops_at_its_own_eos(small_models):
    model = small_models[0]["pure"]
    free = zoo.generate(model, PROMPTS, 10, stop_at_eos=False)
    eos = free[0][3]  # make row 0's fourth token the end of text
    rows_hitting = [b for b, row in enumerate(free) if eos in row]
    steps = list(zoo.stream(model, PROMPTS, 10, eos_token_id=eos))
    for b, row in enumerate(free):
        produced = [step[b] for step in steps]
        if b in rows_hitting:
            stop = row.index(eos)
            assert produced[: stop + 1] == row[: stop + 1]
            assert all(token is None for token in produced[stop + 1 :])
        else:
            assert produced == row[: len(produced)]
    if len(rows_hitting) == len(PROMPTS):
        assert len(steps) == max(row.index(eos) for row in free) + 1
    else:
        assert len(steps) == 10
    assert zoo.generate(model, PROMPTS, 10, eos_token_id=eos)[0] == free[0][: free[0].index(eos) + 1]
    assert zoo.generate(model, PROMPTS, 10, eos_token_id=eos, stop_at_eos=False) == free


def test_generation_ends_when_every_row_stopped(small_models):
    model = small_models[0]["pure"]
    first = zoo.generate(model, [PROMPTS[1]], 1)[0][0]
    steps = list(zoo.stream(model, [PROMPTS[1]], 10, eos_token_id=first))
    assert steps == [[first]]


def test_max_new_tokens_zero(small_models):
    model = small_models[0]["pure"]
    assert list(zoo.stream(model, PROMPTS, 0)) == []
    assert zoo.generate(model, PROMPTS, 0) == [[], [], []]


def test_stream_leaves_autograd_alone_between_steps(small_models):
    model = small_models[0]["pure"]
    steps = zoo.stream(model, PROMPTS, 3)
    next(steps)
    assert torch.is_grad_enabled()
    assert not torch.is_inference_mode_enabled()
    assert len(list(steps)) == 2


def test_full_context_is_allowed():
    model = zoo.load("pure", config=SMALL.replace(n_positions=8), seed=0)
    assert len(zoo.generate(model, [1, 2, 3], 5, stop_at_eos=False)[0]) == 5


# -- errors, raised when stream() is called --------------------------------------------------------------


@pytest.mark.parametrize(
    ("prompts", "kwargs", "match"),
    [
        ([], {}, "at least one token"),
        ([[1, 2], []], {}, "at least one token"),
        ([list(range(60))], {"max_new_tokens": 5}, "exceeds n_positions=64"),
        ([[1, 2]], {"max_new_tokens": -1}, "max_new_tokens"),
        ([[1, 2]], {"max_new_tokens": 2.0}, "max_new_tokens"),
        ([[1, 2]], {"max_new_tokens": True}, "max_new_tokens"),
        ([[1, 2]], {"temperature": -0.1}, "temperature"),
        ([[1, 2]], {"temperature": math.nan}, "temperature"),
        ([[1, 2]], {"temperature": math.inf}, "temperature"),
        ([[1, 2]], {"top_k": 0}, "top_k"),
        ([[1, 2]], {"top_k": 2.5}, "top_k"),
        ([[1, 2]], {"top_p": 0.0}, "top_p"),
        ([[1, 2]], {"top_p": 1.5}, "top_p"),
        ([[1, 2]], {"top_p": math.nan}, "top_p"),
        ([[1, 300]], {}, "token id 300 is out of range"),
        ([[-1, 2]], {}, "token id -1 is out of range"),
        ([[1, 2]], {"eos_token_id": 300}, "eos_token_id"),
        ("some text", {}, "encode it first"),
        ([[1.5, 2.0]], {}, "int token ids"),
        (torch.tensor([[1.0, 2.0]]), {}, "must be integers"),
        (torch.zeros(1, 1, 2, dtype=torch.long), {}, "1-D"),
        (None, {}, "prompts must be token ids.*got NoneType"),
        (7, {}, "prompts must be token ids.*got int"),
        ({1, 2}, {}, "prompts must be token ids.*got set"),
        ({"ids": [1, 2]}, {}, "prompts must be token ids.*got dict"),
        ([[1, 2], None], {}, "each prompt must be a sequence of int token ids, got None"),
        ([[1, 2], 3], {}, "each prompt must be a sequence of int token ids, got 3"),
        ([[1, 2]], {"temperature": 1.0, "seed": 2**64}, r"seed=18446744073709551616 is outside \[0, 2\*\*64\)"),
        ([[1, 2]], {"temperature": 1.0, "seed": -1}, r"outside \[0, 2\*\*64\)"),
        ([[1, 2]], {"temperature": 1.0, "seed": 1.5}, "seed=1.5 must be an int.*got float"),
        ([[1, 2]], {"temperature": 1.0, "seed": "x"}, "seed='x' must be an int.*got str"),
        ([[1, 2]], {"seed": True}, "got bool"),
    ],
)
def test_bad_arguments_raise_at_once(small_models, prompts, kwargs, match):
    model = small_models[0]["pure"]
    kwargs = {"max_new_tokens": 3, **kwargs}
    with pytest.raises(zoo.InvalidInputError, match=match):
        zoo.stream(model, prompts, **kwargs)  # not iterated: the check is eager
    with pytest.raises(zoo.InvalidInputError, match=match):
        zoo.generate(model, prompts, **kwargs)


def test_the_largest_seed_samples(small_models):
    model = small_models[0]["pure"]
    out = zoo.generate(model, [1, 2], 3, temperature=1.0, seed=2**64 - 1, stop_at_eos=False)
    assert len(out[0]) == 3


@pytest.mark.parametrize(("seed", "match"), [(2**64, "outside"), (1.5, "got float"), ("x", "got str"), (None, "NoneType")])
def test_load_refuses_a_bad_seed(seed, match):
    with pytest.raises(zoo.InvalidInputError, match=match):
        zoo.load("pure", config=SMALL, seed=seed)
    with pytest.raises(zoo.InvalidInputError, match=match):
        zoo.random_weights(SMALL, seed)


def test_random_weights_take_every_seed_below_2_to_the_64():
    top = zoo.random_weights(SMALL, 2**64 - 1)  # the derived per-tensor seed wraps instead of overflowing
    assert not torch.equal(top["wte.weight"], zoo.random_weights(SMALL, 0)["wte.weight"])
