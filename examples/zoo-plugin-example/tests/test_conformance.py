"""The zoo's conformance checks, run on this package's variant through gpt2-zoo's pytest plugin.

``pyproject.toml`` passes ``--zoo-variant sdpa`` to pytest, so a plain ``pytest``
adds one test per conformance property (``zoo-conformance[sdpa]::logits``,
``::padding``, ``::incremental``...) to the tests of this folder; a failure
prints its shrunk counterexample and the command that reproduces it.
``pytest --zoo-profile quick`` is a smoke run; ``--zoo-device cuda`` runs the
checks on a GPU. The tests below make sure those checks are aimed at this package.
"""

from __future__ import annotations

import pytest
import zoo
from conformance.properties import PROPERTIES

import zoo_sdpa


def test_the_variant_under_test_comes_from_this_package(zoo_variant: zoo.Variant) -> None:
    module = zoo_variant.build.__module__
    assert module.split(".")[0] == zoo_sdpa.__name__, (
        f"--zoo-variant {zoo_variant.name} is built by {module}, from {zoo_variant.source}: "
        "another installed package registers that name"
    )


def test_every_conformance_property_is_collected(request: pytest.FixtureRequest,
                                                 zoo_variant: zoo.Variant) -> None:
    if request.config.getoption("keyword") or request.config.getoption("markexpr"):
        pytest.skip("-k or -m chose a subset of the tests")
    collected = {item.nodeid for item in request.session.items}
    checks = ["interface", *(p.name for p in PROPERTIES)]
    expected = {f"zoo-conformance[{zoo_variant.name}]::{check}" for check in checks}
    assert expected <= collected, f"not collected: {sorted(expected - collected)}"
