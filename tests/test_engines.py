"""The engine variants (ONNX Runtime, CTranslate2, llama.cpp): registered always, judged where installed.

Each installed engine variant runs the harness's quick profile; one whose
engine is missing is skipped with the reason. Without any engine, the
variants are still listed, as unavailable, with the command that installs
them.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import re
from typing import Any

import pytest

import zoo
from conformance import runner
from zoo._cli import main

#: variant -> the module its engine is imported as
ENGINES = {
    "onnxruntime": "onnxruntime",
    "onnxruntime-int8": "onnxruntime",
    "onnxruntime-int4": "onnx_ir",  # the 4-bit quantiser needs it besides onnxruntime
    "ctranslate2": "ctranslate2",
    "ctranslate2-int8": "ctranslate2",
    "llama.cpp": "llama_cpp",
    "llama.cpp-q8_0": "llama_cpp",
    "llama.cpp-q4_0": "llama_cpp",
}


def test_every_engine_variant_is_registered_with_its_precision() -> None:
    assert set(ENGINES) <= set(zoo.list_variants())
    assert zoo.resolve("onnxruntime@int8")[0].name == "onnxruntime-int8"
    assert zoo.resolve("onnxruntime@int4")[0].name == "onnxruntime-int4"
    assert zoo.resolve("ctranslate2@int8")[0].name == "ctranslate2-int8"
    assert zoo.resolve("llama.cpp@q8_0")[0].name == "llama.cpp-q8_0"
    assert zoo.resolve("llama.cpp@bfloat16") == (zoo.get_variant("llama.cpp"), "bfloat16")


@pytest.fixture
def no_engines(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every engine looks uninstalled to ``zoo.missing_modules`` (the other modules are found as usual)."""
    find_spec = importlib.util.find_spec
    engines = {"onnxruntime", "onnx", "onnx_ir", "ctranslate2", "llama_cpp"}

    def without_engines(name: str, *args: Any, **kwargs: Any) -> Any:
        return None if name in engines else find_spec(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", without_engines)


def test_an_uninstalled_engine_is_listed_as_unavailable_with_its_install_command(
        no_engines: None, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list", "onnxruntime*"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^onnxruntime-int8 +n/a +ONNX Runtime's dynamic int8", out, re.MULTILINE), out
    assert "unavailable: onnxruntime is not installed: pip install 'gpt2-zoo[onnxruntime]'" in out
    for name, why in (("ctranslate2-int8", "ctranslate2 is not installed: pip install 'gpt2-zoo[ctranslate2]'"),
                      ("llama.cpp-q4_0", "llama_cpp is not installed: pip install 'gpt2-zoo[llama-cpp]'")):
        assert zoo.get_variant(name).why_unavailable().startswith(why)
        results = runner.check_variant(name, profile="quick", properties=["logits"])
        assert [(r.status, r.message.split(" (")[0]) for r in results] == [("skip", why)]


#: the properties the suite runs. Exact engines: what an engine adds to the interface (every position's
#: logits, padding, its cache, weights in and out, input checks) and fidelity. Quantised ones: what
#: quantising changes (logits, through the cache too, and the fidelity budgets). `zoo check NAME` runs every
#: property; here each import costs an engine session (and a quantisation), and all would take minutes.
EXACT = ["logits", "padding", "incremental", "weights", "bad-input", "fidelity"]
APPROXIMATE = ["logits", "incremental", "fidelity"]


@pytest.mark.parametrize("name", list(ENGINES))
def test_engine_variant_conforms(name: str) -> None:
    pytest.importorskip(ENGINES[name], reason=f"{ENGINES[name]} is not installed: {name} is not checked")
    missing = zoo.get_variant(name).why_unavailable()  # installed, but something else it needs is too old
    if missing:
        pytest.skip(f"{name} is not checked: {missing}")
    exact = zoo.get_variant(name).capabilities.exact
    results = runner.check_variant(name, profile="quick", properties=EXACT if exact else APPROXIMATE)
    failed = [r for r in results if r.status == "fail"]
    assert not failed, runner.failures(failed)
    assert {r.prop for r in results if r.status == "pass"} >= {"interface", "logits", "fidelity"}


def test_llama_cpp_counts_the_tensors_it_holds_not_the_float32_copy() -> None:
    pytest.importorskip("llama_cpp", reason="llama_cpp is not installed: llama.cpp's weight bytes are not checked")
    config = zoo.GPT2Config(vocab_size=1024, n_positions=128, n_embd=96, n_layer=3, n_head=4)
    held = {name: zoo.get_variant(name).build(config).weight_bytes()
            for name in ("llama.cpp", "llama.cpp-q8_0", "llama.cpp-q4_0")}
    assert held["llama.cpp"] == pytest.approx(4 * config.n_params, rel=0.01)  # F32, the tie once
    assert held["llama.cpp-q4_0"] < held["llama.cpp-q8_0"] < held["llama.cpp"] / 3, held


# -- CTranslate2: greedy decoding through its own generate_batch -----------------------------------------------

needs_ctranslate2 = pytest.mark.skipif(zoo.get_variant("ctranslate2").why_unavailable() is not None,
                                       reason=f"ctranslate2: {zoo.get_variant('ctranslate2').why_unavailable()}")
# wide initialisation: with GPT-2's own (0.02) a random model repeats its last token, and every loop would agree
WIDE = zoo.GPT2Config(vocab_size=300, n_positions=64, n_embd=64, n_layer=2, n_head=4, initializer_range=0.2)
PROMPTS = [[5, 17, 250, 3, 99], [42], [7, 8, 9, 10, 11, 12, 13, 14, 15]]  # ragged: left-padded by zoo and HF


def _hf_greedy(model: zoo.GPT2, prompts: list[list[int]], max_new_tokens: int, eos: int) -> list[list[int]]:
    """Hugging Face's greedy ``generate`` on ``model``'s weights, left-padded, cut after each row's first ``eos``."""
    import torch

    from conformance.models import hf_model

    reference = hf_model(model.config, model.export_weights())
    longest = max(map(len, prompts))
    ids = torch.tensor([[eos] * (longest - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (longest - len(p)) + [1] * len(p) for p in prompts])
    with torch.no_grad():
        out = reference.generate(input_ids=ids, attention_mask=mask, do_sample=False, max_new_tokens=max_new_tokens,
                                 pad_token_id=eos, eos_token_id=eos)
    return [row[: row.index(eos) + 1] if eos in row else row for row in out[:, longest:].tolist()]


@pytest.fixture
def forwards(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The batch size of every full forward CTranslate2 models run from now on."""
    from plugins.ctranslate2.model import CTranslate2GPT2

    calls: list[int] = []
    forward = CTranslate2GPT2.forward

    def counted(self: CTranslate2GPT2, input_ids: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(len(input_ids))
        return forward(self, input_ids, *args, **kwargs)

    monkeypatch.setattr(CTranslate2GPT2, "forward", counted)
    return calls


@needs_ctranslate2
def test_ctranslate2_decodes_greedily_through_its_own_loop_as_hugging_face_does(forwards: list[int]) -> None:
    model = zoo.load("ctranslate2", config=WIDE, seed=1)
    eos = 203  # a token the model generates: one row stops early, the others run on
    expected = _hf_greedy(model, PROMPTS, 12, eos)
    assert sorted(map(len, expected)) == [3, 12, 12] and all(len(set(row)) > 3 for row in expected[:2])
    assert zoo.generate(model, PROMPTS, 12, eos_token_id=eos) == expected
    steps = list(zoo.stream(model, PROMPTS, 12, eos_token_id=eos))
    assert [step[2] for step in steps[2:4]] == [eos, None]  # a stopped row yields None afterwards
    assert zoo.generate(model, PROMPTS, 12, eos_token_id=eos, stop_at_eos=False)[2][:3] == expected[2]
    assert zoo.generate(model, PROMPTS, 0) == [[], [], []]
    for prompt, row in zip(PROMPTS, _hf_greedy(model, PROMPTS, 12, WIDE.eos_token_id), strict=True):
        assert zoo.generate(model, prompt, 12) == [row]  # each prompt alone, unpadded
    assert forwards == []  # all of it through generate_batch, none a full forward per token
    # sampling stays the zoo's, on full forwards: CTranslate2's sampler cannot be seeded per call
    zoo.generate(model, PROMPTS, 2, temperature=1.0, seed=0, stop_at_eos=False)
    assert forwards == [3, 3]
    forwards.clear()
    assert zoo.generate(model, PROMPTS, 3, use_cache=False) == [row[:3] for row in expected]
    assert forwards == [3, 3, 3]  # use_cache=False: the zoo's loop, a full forward per token


@needs_ctranslate2
def test_closing_ctranslate2_s_stream_early_stops_its_loop() -> None:
    model = zoo.load("ctranslate2", config=WIDE, seed=1)
    steps = zoo.stream(model, PROMPTS, 40, stop_at_eos=False)
    assert len(next(steps)) == 3
    steps.close()  # joins the engine's thread: nothing is left running
    import threading

    assert not [t for t in threading.enumerate() if t.name == "zoo-ctranslate2-generate"]


@needs_ctranslate2
def test_ctranslate2_int8_s_own_loop_chooses_what_its_full_forwards_choose() -> None:
    model = zoo.load("ctranslate2-int8", config=WIDE, seed=1)
    assert zoo.generate(model, PROMPTS, 12) == zoo.generate(model, PROMPTS, 12, use_cache=False)


@pytest.mark.parametrize("name", ["ctranslate2", "ctranslate2-int8"])
@needs_ctranslate2
def test_ctranslate2_generation_and_sampling_conform(name: str) -> None:
    results = runner.check_variant(name, profile="quick", properties=["generation", "sampling"])
    assert [(r.prop, r.status) for r in results] == [("interface", "pass"), ("generation", "pass"),
                                                      ("sampling", "pass")], runner.failures(results)


@pytest.mark.parametrize("name", ["ctranslate2", "ctranslate2-int8"])
@needs_ctranslate2
def test_the_harness_catches_an_own_loop_that_shifts_positions(name: str) -> None:
    """A greedy loop that drops each prompt's first token (every position one early) fails ``generation``."""
    from plugins.ctranslate2.model import CTranslate2GPT2

    class ShiftedLoop(CTranslate2GPT2):
        def generate_greedy(self, prompts: list[list[int]], max_new_tokens: int, *,
                            stop_token: int | None) -> Any:
            return super().generate_greedy([p[1:] or p for p in prompts], max_new_tokens, stop_token=stop_token)

    base = zoo.get_variant(name)
    scheme = "int8" if name.endswith("int8") else "float32"
    planted = zoo.register(dataclasses.replace(
        base, name=f"planted-{name}-shifted-loop", source="",
        build=lambda config, **kw: ShiftedLoop.build(config, scheme=scheme, **kw)))
    try:
        results = runner.check_variant(planted.name, profile="ci", properties=["generation"])
    finally:
        zoo.unregister(planted.name)
    assert [(r.prop, r.status) for r in results] == [("interface", "pass"), ("generation", "fail")]
    assert "greedy generation from prompt" in results[1].message, results[1].message
