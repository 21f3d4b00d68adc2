"""The ``compiled`` variant: its decode step really is compiled, agrees with ``pure``, and follows new weights.

The conformance harness checks ``compiled`` like every variant (``test_planted_bugs``); these tests pin
what is particular to it: the cache rounding, that decoding goes through a compiled step (not silently
eager), that importing weights throws the frozen step away, and the eager fallback past the budget.
Each compilation costs seconds on a CPU, so the tests share one small model.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
import torch
from marks import needs_int4

import zoo
from zoo.nn import compile as compiled
from zoo.nn.compile import CompiledDecode, cache_length

CONFIG = zoo.GPT2Config(vocab_size=97, n_positions=32, n_embd=32, n_layer=2, n_head=4)


@pytest.mark.parametrize(("asked", "n_positions", "slots"), [
    (1, 1024, 16), (16, 1024, 16), (17, 1024, 32), (144, 1024, 256), (1000, 1024, 1024),
    (20, 24, 24),  # never past the context...
    (10, 12, 12),  # ...even when the minimum would be
])
def test_cache_length_rounds_up_to_a_power_of_two_within_the_context(asked: int, n_positions: int,
                                                                     slots: int) -> None:
    assert cache_length(asked, n_positions) == slots


def _decode(model: zoo.GPT2, ids: torch.Tensor, mask: torch.Tensor | None, prefill: int) -> torch.Tensor:
    """Prefill ``prefill`` tokens, then decode the rest one at a time; the logits of every step."""
    B, T = ids.shape
    model.setup_caches(B, T)
    with torch.no_grad():
        out = [model(ids[:, :prefill], None if mask is None else mask[:, :prefill],
                     input_pos=torch.arange(prefill, device=ids.device))]
        for t in range(prefill, T):
            out.append(model(ids[:, t : t + 1], None if mask is None else mask[:, : t + 1],
                             input_pos=torch.tensor([t], device=ids.device)))
    return torch.cat(out, dim=1)


@pytest.fixture(scope="module")
def models() -> Iterator[tuple[CompiledDecode, zoo.GPT2]]:
    weights = zoo.random_weights(CONFIG, seed=3)
    fast = zoo.load("compiled", weights, config=CONFIG, layout="canonical")
    slow = zoo.load("pure", weights, config=CONFIG, layout="canonical")
    assert isinstance(fast, CompiledDecode)
    yield fast, slow


def test_decoding_runs_a_compiled_step_and_matches_pure(models: tuple[CompiledDecode, zoo.GPT2],
                                                        capfd: pytest.CaptureFixture[str]) -> None:
    fast, slow = models
    ids = torch.randint(0, CONFIG.vocab_size, (2, 9), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    mask[1, :3] = 0  # the second row is left-padded
    got = _decode(fast, ids, mask, prefill=4)
    steps = {key: step for key, step in fast._steps.items() if step is not None}
    assert list(steps) == [(2, 16)], fast._steps  # batch 2, 9 slots rounded up to 16: compiled, not eager
    assert "Autotune Choices" not in capfd.readouterr().err  # Inductor's autotuning reports stay quiet
    expected = _decode(slow, ids, mask, prefill=4)
    real = mask.bool()
    torch.testing.assert_close(got[real], expected[real], rtol=1e-5, atol=1e-5)


def test_importing_weights_drops_the_frozen_step(models: tuple[CompiledDecode, zoo.GPT2]) -> None:
    fast, slow = models
    ids = torch.randint(0, CONFIG.vocab_size, (2, 9), generator=torch.Generator().manual_seed(1))
    _decode(fast, ids, None, prefill=4)
    new = zoo.random_weights(CONFIG, seed=4)
    fast.import_weights(new)
    slow.import_weights(new)
    assert fast._steps == {}
    # freezing folded the old weights into the step: only a fresh compilation sees the new ones
    torch.testing.assert_close(_decode(fast, ids, None, prefill=4), _decode(slow, ids, None, prefill=4),
                               rtol=1e-5, atol=1e-5)
    assert fast._steps.get((2, 16)) is not None


@pytest.mark.parametrize("eager", ["quantised", pytest.param("quantised-int4", marks=needs_int4)])
def test_quantised_compiled_decodes_through_a_compiled_step_as_quantised_does(eager: str) -> None:
    weights = zoo.random_weights(CONFIG, seed=6)
    fast = zoo.load(f"{eager}-compiled", weights, config=CONFIG, layout="canonical")
    slow = zoo.load(eager, weights, config=CONFIG, layout="canonical")
    ids = torch.randint(0, CONFIG.vocab_size, (1, 7), generator=torch.Generator().manual_seed(3))
    got = _decode(fast, ids, None, prefill=3)
    assert isinstance(fast, CompiledDecode) and fast._steps.get((1, 16)) is not None
    # the same int8 weights and bfloat16 arithmetic, fused differently: equal up to bfloat16 rounding
    torch.testing.assert_close(got.float(), _decode(slow, ids, None, prefill=3).float(), rtol=2e-2, atol=2e-2)


def test_past_the_budget_decoding_is_eager_with_a_warning(models: tuple[CompiledDecode, zoo.GPT2],
                                                          monkeypatch: pytest.MonkeyPatch,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    fast, slow = models
    monkeypatch.setattr(compiled, "MAX_COMPILED_STEPS", compiled.compiled_steps())
    monkeypatch.setattr(compiled, "_warned", False)
    ids = torch.randint(0, CONFIG.vocab_size, (3, 5), generator=torch.Generator().manual_seed(2))
    with caplog.at_level(logging.WARNING, logger="zoo"):
        got = _decode(fast, ids, None, prefill=2)
    assert fast._steps[(3, 16)] is None
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "decodes eagerly: slower, with the same result" in warnings[0].getMessage()
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="zoo"):
        _decode(fast, torch.cat([ids, ids]), None, prefill=2)  # another batch size, also past the budget
    assert [r.levelno for r in caplog.records if "decodes eagerly" in r.getMessage()] == [logging.INFO]
    torch.testing.assert_close(got, _decode(slow, ids, None, prefill=2), rtol=1e-5, atol=1e-5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU: torch sees none here")
def test_cuda_graphs_decode_as_pure_does() -> None:
    weights = zoo.random_weights(CONFIG, seed=5)
    fast = zoo.load("compiled", weights, config=CONFIG, device="cuda", layout="canonical")
    slow = zoo.load("pure", weights, config=CONFIG, device="cuda", layout="canonical")
    ids = torch.randint(0, CONFIG.vocab_size, (2, 12), device="cuda")
    torch.testing.assert_close(_decode(fast, ids, None, prefill=3), _decode(slow, ids, None, prefill=3),
                               rtol=1e-4, atol=1e-4)


def test_the_declared_budget_is_the_one_in_force() -> None:
    from plugins import compiled as plugin

    assert plugin.MAX_COMPILED_STEPS == compiled.MAX_COMPILED_STEPS
    assert f"at most {compiled.MAX_COMPILED_STEPS} compiled steps" in zoo.get_variant("compiled").notes


def test_compile_decode_takes_models_built_on_zoo_nn_only() -> None:
    with pytest.raises(TypeError, match=r"zoo\.nn\.GPT"):
        compiled.compile_decode(zoo.load("cpu", config=CONFIG))  # type: ignore[arg-type]


def test_writing_weights_in_place_drops_the_frozen_step(models: tuple[CompiledDecode, zoo.GPT2]) -> None:
    fast, slow = models
    ids = torch.randint(0, CONFIG.vocab_size, (2, 9), generator=torch.Generator().manual_seed(7))
    _decode(fast, ids, None, prefill=4)
    assert fast._steps.get((2, 16)) is not None
    with torch.no_grad():  # through the exported tensors, which are the models' own
        for model in (fast, slow):
            model.export_weights()["wte.weight"].mul_(2)
    torch.testing.assert_close(_decode(fast, ids, None, prefill=4), _decode(slow, ids, None, prefill=4),
                               rtol=1e-5, atol=1e-5)
    assert fast._steps.get((2, 16)) is not None  # compiled again, against the new weights


def _int8_steps(name: str) -> torch.Tensor:
    """A 32-wide int8 model's decode steps through ``name``: the shape max-autotune's C++ template got wrong."""
    from conformance.models import WeightInit, canonical_weights

    config = zoo.GPT2Config(vocab_size=101, n_positions=16, n_embd=32, n_layer=2, n_head=4)
    weights = canonical_weights(config, WeightInit(863, 3.0))
    ids = torch.tensor([[0, 41, 82, 1, 63, 3, 100, 85]])
    model = zoo.load(name, weights, config=config, layout="canonical")
    model.setup_caches(1, 8)
    with torch.no_grad():
        model(ids[:, :1], input_pos=torch.arange(1))
        return torch.cat([model(ids[:, t : t + 1], input_pos=torch.tensor([t])) for t in range(1, 8)], 1).float()


@pytest.fixture
def two_threads() -> Iterator[None]:
    # the C++ template's wrong steps came with 2 threads (right with 1, which the suite runs on)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def test_a_compiled_int8_decode_step_computes_what_the_eager_one_does(two_threads: None) -> None:
    # max-autotune's C++ GEMM template, with freezing, got a 32-wide int8 model's decode steps wrong by
    # 25 to 94% of the logits' norm (torch 2.13, 2 threads): the first step is checked against eager
    eager, fast = _int8_steps("quantised"), _int8_steps("quantised-compiled")
    assert float((fast - eager).norm() / eager.norm()) < 0.02


def test_a_compiled_int8_step_that_differs_from_eager_is_compiled_again_with_atens_kernels(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(compiled, "INT8_CHECK", -1.0)  # every first step "differs": the fallback always runs
    with caplog.at_level(logging.INFO, logger="zoo"):
        fast = _int8_steps("quantised-compiled")
    assert "compiling it again with ATen's kernels" in caplog.text
    eager = _int8_steps("quantised")
    assert float((fast - eager).norm() / eager.norm()) < 0.02
