"""The zoo's conformance checks, run on this package's variant through gpt2-zoo's pytest plugin.

``pyproject.toml`` passes ``--zoo-variant explicit`` to pytest, so a plain
``pytest`` adds one test per conformance property
(``zoo-conformance[explicit]::logits``, ``::padding``, ``::incremental``...)
to the tests of this folder; ``pytest --zoo-variant w8a8`` checks the other
variant instead. A failure prints its shrunk counterexample and the command
that reproduces it. ``pytest --zoo-profile quick`` is a smoke run. The tests
below make sure those checks are aimed at this package.
"""

from __future__ import annotations

import pytest
import zoo
from conformance.properties import PROPERTIES

import zoo_example


def test_the_variant_under_test_comes_from_this_package(zoo_variant: zoo.Variant) -> None:
    ours = {v.name for v in zoo_example.zoo_variants()}
    assert zoo_variant.name in ours, f"--zoo-variant {zoo_variant.name} is not one of {sorted(ours)}"
    assert zoo_variant.source.endswith(f" = {zoo_example.__name__})"), (
        f"--zoo-variant {zoo_variant.name} comes from {zoo_variant.source}: another installed package "
        "registers that name"
    )


def test_every_conformance_property_is_collected(request: pytest.FixtureRequest,
                                                 zoo_variant: zoo.Variant) -> None:
    if request.config.getoption("keyword") or request.config.getoption("markexpr"):
        pytest.skip("-k or -m chose a subset of the tests")
    collected = {item.nodeid for item in request.session.items}
    checks = ["interface", *(p.name for p in PROPERTIES)]
    expected = {f"zoo-conformance[{zoo_variant.name}]::{check}" for check in checks}
    assert expected <= collected, f"not collected: {sorted(expected - collected)}"
