"""Variants that cannot run here (a missing engine, an old torch) and ``NAME@PRECISION`` specs."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import pytest

import zoo
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
