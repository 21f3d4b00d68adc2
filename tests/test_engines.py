"""The engine variants (ONNX Runtime, CTranslate2, llama.cpp): registered always, judged where installed.

Each installed engine variant runs the harness's quick profile; one whose
engine is missing is skipped with the reason. Without any engine, the
variants are still listed, as unavailable, with the command that installs
them.
"""

from __future__ import annotations

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
