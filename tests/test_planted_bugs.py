"""The harness has teeth: the ci profile fails every planted bug and passes every real variant."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from planted import CATALOGUE, PlantedBug, variant
from test_engines import ENGINES

import zoo
from conformance import models, runner

# at collection time: the built-in and installed variants that can run here; those of an optional engine
# take minutes a property, and tests/test_engines.py checks them on a quick profile
REAL_VARIANTS = [name for name in zoo.list_variants()
                 if name not in ENGINES and zoo.get_variant(name).why_unavailable() is None]


@pytest.fixture(scope="module", autouse=True)
def free_models() -> Iterator[None]:
    """The harness keeps 124M models until cleared; give the memory back after this module."""
    yield
    models.clear()


@pytest.fixture(scope="module")
def planted() -> Iterator[None]:
    names = [zoo.register(variant(bug)).name for bug in CATALOGUE]
    yield
    for name in names:
        zoo.unregister(name)


def test_catalogue_is_large_enough() -> None:
    assert len(CATALOGUE) >= 12
    assert len({bug.name for bug in CATALOGUE}) == len(CATALOGUE)


CAUGHT = [(bug, prop) for bug in CATALOGUE for prop in (bug.catches, *bug.also)]


@pytest.mark.parametrize(("bug", "prop"), CAUGHT,
                         ids=[bug.name if prop == bug.catches else f"{bug.name}-by-{prop}" for bug, prop in CAUGHT])
def test_ci_profile_catches_planted_bug(planted: None, bug: PlantedBug, prop: str) -> None:
    name = f"planted-{bug.name}"
    results = runner.check_variant(name, profile="ci", properties=[prop])
    interface, result = results
    assert interface.status == "pass", interface.message
    assert result.prop == prop
    assert result.status == "fail", f"{name} passed {prop}: the harness missed '{bug.summary}'"
    assert f"{name} fails {prop}" in result.message
    assert f"reproduce: zoo check {name} --property {prop} --profile ci" in result.message
    assert result.counterexample, "a failure must show its (shrunk) counterexample"


@pytest.mark.parametrize("name", REAL_VARIANTS)
def test_ci_profile_passes_real_variant(name: str) -> None:
    results = runner.check_variant(name, profile="ci")
    assert results[0].prop == "interface"
    failed = [r for r in results if r.status == "fail"]
    assert not failed, runner.failures(results)
    assert any(r.status == "pass" and r.prop == "logits" for r in results)
    assert all(r.examples > 0 for r in results if r.status == "pass")
