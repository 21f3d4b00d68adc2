"""``zoo bench``: every subject measured in its own worker, related to the reference, reported honestly.

Timings here are on a tiny config and mean nothing; the tests check what is
measured and how it is reported, never how fast anything is.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

import zoo
from zoo._cli import main
from zoo.bench import Settings, add_ratios, format_report, run_bench
from zoo.bench.run import prepare_weights, subjects_for
from zoo.bench.worker import summary

TINY = zoo.GPT2Config(vocab_size=300, n_positions=64, n_embd=64, n_layer=2, n_head=4)
# one warm-up and two runs of each measurement, on shapes that fit TINY
SETTINGS = Settings(runs=2, warmup=1, prefill=((1, 32), (2, 8)), decode=(1, 2), prompt_tokens=4, new_tokens=6,
                    bandwidth_bytes=16 << 20)


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    work = tmp_path_factory.mktemp("bench")
    lines: list[str] = []
    out = run_bench(["pure", "cpu", "quantised@float32"], config=TINY, threads=1, settings=SETTINGS,
                    work_dir=work, progress=lines.append)
    out["progress"] = lines
    return add_ratios(out)


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


def test_decode_floor_is_bandwidth_over_weight_bytes(report: dict[str, Any]) -> None:
    bandwidth = report["bandwidth"]["bytes_per_s"]
    assert bandwidth > 1e8  # even a slow machine streams 100 MB/s
    pure = _row(report, "pure float32")
    assert pure["decode_floor_tok_s"]["b1"] == pytest.approx(bandwidth / pure["weight_bytes"])
    assert pure["decode_floor_tok_s"]["b2"] == pytest.approx(2 * bandwidth / pure["weight_bytes"])


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


def test_settings_fit_a_small_context() -> None:
    fitted = Settings.full().fitted(TINY)
    assert fitted.prefill == ((1, 64), (8, 64))
    assert fitted.prompt_tokens + fitted.new_tokens <= TINY.n_positions
    assert Settings.full().fitted(zoo.GPT2Config()) == Settings.full()


def test_unknown_variant_fails_before_measuring_anything() -> None:
    with pytest.raises(zoo.UnknownVariantError, match="did you mean 'pure'"):
        subjects_for(["pures"], [], None, "cpu")


def test_variant_registered_at_run_time_is_skipped_with_the_fix() -> None:
    base = zoo.get_variant("pure")
    zoo.register(replace(base, name="pure-here", source=""))
    try:
        (_, subject) = subjects_for(["pure-here"], [], None, "cpu")
    finally:
        zoo.unregister("pure-here")
    assert "install it as a plugin (entry-point group 'zoo')" in subject.skip


def test_device_the_variant_lacks_is_skipped() -> None:
    (_, subject) = subjects_for(["cpu"], [], None, "cuda")
    assert subject.skip == "cpu does not run on cuda (it runs on cpu)"


def test_failing_subject_is_an_error_row_not_a_crash(tmp_path: Path) -> None:
    weights = prepare_weights(TINY, tmp_path)
    (weights / "model.safetensors").write_bytes(b"not safetensors")  # every subject must now fail to load
    out = add_ratios(run_bench(["pure"], config=TINY, threads=1, settings=replace(SETTINGS, runs=1),
                               work_dir=tmp_path))
    assert [r["status"] for r in out["results"]] == ["error", "error"]
    assert all(r["reason"] for r in out["results"])
    assert "- pure float32: error:" in format_report(out)


def test_summary_is_median_min_max() -> None:
    assert summary([3.0, 1.0, 2.0]) == {"median": 2.0, "min": 1.0, "max": 3.0, "runs": 3}


def test_ratios_need_a_measured_reference() -> None:
    row = {"kind": "variant", "label": "pure float32", "status": "ok", "decode": {"b1": {"median": 5.0}},
           "weight_bytes": 10}
    out = add_ratios({"results": [{"kind": "reference", "status": "error"}, row],
                      "bandwidth": {"bytes_per_s": 100.0}, "settings": {"decode": [1]}})
    assert "ratios" not in out["results"][1]
    assert out["results"][1]["decode_floor_tok_s"] == {"b1": 10.0}


# -- the command line ---------------------------------------------------------------------------


def test_cli_prints_the_table_and_writes_json(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "config.json"
    config.write_text(json.dumps(TINY.to_hf().to_dict()))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr("zoo.bench.run.Settings.quick", classmethod(lambda cls: SETTINGS))
    out = tmp_path / "bench.json"
    assert main(["bench", "cpu", "--quick", "--threads", "1", "--config", str(config), "--json", str(out)]) == 0
    captured = capsys.readouterr()
    assert "| cpu float32 |" in captured.out
    assert "zoo bench: [2/2] cpu float32: loaded in" in captured.err
    data = json.loads(out.read_text())
    assert [r["label"] for r in data["results"]] == ["hf generate float32", "cpu float32"]
    assert (tmp_path / "cache" / "gpt2-zoo" / "bench").is_dir()


def test_cli_refuses_a_json_path_it_cannot_write_before_measuring(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "pure", "--json", str(tmp_path / "missing" / "b.json")]) == 1
    assert "the folder" in capsys.readouterr().err
    assert main(["bench", "pure", "--json", str(tmp_path)]) == 1
    assert "is a folder" in capsys.readouterr().err
