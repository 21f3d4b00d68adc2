"""The pictures: ``zoo bench --plot``, the conformance scoreboard and its heat map."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from conformance import scoreboard
from zoo._cli import main
from zoo.bench.plot import plot

pytest.importorskip("matplotlib")

PNG = b"\x89PNG\r\n\x1a\n"


def _row(label: str, tok_s: float, floor: float | None, kl: float | None) -> dict[str, Any]:
    row: dict[str, Any] = {"label": label, "status": "ok", "decode": {"b1": {"median": tok_s}}}
    if floor:
        row["decode_floor_tok_s"] = {"b1": floor}
    if kl is not None:
        row["fidelity"] = {"kl": kl, "top1": 1.0, "ppl": 10.0, "ppl_ratio": 1.0}
    return row


def test_bench_plot_draws_speed_against_floor_and_fidelity(tmp_path: Path) -> None:
    report = {"device": "cpu", "threads": 2, "bandwidth": {"bytes_per_s": 29e9},
              "results": [_row("hf generate float32", 40, 58, 0.0), _row("quantised int8", 150, 230, 2e-5),
                          _row("an engine", 90, 100, None), {"label": "skipped", "status": "skipped"}]}
    out = plot(report, tmp_path / "bench.png")
    assert out.read_bytes().startswith(PNG)


CHECK = {"profile": "ci", "device": "cpu", "seconds": 12.0, "versions": {"zoo": "0.1.0"}, "results": [
    {"variant": "pure", "prop": "logits", "status": "pass", "message": ""},
    {"variant": "pure", "prop": "fidelity", "status": "pass", "message": "",
     "figures": {"learned@float32": {"kl": 1e-14, "top1": 1.0, "ppl": 13.0, "ppl_ratio": 1.0},
                 "outliers@float32": {"kl": 2e-14, "top1": 1.0, "ppl": 13.0, "ppl_ratio": 1.0},
                 "learned@bfloat16": {"kl": 1.5e-5, "top1": 0.9966, "ppl": 13.0, "ppl_ratio": 0.9999},
                 "outliers@bfloat16": {"kl": 1.6e-5, "top1": 0.995, "ppl": 13.0, "ppl_ratio": 1.0001}}},
    {"variant": "engine@int8", "prop": "logits", "status": "fail",
     "message": "engine@int8 fails logits: logits (float32)\n  (KL 0.3 > bound 0.1)\n  reproduce: ..."},
    {"variant": "engine@int8", "prop": "fidelity", "status": "skip", "message": "the interface check failed"},
]}


def test_scoreboard_renders_rows_columns_and_numbered_reasons() -> None:
    text = scoreboard.render(CHECK)
    lines = text.splitlines()
    assert lines[0] == "| variant | logits | fidelity | fidelity: learned | fidelity: outliers |"
    assert lines[2] == ("| `pure@float32` | pass | pass | KL 1.0e-14, top-1 100.0%, ppl 1.000x | "
                        "KL 2.0e-14, top-1 100.0%, ppl 1.000x |")
    assert lines[3] == ("| `pure@bfloat16` | pass | pass | KL 1.5e-05, top-1 99.7%, ppl 1.000x | "
                        "KL 1.6e-05, top-1 99.5%, ppl 1.000x |")
    assert lines[4] == "| `engine@int8` | FAIL [1] | n/a [2] | - | - |"
    assert "1. engine@int8 fails logits: logits (float32) (KL 0.3 > bound 0.1)" in lines
    assert "2. the interface check failed" in lines


def test_scoreboard_command_and_heat_map(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "check.json"
    source.write_text(json.dumps(CHECK))
    assert scoreboard.main([str(source), "--plot", str(tmp_path / "board.png")]) == 0
    assert "| `pure@bfloat16` | pass | pass |" in capsys.readouterr().out
    assert (tmp_path / "board.png").read_bytes().startswith(PNG)
    source.write_text("{}")
    assert scoreboard.main([str(source)]) == 1
    assert "is not a zoo check --json file" in capsys.readouterr().err


def test_zoo_check_and_bench_refuse_a_plot_path_they_cannot_write(tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "pure", "--property", "logits", "--plot", str(tmp_path / "no" / "a.png")]) == 1
    assert "the folder" in capsys.readouterr().err
    assert main(["bench", "pure", "--plot", str(tmp_path)]) == 1
    assert f"--plot {tmp_path} is a folder; give a file name" in capsys.readouterr().err


def test_zoo_check_draws_the_heat_map(tmp_path: Path) -> None:
    assert main(["check", "pure", "--property", "determinism", "--profile", "quick",
                 "--plot", str(tmp_path / "board.png")]) == 0
    assert (tmp_path / "board.png").read_bytes().startswith(PNG)
