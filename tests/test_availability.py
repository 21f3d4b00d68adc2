"""Variants that cannot run here (a missing engine, an old torch) and ``NAME@PRECISION`` specs."""

from __future__ import annotations

import dataclasses
import importlib.metadata
from collections.abc import Iterator

import pytest

import zoo
import zoo.nn
from conformance import runner
from zoo._cli import main

MISSING = "fakeengine is not installed: pip install fakeengine"


@pytest.fixture
def unavailable() -> Iterator[str]:
    pure = zoo.get_variant("pure")
    zoo.register(dataclasses.replace(pure, name="needs-fakeengine", unavailable=lambda: MISSING))
    zoo.register(dataclasses.replace(pure, name="needs-fakeengine-int8", precision="int8", unavailable=lambda: 1 / 0))
    yield "needs-fakeengine"
    zoo.unregister("needs-fakeengine")
    zoo.unregister("needs-fakeengine-int8")


def test_zoo_list_shows_why_a_variant_cannot_run(unavailable: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list", "needs-*"]) == 0
    out = capsys.readouterr().out
    assert f"needs-fakeengine       n/a     {zoo.get_variant('pure').summary}" in out
    assert f"unavailable: {MISSING}" in out
    assert "unavailable: its availability check raised ZeroDivisionError: division by zero" in out
    assert main(["list", "pure"]) == 0
    assert "unavailable" not in capsys.readouterr().out


def test_zoo_check_skips_it_with_the_reason_and_load_refuses_it(unavailable: str) -> None:
    results = runner.check_variant(unavailable, profile="quick", properties=["logits"])
    assert [(r.status, r.message) for r in results] == [("skip", MISSING)]
    with pytest.raises(zoo.CapabilityError, match=f"variant 'needs-fakeengine' cannot run here: {MISSING}"):
        zoo.load(unavailable, None, config=zoo.GPT2Config(n_layer=1, n_embd=8, n_head=2, vocab_size=11,
                                                           n_positions=8))


def test_a_spec_names_a_dtype_or_a_sibling_variant(unavailable: str) -> None:
    assert zoo.resolve("pure") == (zoo.get_variant("pure"), None)
    assert zoo.resolve("pure@bfloat16") == (zoo.get_variant("pure"), "bfloat16")
    assert zoo.resolve("quantised@int4") == (zoo.get_variant("quantised-int4"), None)
    assert zoo.resolve("needs-fakeengine@int8")[0].name == "needs-fakeengine-int8"
    with pytest.raises(zoo.UnknownVariantError, match="pure has no precision 'float16'; it offers float32, "
                                                      "float64, bfloat16"):
        zoo.resolve("pure@float16")
    with pytest.raises(zoo.UnknownVariantError, match="it offers float32, float64, bfloat16, int8 "):
        zoo.resolve("needs-fakeengine@int4")
    with pytest.raises(zoo.UnknownVariantError, match="did you mean 'pure'"):
        zoo.resolve("pur@float32")


def test_zoo_check_runs_one_precision_of_a_spec(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "pure@bfloat16", "--property", "logits", "--profile", "quick"]) == 0
    out = capsys.readouterr().out
    assert "pure@bfloat16  logits" in out
    assert main(["check", "pure@float16", "--property", "logits"]) == 1
    assert "pure has no precision 'float16'" in capsys.readouterr().err


def test_the_table_gives_an_unavailable_variant_one_row(unavailable: str) -> None:
    results = runner.check_variant(unavailable, profile="quick", properties=["logits", "batch"])
    results += runner.check_variant("pure", profile="quick", properties=["determinism"])
    lines = runner.table(results).splitlines()
    assert [line.split()[:3] for line in lines[2:]] == [
        ["needs-fakeengine", "(all)", "skip"], ["pure", "interface", "pass"], ["pure", "determinism", "pass"]]
    assert MISSING in lines[2]


def test_a_variant_whose_scheme_needs_a_newer_torch_is_unavailable_with_the_fix() -> None:
    installed = importlib.metadata.version("torch")  # without a local label such as "+cu124"
    future = dataclasses.replace(zoo.nn.SCHEMES["int8"], name="int8-future", torch="99.0")
    variant = zoo.nn.declare("needs-future-torch", "under test", scheme=future)
    reason = (f"the int8-future scheme (zoo.nn.kernels:Int8Linear) needs torch >= 99.0, "
              f"and this is torch {installed}: pip install 'torch>=99.0'")
    assert variant.why_unavailable() == reason
    zoo.register(variant)
    try:
        assert main(["list", "needs-future-torch"]) == 0
        with pytest.raises(zoo.CapabilityError, match=r"needs torch >= 99\.0"):
            zoo.load("needs-future-torch", None, config=zoo.GPT2Config(n_layer=1, n_embd=16, n_head=2,
                                                                        vocab_size=11, n_positions=8))
    finally:
        zoo.unregister("needs-future-torch")
    with pytest.raises(zoo.CapabilityError, match=r"needs torch >= 99\.0"):
        zoo.nn.build(zoo.GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=11, n_positions=8), scheme=future)
    # a scheme within this torch, and a compiled variant below Python 3.13, declare no check at all
    assert zoo.get_variant("quantised").unavailable is None
    assert zoo.nn.declare("plain", "under test", scheme="int8").unavailable is None


def test_the_onnxruntime_variants_need_transformers_5_for_their_graph() -> None:
    expected = zoo.older_than("transformers", "5", needs="the ONNX graph (traced from its GPT-2)")
    if zoo.missing_modules("onnxruntime", "onnx", install="") is None:
        assert zoo.get_variant("onnxruntime").why_unavailable() == expected
    assert (expected is None) == (int(importlib.metadata.version("transformers").split(".")[0]) >= 5)


def test_older_than_compares_releases_not_strings() -> None:
    assert zoo.older_than("torch", "2.5", needs="x") is None  # the zoo's floor
    assert zoo.older_than("torch", "99.0", needs="the thing").startswith("the thing needs torch >= 99.0, and this is torch ")
    from zoo._interface import _release

    assert _release("2.13.0+cpu") > _release("2.6") > _release("2.5.1") and _release("2.6.0a0+git1") == (2, 6, 0)


def test_a_compiled_variant_is_declared_unavailable_only_where_torch_cannot_compile() -> None:
    import sys

    from zoo.nn import compile_unavailable

    compiled = zoo.get_variant("compiled")
    if sys.version_info < (3, 13):
        assert compile_unavailable() is None and compiled.unavailable is None
    else:
        assert compiled.why_unavailable() == compile_unavailable() == zoo.older_than(
            "torch", "2.6", needs="torch.compile on Python 3.13")
