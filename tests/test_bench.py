"""``zoo bench``: every subject measured in its own worker, related to the reference, reported honestly.

Timings here are on a tiny config and mean nothing; the tests check what is
measured and how it is reported, never how fast anything is.
"""

from __future__ import annotations

import ast
import json
from collections.abc import Iterator
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import pytest
from jsonschema_subset import errors, schema

import zoo
import zoo.bench
from zoo import _registry
from zoo._cli import main
from zoo.bench import NoReferenceError, Settings, add_ratios, format_report, reference_variant, run_bench
from zoo.bench.report import streamed_bytes
from zoo.bench.run import prepare_weights, subjects_for
from zoo.bench.worker import measure, summary

TINY = zoo.GPT2Config(vocab_size=300, n_positions=64, n_embd=64, n_layer=2, n_head=4)
# one warm-up and two runs of each measurement, on shapes that fit TINY
SETTINGS = Settings(runs=2, warmup=1, prefill=((1, 32), (2, 8)), decode=(1, 2), prompt_tokens=4, new_tokens=6,
                    bandwidth_bytes=16 << 20)


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    work = tmp_path_factory.mktemp("bench")
    lines: list[str] = []
    steps: list[tuple[int, int]] = []
    out = run_bench(["pure", "cpu", "quantised@float32"], config=TINY, threads=1, settings=SETTINGS,
                    work_dir=work, progress=lines.append, on_step=lambda n, total: steps.append((n, total)))
    out = add_ratios(out)
    assert errors(json.loads(json.dumps(out)), schema("bench")) == []  # as --json writes it, before our keys
    out["progress"], out["steps"] = lines, steps
    return out


def _row(report: dict[str, Any], label: str) -> dict[str, Any]:
    return next(r for r in report["results"] if r["label"] == label)


def test_reference_first_then_each_variant(report: dict[str, Any]) -> None:
    labels = [(r["label"], r["status"]) for r in report["results"]]
    assert labels == [("hf generate float32", "ok"), ("pure float32", "ok"), ("cpu float32", "ok"),
                      ("quantised int8/float32", "skipped")]
    assert "quantised does not offer float32 (it offers bfloat16)" in _row(report, "quantised int8/float32")["reason"]


def test_every_figure_is_measured_with_its_spread(report: dict[str, Any]) -> None:
    for row in report["results"][:3]:
        assert set(row["prefill"]) == {"1x32", "2x8"}
        assert set(row["decode"]) == set(row["ttft_s"]) == {"b1", "b2"}
        for stats in [*row["prefill"].values(), *row["decode"].values(), *row["ttft_s"].values()]:
            assert stats["runs"] == 2
            assert 0 < stats["min"] <= stats["median"] <= stats["max"]
        assert row["load_s"] > 0
        assert row["peak_rss_bytes"] >= row["rss_before_load_bytes"] > 0


def test_each_subject_reports_its_fidelity_on_learned_weights(report: dict[str, Any]) -> None:
    for label in ("hf generate float32", "pure float32", "cpu float32"):
        figures = _row(report, label)["fidelity"]
        assert figures["kl"] < 1e-8 and figures["top1"] == 1.0 and figures["ppl_ratio"] == pytest.approx(1.0), label
    table = format_report(report)
    assert "| KL (learned) | top-1 (learned) |" in table
    assert "| 100.00% |" in table


def test_weight_memory_is_the_models_own(report: dict[str, Any]) -> None:
    float32_bytes = TINY.n_params * 4  # tied lm_head counted once
    for label in ("hf generate float32", "pure float32", "cpu float32"):
        assert _row(report, label)["weight_bytes"] == float32_bytes, label


def test_ratios_are_against_the_reference_in_the_same_run(report: dict[str, Any]) -> None:
    ref, pure = _row(report, "hf generate float32"), _row(report, "pure float32")
    assert "ratios" not in ref or not ref["ratios"].get("decode b1") or ref["ratios"]["decode b1"] == 1.0
    assert pure["ratios"]["decode b1"] == pytest.approx(pure["decode"]["b1"]["median"] / ref["decode"]["b1"]["median"])
    assert pure["ratios"]["prefill 1x32"] == pytest.approx(
        pure["prefill"]["1x32"]["median"] / ref["prefill"]["1x32"]["median"])
    # times: the reference's over the subject's, so above 1 is faster, as for speeds
    assert pure["ratios"]["ttft b1"] == pytest.approx(ref["ttft_s"]["b1"]["median"] / pure["ttft_s"]["b1"]["median"])
    assert pure["ratios"]["load_s"] == pytest.approx(ref["load_s"] / pure["load_s"])
    assert pure["ratios"]["weight_bytes"] == 1.0


def test_decode_floor_is_bandwidth_over_the_bytes_a_step_must_read(report: dict[str, Any]) -> None:
    bandwidth = report["bandwidth"]["bytes_per_s"]
    assert bandwidth > 1e8  # even a slow machine streams 100 MB/s
    pure = _row(report, "pure float32")
    # every weight but the position table (gathered, one row per token) is streamed once per step
    wpe = TINY.n_positions * TINY.n_embd * 4
    assert pure["streamed_bytes"] == pure["weight_bytes"] - wpe
    assert pure["decode_floor_tok_s"]["b1"] == pytest.approx(bandwidth / pure["streamed_bytes"])
    assert pure["decode_floor_tok_s"]["b2"] == pytest.approx(2 * bandwidth / pure["streamed_bytes"])


def test_the_floor_counts_the_precision_not_the_file() -> None:
    config = {"n_embd": 768, "n_layer": 12, "vocab_size": 50257}
    bits = {name: p.bits for name, p in zoo.PRECISIONS.items()}
    f32 = streamed_bytes(config, bits["float32"])
    assert f32 == pytest.approx(4 * (124_439_808 - 1024 * 768))  # GPT-2's parameters less wpe
    assert streamed_bytes(config, bits["bfloat16"]) == f32 / 2
    assert streamed_bytes(config, bits["int8"]) == f32 / 4 and streamed_bytes(config, bits["int4"]) == f32 / 8
    # llama.cpp's blocks of 32 carry a float16 scale each: 34 and 18 bytes per 32 weights
    assert streamed_bytes(config, bits["q8_0"]) == pytest.approx(f32 / 4 * 34 / 32)
    assert streamed_bytes(config, bits["q4_0"]) == pytest.approx(f32 / 8 * 18 / 16)


def test_report_describes_machine_and_lists_what_was_not_measured(report: dict[str, Any]) -> None:
    text = format_report(report)
    assert f"{report['machine']['cores']} cores" in text
    assert "Memory bandwidth:" in text and "GB/s" in text
    table = [line for line in text.splitlines() if line.startswith("| pure float32")]
    assert len(table) == 2  # the main table and the spread table
    assert "x)" in table[0]  # a ratio against the reference
    assert "- quantised int8/float32: skipped: quantised does not offer float32" in text


def test_progress_is_shown_while_it_runs(report: dict[str, Any]) -> None:
    lines = report["progress"]
    assert lines[0].startswith("measuring memory bandwidth")
    assert any(line.startswith("[2/4] pure float32: decode b2: run 2/2") for line in lines)
    assert any("[4/4] quantised int8/float32: skipped" in line for line in lines)


def test_steps_add_up_to_the_total_the_progress_bar_is_given(report: dict[str, Any]) -> None:
    steps = report["steps"]
    assert {total for _, total in steps} == {1 + 4 * SETTINGS.steps()}  # the bandwidth, then four subjects
    assert sum(n for n, _ in steps) == steps[0][1]
    # load; four measurements of a warm-up and two runs; fidelity
    assert SETTINGS.steps() == 1 + (2 + 2) * (1 + 2) + 1


def test_the_work_folder_follows_zoo_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from zoo.bench.run import default_work_dir

    monkeypatch.setenv("ZOO_CACHE", str(tmp_path))
    assert default_work_dir() == tmp_path / "bench"
    monkeypatch.delenv("ZOO_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_work_dir() == tmp_path / "xdg" / "gpt2-zoo" / "bench"


def test_settings_fit_a_small_context() -> None:
    fitted = Settings.full().fitted(TINY)
    assert fitted.prefill == ((1, 64), (8, 64))
    assert fitted.prompt_tokens + fitted.new_tokens <= TINY.n_positions
    assert Settings.full().fitted(zoo.GPT2Config()) == Settings.full()


def test_unknown_variant_fails_before_measuring_anything() -> None:
    with pytest.raises(zoo.UnknownVariantError, match="did you mean 'pure'"):
        subjects_for(["pures"], None, "cpu")


def test_variant_registered_at_run_time_is_skipped_with_the_fix() -> None:
    base = zoo.get_variant("pure")
    zoo.register(replace(base, name="pure-here", source=""))
    try:
        (_, subject) = subjects_for(["pure-here"], None, "cpu")
    finally:
        zoo.unregister("pure-here")
    assert "install it as a plugin (entry-point group 'zoo')" in subject.skip


def test_device_the_variant_lacks_is_skipped() -> None:
    (_, subject) = subjects_for(["cpu"], None, "cuda")
    assert subject.skip == "cpu does not run on cuda (it runs on cpu)"


def test_failing_subject_is_an_error_row_not_a_crash(tmp_path: Path) -> None:
    weights = prepare_weights(TINY, tmp_path)
    (weights / "model.safetensors").write_bytes(b"not safetensors")  # every subject must now fail to load
    out = add_ratios(run_bench(["pure"], config=TINY, threads=1, settings=replace(SETTINGS, runs=1),
                               work_dir=tmp_path))
    assert [r["status"] for r in out["results"]] == ["error", "error"]
    assert all(r["reason"] for r in out["results"])
    assert "- pure float32: error:" in format_report(out)


@pytest.mark.skipif(zoo.get_variant("ctranslate2").why_unavailable() is not None,
                    reason=f"ctranslate2: {zoo.get_variant('ctranslate2').why_unavailable()}")
def test_a_variant_without_a_kv_cache_is_decoded_by_its_own_greedy_loop(tmp_path: Path) -> None:
    assert not zoo.get_variant("ctranslate2").capabilities.kv_cache
    out = add_ratios(run_bench(["ctranslate2"], config=TINY, threads=1, settings=replace(SETTINGS, runs=1),
                               work_dir=tmp_path))
    assert errors(json.loads(json.dumps(out)), schema("bench")) == []
    row = _row(out, "ctranslate2 float32")
    assert row["status"] == "ok", row["reason"]
    assert set(row["prefill"]) == {"1x32", "2x8"} and row["prefill"]["1x32"]["median"] > 0
    assert set(row["decode"]) == set(row["ttft_s"]) == {"b1", "b2"} and "decode_missing" not in row
    assert all(s["median"] > 0 for s in [*row["decode"].values(), *row["ttft_s"].values()])
    assert "ctranslate2's own greedy loop (generate_greedy" in row["decode_note"]
    assert row["fidelity"]["top1"] > 0.99  # float32 CTranslate2 against the float32 reference
    assert {"decode b1", "decode b2", "ttft b1", "prefill 1x32"} <= set(row["ratios"])
    text = format_report(out)
    line = next(line for line in text.splitlines() if line.startswith("| ctranslate2 float32 |"))
    assert line.count("x) \N{DAGGER}") == 3, line  # both decode figures and the time to first token are marked
    assert "- ctranslate2 float32: decode and TTFT \N{DAGGER}: decoded by ctranslate2's own greedy loop" in text


class _NoCache(zoo.GPT2):
    """``pure`` with its KV cache hidden: full forwards only, and no loop of its own."""

    def __init__(self, inner: zoo.GPT2) -> None:
        self.inner, self.config = inner, inner.config

    def forward(self, input_ids: Any, attention_mask: Any = None, input_pos: Any = None) -> Any:
        return self.inner(input_ids, attention_mask=attention_mask, input_pos=input_pos)

    def import_weights(self, weights: Any) -> None:
        self.inner.import_weights(weights)

    def export_weights(self) -> dict[str, Any]:
        return self.inner.export_weights()

    @property
    def device(self) -> Any:
        return self.inner.device

    @property
    def dtype(self) -> Any:
        return self.inner.dtype


def test_a_variant_without_a_kv_cache_or_a_loop_of_its_own_is_prefilled_and_its_decode_reported_missing(
        registered: list[str], tmp_path: Path) -> None:
    pure = zoo.get_variant("pure")
    _register(registered, _declared("zz-nocache", capabilities=replace(pure.capabilities, kv_cache=False),
                                    build=lambda config, **kw: _NoCache(pure.build(config, **kw))))
    spec = {"subject": {"kind": "variant", "name": "zz-nocache", "precision": "float32"}, "label": "zz-nocache",
            "weights_dir": str(prepare_weights(TINY, tmp_path)), "device": "cpu", "threads": 1, "warmup": 0,
            "runs": 1, "prefill": [[1, 8]], "decode": [1], "prompt_tokens": 4, "new_tokens": 3,
            "vocab_size": TINY.vocab_size, "reference": None}
    row = measure(spec)  # in this process: the variant is registered here only
    assert row["prefill"]["1x8"]["median"] > 0
    assert row["decode"] == {} and row["ttft_s"] == {} and "decode_note" not in row  # nothing stands in
    assert "keeps no KV cache" in row["decode_missing"] and "no greedy loop of its own" in row["decode_missing"]
    report = {"settings": {"prefill": [[1, 8]], "decode": [1], "warmup": 0, "runs": 1, "prompt_tokens": 4,
                           "new_tokens": 3}, "machine": {"cpu": "a CPU", "cores": 1, "versions": {}},
              "bandwidth": {"bytes_per_s": 1e9, "kernel": "sum"}, "config": asdict(TINY), "device": "cpu",
              "threads": 1, "results": [{"kind": "variant", "label": "zz-nocache float32", "status": "ok", **row}]}
    assert "- zz-nocache float32: no decode figures: zz-nocache keeps no KV cache" in format_report(report)


def test_summary_is_median_min_max() -> None:
    assert summary([3.0, 1.0, 2.0]) == {"median": 2.0, "min": 1.0, "max": 3.0, "runs": 3}


def test_ratios_need_a_measured_reference() -> None:
    row = {"kind": "variant", "label": "pure float32", "family": "float32", "bits_per_weight": 32, "status": "ok",
           "decode": {"b1": {"median": 5.0}}, "weight_bytes": 10}
    config = {"n_embd": 1, "n_layer": 0, "vocab_size": 3}  # 3 + 2 weights of 4 bytes
    out = add_ratios({"results": [{"kind": "reference", "status": "error"}, row], "config": config,
                      "bandwidth": {"bytes_per_s": 100.0}, "settings": {"decode": [1]}})
    assert "ratios" not in out["results"][1]
    assert out["results"][1]["decode_floor_tok_s"] == {"b1": 5.0}


# -- the command line ---------------------------------------------------------------------------


def test_cli_prints_the_table_and_writes_json(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "config.json"
    config.write_text(json.dumps(TINY.to_hf().to_dict()))
    monkeypatch.delenv("ZOO_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("ZOO_CACHE", raising=False)
    monkeypatch.setattr("zoo.bench.run.Settings.quick", classmethod(lambda cls: SETTINGS))
    out = tmp_path / "bench.json"
    assert main(["bench", "cpu", "--quick", "--threads", "1", "--config", str(config), "--json", str(out),
                 "--no-fidelity"]) == 0
    captured = capsys.readouterr()
    assert "| cpu float32 |" in captured.out
    assert "zoo bench: [2/2] cpu float32: loaded in" in captured.err
    data = json.loads(out.read_text())
    assert [r["label"] for r in data["results"]] == ["hf generate float32", "cpu float32"]
    assert not any("fidelity" in r for r in data["results"])
    assert errors(data, schema("bench")) == []
    assert (tmp_path / "cache" / "gpt2-zoo" / "bench").is_dir()


def test_cli_refuses_a_json_path_it_cannot_write_before_measuring(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "pure", "--json", str(tmp_path / "missing" / "b.json")]) == 1
    assert "the folder" in capsys.readouterr().err
    assert main(["bench", "pure", "--json", str(tmp_path)]) == 1
    assert "is a folder" in capsys.readouterr().err


# -- what variants declare: the reference, the precision family ------------------------------------


def _declared(name: str, **fields: Any) -> zoo.Variant:
    """A copy of ``pure``'s declaration under another name, with ``fields`` changed."""
    return replace(zoo.get_variant("pure"), name=name, source="", **fields)


@pytest.fixture
def registered() -> Iterator[list[str]]:
    """Names registered by the test, unregistered after it."""
    names: list[str] = []
    yield names
    for name in names:
        zoo.unregister(name)


def _register(names: list[str], variant: zoo.Variant) -> None:
    zoo.register(variant)
    names.append(variant.name)


def test_the_reference_is_whichever_variant_declares_it() -> None:
    ref = _declared("zz-ref", reference=True)
    assert reference_variant([_declared("zz-a"), ref, _declared("zz-b")]) is ref
    assert reference_variant().reference  # exactly one registered variant declares it


def test_the_bench_measures_against_a_reference_registered_at_run_time(
        registered: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    builtin = reference_variant()
    monkeypatch.setitem(_registry._get().variants, builtin.name, replace(builtin, reference=False))
    _register(registered, _declared("zz-ref", reference=True))
    subjects = subjects_for([], None, "cpu")
    assert (subjects[0].kind, subjects[0].name, subjects[0].label) == ("reference", "zz-ref",
                                                                      "zz-ref generate float32")
    variants = [s.name for s in subjects if s.kind == "variant"]
    assert "zz-ref" not in variants and builtin.name in variants  # no longer the reference: a variant like any


def test_no_reference_is_an_error_naming_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(NoReferenceError, match=r"no registered variant declares reference=True.*zoo\.register"):
        reference_variant([_declared("zz-a")])
    builtin = reference_variant()
    monkeypatch.setitem(_registry._get().variants, builtin.name, replace(builtin, reference=False))
    with pytest.raises(NoReferenceError, match="no registered variant declares reference=True"):
        subjects_for(["pure"], None, "cpu")  # the reference is measured even when variants are named


def test_two_references_are_an_error_naming_both(registered: list[str]) -> None:
    _register(registered, _declared("zz-ref", reference=True))
    builtin = next(v for v in map(zoo.get_variant, zoo.list_variants()) if v.reference and v.name != "zz-ref")
    with pytest.raises(NoReferenceError, match=rf"2 variants declare reference=True: '{builtin.name}'.*'zz-ref'.*"
                                               r"zoo\.unregister"):
        subjects_for(["pure"], None, "cpu")
    assert isinstance(NoReferenceError("x"), zoo.ZooError) and str(NoReferenceError("x")) == "x"


def test_a_variant_declaring_int8_is_compared_in_the_int8_family(registered: list[str]) -> None:
    _register(registered, _declared("zz-int8", precision="int8"))
    (_, subject) = subjects_for(["zz-int8@float32"], None, "cpu")
    assert (subject.precision, subject.family, subject.label) == ("float32", "int8", "zz-int8 int8/float32")
    assert subject.bits_per_weight == 8
    (_, plain) = subjects_for(["pure@bfloat16"], None, "cpu")
    assert (plain.family, plain.label, plain.bits_per_weight) == ("bfloat16", "pure bfloat16", 16)  # the dtype


@pytest.mark.parametrize(("spec", "name", "family", "bits"), [
    ("llama.cpp@q8_0", "llama.cpp-q8_0", "int8", 8.5),
    ("llama.cpp-q4_0", "llama.cpp-q4_0", "int4", 4.5),
    ("onnxruntime@int8", "onnxruntime-int8", "int8", 8),
    ("onnxruntime@int4", "onnxruntime-int4", "int4", 4),
    ("ctranslate2@int8", "ctranslate2-int8", "int8", 8),
    ("llama.cpp@bfloat16", "llama.cpp", "bfloat16", 16),
])
def test_the_engines_are_variants_compared_in_their_weights_family(spec: str, name: str, family: str,
                                                                     bits: float) -> None:
    (_, subject) = subjects_for([spec], None, "cpu")
    assert (subject.kind, subject.name, subject.family, subject.bits_per_weight) == ("variant", name, family, bits)


def test_an_engine_that_is_not_installed_is_a_skipped_row_with_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a, **k: None if name == "llama_cpp" else find_spec(name, *a, **k))
    (_, subject, other) = subjects_for(["llama.cpp@q8_0", "pure"], None, "cpu")
    assert subject.skip == ("llama.cpp-q8_0 cannot run here: llama_cpp is not installed: "
                            "pip install 'gpt2-zoo[llama-cpp]' (builds llama.cpp from source: needs cmake and a "
                            "C++ compiler)")
    assert not other.skip


def test_every_registered_variant_is_a_subject_when_none_is_named() -> None:
    subjects = subjects_for([], None, "cpu")
    assert [s.kind for s in subjects] == ["reference"] + ["variant"] * (len(zoo.list_variants()) - 1)
    assert {s.name for s in subjects} == set(zoo.list_variants())


def test_a_precision_the_zoo_does_not_know_is_refused_with_the_known_ones() -> None:
    with pytest.raises(zoo.CapabilityError, match=r"'q5_k' is not a precision the zoo knows; use one of .*q4_0"):
        replace(zoo.get_variant("pure"), precision="q5_k").weight_precision("float32")


# -- the bench is a client of the public API ---------------------------------------------------------

BENCH = Path(zoo.bench.__file__).parent


def _is_public(module: str) -> bool:
    """A module of the zoo is public unless a part of its dotted name starts with ``_`` (``zoo._weights``).

    The bench's own modules (``zoo.bench.runners``) are its to use.
    """
    if module == "zoo.bench" or module.startswith("zoo.bench.") or not module.startswith("zoo."):
        return True
    return not any(part.startswith("_") for part in module.split("."))


def private_imports(source: str, module: str, is_package: bool = False) -> list[str]:
    """The private zoo modules and names that ``module`` (given as ``source``) imports or reads."""
    package = module if is_package else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names if not _is_public(alias.name)]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, *([node.module] if node.module else [])])
            if not _is_public(base):
                found.append(base)
            elif base == "zoo":  # from zoo import NAME: a public name, or a public module
                found += [f"zoo.{a.name}" for a in node.names
                          if a.name not in zoo.__all__ and not _is_public(f"zoo.{a.name}")]
        elif (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "zoo"
              and node.attr not in zoo.__all__ and not _is_public(f"zoo.{node.attr}")):
            found.append(f"zoo.{node.attr}")
    return found


def test_the_bench_imports_only_the_public_api() -> None:
    offenders = []
    for path in sorted(BENCH.rglob("*.py")):
        parts = path.relative_to(BENCH.parent.parent).with_suffix("").parts
        is_package = parts[-1] == "__init__"
        module = ".".join(parts[:-1] if is_package else parts)
        for private in private_imports(path.read_text(encoding="utf-8"), module, is_package):
            offenders.append(f"{module} imports {private}")
    assert offenders == [], "zoo.bench may use only `import zoo`, zoo.__all__ and public modules"


def test_the_import_scan_catches_private_imports() -> None:
    source = ("from .._registry import get_variant\nfrom .. import _config\nimport zoo._weights\n"
              "from zoo import _load, load\nimport zoo\nzoo._registry.get_variant\nzoo.get_variant\n"
              "from . import report\nfrom .runners import Runner\nfrom zoo.hf import hf_model\n")
    assert sorted(private_imports(source, "zoo.bench.run")) == [
        "zoo._config", "zoo._load", "zoo._registry", "zoo._registry", "zoo._weights"]
    assert private_imports("from ..._errors import ZooError\n", "zoo.bench.sub", is_package=True) == [
        "zoo._errors"]
