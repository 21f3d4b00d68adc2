"""The JSON Schemas shipped for ``zoo check --json`` and ``zoo bench --json``, and what they accept.

Real outputs are validated where the suite makes them: ``tests/test_conformance.py``
(zoo check) and ``tests/test_bench.py`` (zoo bench).
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
from jsonschema_subset import errors, schema

from conformance.cli import SCHEMA as CHECK_SCHEMA
from conformance.runner import PropertyResult
from zoo.bench.run import SCHEMA as BENCH_SCHEMA


def check_document(**result_fields: Any) -> dict[str, Any]:
    result = PropertyResult("pure", "logits", "pass", examples=3, seconds=1.5, worst=1e-5, bound=4e-5,
                            measure="max abs error", reproduce="zoo check pure --property logits").to_json()
    return {"schema": CHECK_SCHEMA, "profile": "ci", "replay": False, "device": "cpu", "seed": None,
            "seconds": 2.0, "versions": {"zoo": "0.1.0", "torch": "2.13.0"},
            "results": [{**result, **result_fields}]}


def test_the_versions_are_the_ones_the_schemas_pin() -> None:
    assert schema("check")["properties"]["schema"] == {"const": CHECK_SCHEMA} == {"const": "gpt2-zoo/check/1"}
    assert schema("bench")["properties"]["schema"] == {"const": BENCH_SCHEMA} == {"const": "gpt2-zoo/bench/1"}


def test_a_check_result_may_carry_figures_numbers_or_objects_of_numbers() -> None:
    figures = {"learned": {"kl": 1e-4, "top1": 0.99, "ppl_ratio": 1.001}, "examples_per_s": 12}
    assert errors(check_document(figures=figures), schema("check")) == []
    assert errors(check_document(), schema("check")) == []  # figures are optional
    assert errors(check_document(some_later_field=[1, "x"]), schema("check")) == []  # results may grow


@pytest.mark.parametrize(
    ("figures", "expected"),
    [
        ({"learned": "high"}, "matches 0 of the oneOf"),
        ({"learned": {"kl": "1e-4"}}, "matches 0 of the oneOf"),
        ({"learned": {"kl": {"deeper": 1.0}}}, "matches 0 of the oneOf"),
        ([1.0], "is not of type object"),
    ],
)
def test_figures_that_are_not_numbers_are_refused(figures: Any, expected: str) -> None:
    found = errors(check_document(figures=figures), schema("check"))
    assert any(expected in line for line in found), found


def test_a_check_document_missing_or_mistyping_fields_is_refused() -> None:
    doc = check_document()
    broken = copy.deepcopy(doc)
    del broken["results"][0]["status"]
    broken["schema"] = "gpt2-zoo/check/2"
    broken["seed"] = "0"
    found = errors(broken, schema("check"))
    assert "$.results[0]: 'status' is missing" in found
    assert "$.schema: 'gpt2-zoo/check/2' is not 'gpt2-zoo/check/1'" in found
    assert any(line.startswith("$.seed:") for line in found)
    doc["results"][0]["status"] = "flaky"
    assert errors(doc, schema("check")) == ["$.results[0].status: 'flaky' is not one of ['pass', 'fail', 'skip']"]


def test_the_validator_refuses_keywords_it_does_not_know() -> None:
    with pytest.raises(ValueError, match="not supported"):
        errors({}, {"type": "object", "patternProperties": {}})
