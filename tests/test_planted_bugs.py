"""The harness has teeth: the ci profile fails every planted bug and passes every real variant."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from planted import CATALOGUE, PlantedBug, variant

import zoo
from conformance import models, runner

REAL_VARIANTS = zoo.list_variants()  # at collection time: the built-in and installed variants


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


@pytest.mark.parametrize("bug", CATALOGUE, ids=lambda bug: bug.name)
def test_ci_profile_catches_planted_bug(planted: None, bug: PlantedBug) -> None:
    name = f"planted-{bug.name}"
    results = runner.check_variant(name, profile="ci", properties=[bug.catches])
    interface, result = results
    assert interface.status == "pass", interface.message
    assert result.prop == bug.catches
    assert result.status == "fail", f"{name} passed {bug.catches}: the harness missed '{bug.summary}'"
    assert f"{name} fails {bug.catches}" in result.message
    assert f"reproduce: zoo check {name} --property {bug.catches} --profile ci" in result.message
    assert result.counterexample, "a failure must show its (shrunk) counterexample"


@pytest.mark.parametrize("name", REAL_VARIANTS)
def test_ci_profile_passes_real_variant(name: str) -> None:
    results = runner.check_variant(name, profile="ci")
    assert results[0].prop == "interface"
    failed = [r for r in results if r.status == "fail"]
    assert not failed, runner.failures(results)
    assert any(r.status == "pass" and r.prop == "logits" for r in results)
    assert all(r.examples > 0 for r in results if r.status == "pass")
