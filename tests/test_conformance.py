"""The harness's own helpers: profiles, strategies, judgements and messages, the interface check,
``zoo check`` and the pytest plugin."""

from __future__ import annotations

import functools
import json
import math
import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import Phase, given, settings
from hypothesis import strategies as st
from jsonschema_subset import errors, schema
from planted import CATALOGUE, variant

import zoo
import zoo.nn
from conformance import models, pinned, profiles, runner
from conformance import strategies as s
from conformance.assertions import ConformanceFailure, Judge, Stats
from conformance.models import WeightInit, canonical_weights, reference_logits
from zoo._cli import main
from zoo.nn import GPT

SMALL = settings(max_examples=25, database=None, deadline=None)


@pytest.fixture(scope="module", autouse=True)
def free_models() -> Iterator[None]:
    """The harness keeps 124M models until cleared; give the memory back after this module."""
    yield
    models.clear()


# -- profiles ----------------------------------------------------------------------------
def test_profiles_resolve_by_name_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(profiles.ENV, raising=False)
    assert profiles.resolve() == "ci"
    assert profiles.resolve("zoo-quick") == "quick"
    monkeypatch.setenv(profiles.ENV, "thorough")
    assert profiles.resolve() == "thorough"
    settings.register_profile("someone-elses-profile", max_examples=3)
    monkeypatch.setenv(profiles.ENV, "someone-elses-profile")
    assert profiles.resolve() == "ci"
    monkeypatch.setenv(profiles.ENV, "thorogh")  # a typo is an error, not a silent ci run
    with pytest.raises(ValueError, match=r"HYPOTHESIS_PROFILE='thorogh' names no hypothesis profile.*quick, ci, thorough"):
        profiles.resolve()
    monkeypatch.delenv(profiles.ENV)
    with pytest.raises(ValueError, match="quick, ci, thorough"):
        profiles.resolve("fast")


def test_ci_profile_extends_hypothesis_ci() -> None:
    ci, theirs = profiles.get("ci"), settings.get_profile("ci")
    assert ci.derandomize and ci.database is None and ci.print_blob and ci.deadline is None
    assert set(ci.phases) == set(theirs.phases) - {Phase.explain}
    assert profiles.get("quick").max_examples < ci.max_examples < profiles.get("thorough").max_examples
    assert not profiles.get("thorough").derandomize


# -- strategies --------------------------------------------------------------------------
@SMALL
@given(st.data())
def test_strategies_draw_consistent_cases(data: st.DataObject) -> None:
    config = data.draw(s.configs())
    assert 1 <= config.n_layer <= 3 and 1 <= config.n_head <= 4 and 4 <= config.head_size <= 16
    assert 2 <= config.vocab_size <= 512 and 1 <= config.n_positions <= s.LONG_POSITIONS
    assert config.n_positions <= 64 or (config.n_layer <= 2 and config.n_head <= 2 and config.head_size <= 8)

    case = data.draw(s.padded_cases(st.just(config.replace(n_positions=max(2, config.n_positions)))))
    T = len(case.ids[0])
    assert all(len(row) == T for row in case.ids)
    assert all(1 <= n <= T for n in case.real) and T in case.real  # at least one full row
    assert all(0 <= t < case.config.vocab_size for row in case.ids for t in row)

    inc = data.draw(s.incremental_cases(st.just(case.config)))
    T = len(inc.ids[0])
    first = T - min(inc.real) + 1 if inc.real else 1
    assert all(first <= split <= T for split in inc.splits)  # each row has a real token in the prefill
    assert T <= inc.cache_length <= inc.config.n_positions

    gen = data.draw(s.generation_cases(st.just(case.config)))
    assert max(len(p) for p in gen.prompts) + gen.max_new_tokens <= gen.config.n_positions


@SMALL
@given(s.causality_cases(s.configs(min_positions=2)))
def test_causality_cases_change_one_earlier_visible_token(case: s.CausalityCase) -> None:
    assert 1 <= case.position < len(case.ids[0])
    assert case.token != case.ids[0][case.position] and 0 <= case.token < case.config.vocab_size


def test_token_ids_reach_the_edges() -> None:
    config = zoo.GPT2Config(vocab_size=300, n_positions=16, n_embd=8, n_layer=1, n_head=2)
    seen: set[int] = set()

    @settings(max_examples=60, database=None, derandomize=True)
    @given(s.token_ids(config, 1, 8))
    def collect(ids: s.Ids) -> None:
        seen.update(ids[0])

    collect()
    assert {0, config.vocab_size - 1, config.eos_token_id} <= seen


def test_pinned_examples_cover_124m() -> None:
    assert pinned.forward_example("float32").config == zoo.GPT2Config()
    declared = (zoo.GPT2Config(vocab_size=64, n_positions=32, n_embd=32, n_layer=1, n_head=2),)
    assert pinned.forward_example("float32", declared).config == declared[0]


# -- models ------------------------------------------------------------------------------
def test_weight_init_makes_biases_and_layernorms_nontrivial() -> None:
    config = zoo.GPT2Config(vocab_size=50, n_positions=8, n_embd=8, n_layer=1, n_head=2)
    w1, w3 = canonical_weights(config, WeightInit(0, 1.0)), canonical_weights(config, WeightInit(0, 3.0))
    assert float(w1["h.0.mlp.c_fc.bias"].abs().max()) > 0
    assert not torch.equal(w1["h.0.ln_1.weight"], torch.ones(8))
    assert torch.allclose(w3["h.0.attn.c_attn.weight"], 3 * w1["h.0.attn.c_attn.weight"])
    other = canonical_weights(config, WeightInit(0, 1.0, wte_seed=5))
    assert not torch.equal(other["wte.weight"], w1["wte.weight"])
    assert torch.equal(other["wpe.weight"], w1["wpe.weight"])


def test_reference_is_huggingface_in_float64() -> None:
    config = zoo.GPT2Config(vocab_size=50, n_positions=8, n_embd=8, n_layer=1, n_head=2)
    ids = torch.tensor([[1, 2, 3]])
    hf64 = reference_logits(config, WeightInit(), torch.float64, ids)
    hf32 = reference_logits(config, WeightInit(), torch.float32, ids)
    assert hf64.dtype == torch.float64 and hf64.shape == (1, 3, 50)
    assert 0 < float((hf32 - hf64).abs().max()) < 1e-5


# -- judgements and messages -------------------------------------------------------------
def _judge(**tolerances: object) -> Judge:
    caps = zoo.Capabilities(exact=not tolerances)
    v = zoo.Variant("judged", build=lambda *a, **k: None, summary="", capabilities=caps,
                    tolerances=zoo.Tolerances(**tolerances))  # type: ignore[arg-type]
    return Judge(v, "logits", "zoo check judged --property logits --profile ci", Stats())


def test_exact_bound_follows_huggingface_error() -> None:
    judge = _judge()
    hf64 = torch.zeros(2, 3, 5, dtype=torch.float64)
    hf32 = hf64 + 1e-6
    ok = hf64.clone()
    ok[1, 2, 3] = 4e-6 + 1e-5 - 1e-9  # just inside 4 x 1e-6 + 1e-5
    judge.assert_close("logits", ok, hf64, hf_dtype=hf32, hf64=hf64, dtype="float32")
    bad = hf64.clone()
    bad[1, 2, 3] = 0.25
    with pytest.raises(ConformanceFailure) as info:
        judge.assert_close("logits", bad, hf64, hf_dtype=hf32, hf64=hf64, dtype="float32")
    message = str(info.value)
    assert message.startswith("judged fails logits: logits at batch 1, position 2, token 3: x=0.25, but should be 0")
    assert "4 x HF float32 error 1e-06 + floor 1e-05" in message
    assert message.rstrip().endswith("reproduce: zoo check judged --property logits --profile ci")
    assert judge.stats.worst is not None and judge.stats.worst.value == pytest.approx(0.25)


def test_exact_comparison_ignores_unselected_positions_and_catches_nan() -> None:
    judge = _judge()
    expected = torch.zeros(1, 3, 4, dtype=torch.float64)
    actual = expected.clone()
    actual[0, 0] = 99.0  # a padded position
    where = torch.tensor([[0, 1, 1]])
    judge.assert_close("logits", actual, expected, hf_dtype=expected, hf64=expected, dtype="float32", where=where)
    actual[0, 2, 1] = math.nan
    with pytest.raises(ConformanceFailure, match="position 2, token 1: x=nan"):
        judge.assert_close("logits", actual, expected, hf_dtype=expected, hf64=expected, dtype="float32",
                           where=where)


def test_approximate_variants_are_judged_on_distributions() -> None:
    judge = _judge(max_kl=1e-3, min_top1=0.9)
    expected = torch.randn(1, 10, 7, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    judge.assert_close("logits", expected + 1e-4, expected, hf_dtype=expected, hf64=expected, dtype="int8")
    flipped = expected.clone()
    flipped[0, :, 0] = flipped.max() + 1  # every argmax moves to token 0
    with pytest.raises(ConformanceFailure, match=r"KL|top-1 agreement"):
        judge.assert_close("logits", flipped, expected, hf_dtype=expected, hf64=expected, dtype="int8")


def test_assert_equal_reports_the_first_difference() -> None:
    judge = _judge()
    a = torch.zeros(1, 2, 3)
    judge.assert_equal("same input twice", a.clone(), a)
    b = a.clone()
    b[0, 1, 2] = 1e-7
    with pytest.raises(ConformanceFailure, match="position 1, token 2: x=1e-07, but should be 0"):
        judge.assert_equal("same input twice", b, a)


# -- the interface check and the runner --------------------------------------------------
class NotAModel:
    pass


@pytest.fixture
def broken_variants() -> Iterator[list[str]]:
    variants = [
        zoo.Variant("broken-build", build=lambda config, **kw: NotAModel(), summary="returns no model"),
        zoo.Variant("broken-dtype", build=lambda config, **kw: NotAModel(), summary="bad dtype",
                    capabilities=zoo.Capabilities(dtypes=("float33",))),
        zoo.Variant("broken-tolerances", build=lambda config, **kw: NotAModel(), summary="no bounds",
                    capabilities=zoo.Capabilities(exact=False)),
    ]
    names = [zoo.register(v).name for v in variants]
    yield names
    for name in names:
        zoo.unregister(name)


def test_interface_failure_is_one_failure_and_skips_the_properties(broken_variants: list[str]) -> None:
    results = runner.check_variant("broken-build", profile="quick")
    assert results[0].prop == "interface" and results[0].status == "fail"
    assert "returned a NotAModel, not a zoo.GPT2" in results[0].message
    assert all(r.status == "skip" and "interface" in r.message for r in results[1:])
    dtype = runner.check_variant("broken-dtype", profile="quick", properties=["logits"])
    assert "'float33' is not a torch dtype name" in dtype[0].message
    tolerances = runner.check_variant("broken-tolerances", profile="quick", properties=["logits"])
    assert "must declare max_kl, min_top1 or max_rel_logit_error" in tolerances[0].message


def test_properties_are_gated_by_capabilities() -> None:
    base = zoo.get_variant("pure")
    limited = zoo.Variant("pure-limited", build=base.build, summary="pure without a cache",
                          capabilities=zoo.Capabilities(kv_cache=False, padding=False, trainable=False))
    zoo.register(limited)
    try:
        results = {r.prop: r for r in runner.check_variant(
            "pure-limited", profile="quick", properties=["padding", "incremental", "training"])}
    finally:
        zoo.unregister("pure-limited")
    assert {p: r.status for p, r in results.items()} == {
        "interface": "pass", "padding": "skip", "incremental": "skip", "training": "skip"}
    assert "does not declare a KV cache" in results["incremental"].message


def test_table_and_failures_format() -> None:
    results = [
        runner.PropertyResult("v", "logits", "pass", examples=20, seconds=1.5, worst=1e-6, bound=1e-5,
                              measure="max abs error"),
        runner.PropertyResult("v", "padding", "fail", examples=7, seconds=0.5, message="v fails padding: x",
                              counterexample=["Falsifying example: padding(case=...)"],
                              reproduce="zoo check v --property padding --profile ci"),
        runner.PropertyResult("v", "training", "skip", message="the variant does not declare trainable"),
    ]
    table = runner.table(results)
    assert "1.00e-06 / 1.00e-05 (max abs error)" in table and "FAIL" in table
    assert "the variant does not declare trainable" in table
    text = runner.failures(results)
    assert "== v / padding ==" in text and "Falsifying example" in text
    assert "reproduce: zoo check v --property padding --profile ci" in text


# -- zoo check ---------------------------------------------------------------------------
def test_zoo_check_prints_a_table_and_writes_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "check.json"
    code = main(["check", "pure", "--property", "bad-input", "--profile", "quick", "--json", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.out + captured.err
    assert "pure     bad-input  pass" in captured.out
    assert "zoo check: pure: bad-input pass" in captured.err  # progress on stderr
    data = json.loads(out.read_text())
    assert data["profile"] == "quick"
    assert errors(data, schema("check")) == []
    assert [(r["variant"], r["prop"], r["status"]) for r in data["results"]] == [
        ("pure", "interface", "pass"), ("pure", "bad-input", "pass")]


def test_zoo_check_fails_with_counterexample_and_reproducer(capsys: pytest.CaptureFixture[str]) -> None:
    bug = next(b for b in CATALOGUE if b.name == "nondeterministic")
    name = zoo.register(variant(bug)).name
    try:
        code = main(["check", name, "--property", "determinism", "--profile", "quick"])
    finally:
        zoo.unregister(name)
    out = capsys.readouterr().out
    assert code == 1
    assert f"{name} fails determinism: the same input run twice" in out
    assert "case=ForwardCase(config=GPT2Config(" in out  # the shrunk counterexample
    assert f"reproduce: zoo check {name} --property determinism --profile quick" in out


def test_a_failure_is_stored_and_replayed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bug = next(b for b in CATALOGUE if b.name == "clamps-ids")
    name = zoo.register(variant(bug)).name
    db = tmp_path / "db"
    argv = ["check", name, "--property", "bad-input", "--profile", "quick", "--database", str(db)]
    try:
        assert main(argv) == 1
        first = capsys.readouterr()
        assert f"failures kept in {db}" in first.err
        assert main([*argv, "--replay", "--json", str(tmp_path / "replay.json")]) == 1
        replay = capsys.readouterr()
        assert main(["check", "pure", "--property", "bad-input", "--database", str(db), "--replay"]) == 0
        other = capsys.readouterr()
    finally:
        zoo.unregister(name)
    assert f"replaying the failures stored in {db}" in replay.err
    assert f"{name} fails bad-input" in replay.out
    assert f"replayed 1 stored example from {db}" in replay.out
    data = json.loads((tmp_path / "replay.json").read_text())
    assert data["replay"] is True and data["results"][1]["replayed"] == 1
    assert errors(data, schema("check")) == []
    # another variant's failures are not its own: nothing to replay for pure
    assert "pure     bad-input  skip" in other.out and "no stored failure to replay" in other.out
    assert "replayed 0 stored examples" in other.out


def test_a_derandomised_run_replays_the_stored_failure_first(tmp_path: Path) -> None:
    from hypothesis.database import InMemoryExampleDatabase

    bug = next(b for b in CATALOGUE if b.name == "clamps-ids")
    name = zoo.register(variant(bug)).name
    db = InMemoryExampleDatabase()
    try:
        first = runner.check_variant(name, profile="ci", properties=["bad-input"], database=db)
        again = runner.check_variant(name, profile="ci", properties=["bad-input"], database=db)
    finally:
        zoo.unregister(name)
    assert first[1].status == again[1].status == "fail"
    assert first[1].replayed == 0 and again[1].replayed == 1
    assert again[1].counterexample == first[1].counterexample


def test_zoo_check_in_workers_gives_what_one_process_gives(tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["check", "pure", "cpu", "--property", "bad-input", "--profile", "quick", "--no-database"]
    assert main([*argv, "--json", str(tmp_path / "one.json")]) == 0
    one = capsys.readouterr().out
    assert main([*argv, "-n", "2", "--json", str(tmp_path / "two.json")]) == 0
    captured = capsys.readouterr()
    assert "2 worker processes, 1 torch thread each" in captured.err
    assert "pure: 0 failed, 2 passed" in captured.err
    data = [json.loads((tmp_path / f"{n}.json").read_text()) for n in ("one", "two")]
    assert data[1]["workers"] == 2 and errors(data[1], schema("check")) == []
    assert [[(r["variant"], r["prop"], r["status"]) for r in d["results"]] for d in data] == [[
        ("pure", "interface", "pass"), ("pure", "bad-input", "pass"),
        ("cpu", "interface", "pass"), ("cpu", "bad-input", "pass")]] * 2
    def rows(out: str) -> list[str]:  # the table without its times
        return [line.rsplit(maxsplit=1)[0] for line in out.splitlines() if line.startswith(("pure ", "cpu "))]

    assert rows(captured.out) == rows(one) and len(rows(one)) == 4


def test_a_worker_that_dies_is_a_failure_naming_how_to_see_why(monkeypatch: pytest.MonkeyPatch,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    def killed(argv: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        return subprocess.CompletedProcess(argv, -9, "", "loading weights\nKilled\n")

    monkeypatch.setattr(subprocess, "run", killed)
    assert main(["check", "pure", "cpu", "-n", "2", "--property", "bad-input", "--profile", "quick",
                 "--no-database"]) == 1
    out = capsys.readouterr().out
    assert "the worker process checking cpu exited with code -9 before writing its results" in out
    assert "run zoo check cpu alone to see why. It printed: loading weights" in out


def test_zoo_check_in_workers_refuses_variants_registered_at_run_time(capsys: pytest.CaptureFixture[str]) -> None:
    base = zoo.get_variant("pure")
    zoo.register(zoo.Variant("pure-here", build=base.build, summary="registered in this process"))
    try:
        assert main(["check", "pure", "pure-here", "-n", "2"]) == 1
    finally:
        zoo.unregister("pure-here")
    assert "pure-here registered at run time, which worker processes cannot see" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["check", "pure", "--all"], "--all checks every registered variant, so it cannot go with names (pure)"),
        (["check", "pure", "-n", "0"], "'0' is not an int >= 1"),
        (["check", "pure", "--replay", "--no-database"], "cannot go with --no-database"),
        (["check", "pure", "--replay", "--database", "/no/such/db"], "no example database at /no/such/db"),
        (["check", "pure", "--property", "parity"], "unknown property 'parity'"),
        (["check", "puer"], "did you mean 'pure'"),
        (["check", "pure", "--profile", "fast"], "unknown conformance profile 'fast'"),
    ],
)
def test_zoo_check_user_errors(argv: list[str], expected: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) != 0
    assert expected in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message given when no GPU is present")
def test_zoo_check_cuda_without_gpu(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "pure", "--device", "cuda"]) == 1
    assert "torch sees no CUDA GPU" in capsys.readouterr().err


# -- the pytest plugin -------------------------------------------------------------------
def _pytest(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    full_env.pop("ZOO_VARIANT", None) if env is None or "ZOO_VARIANT" not in env else None
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-v", *args],
                          cwd=tmp_path, env=full_env, capture_output=True, text=True, timeout=300,
                          check=False)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "test_own.py").write_text("def test_own():\n    pass\n")
    (tmp_path / "test_fixture.py").write_text(
        "def test_uses_variant(zoo_variant):\n    assert zoo_variant.name == 'pure'\n")
    return tmp_path


def test_plugin_runs_the_checks_for_a_chosen_variant(project: Path) -> None:
    done = _pytest(project, "--zoo-variant", "pure", "--zoo-profile", "quick", "-k", "interface or bad-input or own")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "zoo conformance: variant pure from gpt2-zoo" in done.stdout
    assert "device cpu; profile quick" in done.stdout and "transformers" in done.stdout
    assert "zoo-conformance[pure]::interface PASSED" in done.stdout
    assert "zoo-conformance[pure]::bad-input PASSED" in done.stdout
    assert "test_own.py::test_own PASSED" in done.stdout


def test_plugin_keeps_failing_examples_in_the_database(project: Path) -> None:
    tests = Path(__file__).resolve().parent
    (project / "conftest.py").write_text(
        f"import sys\nsys.path.insert(0, {str(tests)!r})\nimport zoo\nfrom planted import CATALOGUE, variant\n"
        "zoo.register(variant(next(b for b in CATALOGUE if b.name == 'clamps-ids')))\n")
    db = project / "db"
    argv = ["--zoo-variant", "planted-clamps-ids", "--zoo-profile", "quick", "-k", "bad-input"]
    done = _pytest(project, *argv, "--zoo-database", str(db))
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"zoo conformance: failing examples kept in {db}" in done.stdout
    assert "zoo-conformance[planted-clamps-ids]::bad-input FAILED" in done.stdout
    assert any(path.is_file() for path in db.rglob("*"))  # the shrunk example, saved
    done = _pytest(project, *argv, "--zoo-no-database")
    assert done.returncode == 1 and "failing examples not kept (--zoo-no-database)" in done.stdout


def test_plugin_reads_the_environment_and_feeds_the_fixture(project: Path) -> None:
    done = _pytest(project, "--zoo-profile", "quick", "-k", "interface or uses_variant",
                   env={"ZOO_VARIANT": "pure"})
    assert done.returncode == 0, done.stdout + done.stderr
    assert "zoo-conformance[pure]::interface PASSED" in done.stdout
    assert "test_fixture.py::test_uses_variant PASSED" in done.stdout


def test_plugin_spreads_the_properties_over_xdist_workers(project: Path) -> None:
    pytest.importorskip("xdist")
    done = _pytest(project, "--zoo-variant", "pure", "--zoo-profile", "quick", "-n", "2",
                   "-k", "interface or bad-input or determinism or own")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 workers [4 items]" in done.stdout
    for item in ("zoo-conformance[pure]::interface", "zoo-conformance[pure]::bad-input",
                 "zoo-conformance[pure]::determinism", "test_own.py::test_own"):
        assert item in done.stdout and "PASSED" in done.stdout


def test_plugin_does_nothing_without_a_variant(project: Path) -> None:
    done = _pytest(project)
    assert "zoo-conformance" not in done.stdout and "zoo conformance" not in done.stdout
    assert "test_own.py::test_own PASSED" in done.stdout
    assert "pass --zoo-variant NAME to pytest, or set the environment variable ZOO_VARIANT=NAME" in done.stdout
    assert done.returncode == 1  # the fixture's test errors, naming both ways to choose


# -- approximate variants ----------------------------------------------------------------
class Rounded(GPT):
    """pure with every weight rounded to ``bits`` of mantissa on import: a stand-in for quantisation."""

    bits = 8

    def import_weights(self, weights: Mapping[str, Any]) -> None:
        def round_(t: torch.Tensor) -> torch.Tensor:
            mantissa, exponent = torch.frexp(torch.as_tensor(t).float())
            return torch.ldexp(torch.round(mantissa * 2**self.bits) / 2**self.bits, exponent)

        super().import_weights({k: round_(weights[k]) for k in weights})


class Coarse(Rounded):
    bits = 1


@pytest.mark.parametrize(("model", "passes"), [(Rounded, True), (Coarse, False)])
def test_approximate_variants_are_held_to_their_declared_bounds(model: type[GPT], passes: bool) -> None:
    name = f"approximate-{model.__name__.lower()}"
    zoo.register(zoo.Variant(
        name, build=functools.partial(zoo.nn.build, cls=model), summary="rounded weights",
        capabilities=zoo.Capabilities(exact=False, lossless_weights=False),
        # 8 bits of mantissa reach KL 0.0018 on weights at 30x GPT-2's scale; 1 bit is far past these bounds
        tolerances=zoo.Tolerances(max_kl=5e-3, min_top1=0.9, max_rel_logit_error=0.05, fidelity={
            preset: zoo.Fidelity(max_kl=1e-3, max_ppl_ratio=1.01, min_top1=0.9) for preset in ("learned", "outliers")})))
    try:
        results = {r.prop: r for r in runner.check_variant(name, profile="quick")}
    finally:
        zoo.unregister(name)
    if passes:
        assert all(r.status != "fail" for r in results.values()), runner.failures(list(results.values()))
        assert results["logits"].measure in ("KL", "relative logit error", "top-1 agreement")
    else:
        assert results["logits"].status == "fail"
        assert any(m in results["logits"].message for m in ("(KL ", "(relative logit error ", "(top-1"))
        assert results["determinism"].status == "pass"  # self-consistency is still exact
        assert results["fidelity"].status == "fail"


class ExportsCopies(GPT):
    """A trainable variant whose export_weights() clones: the commonest way to break the training check."""

    def export_weights(self) -> dict[str, torch.Tensor]:
        return {name: t.clone() for name, t in super().export_weights().items()}


def test_a_trainable_variant_exporting_copies_is_told_the_likely_cause_first() -> None:
    zoo.register(zoo.Variant("pure-exports-copies", build=functools.partial(zoo.nn.build, cls=ExportsCopies),
                             summary="exports clones",
                             capabilities=zoo.Capabilities(trainable=True)))
    try:
        (_, training) = runner.check_variant("pure-exports-copies", profile="quick", properties=["training"])
    finally:
        zoo.unregister("pure-exports-copies")
    assert training.status == "fail"
    assert "export_weights() returned copies of these parameters" in training.message
    assert training.message.index(".clone()") < training.message.index("untied lm_head")
