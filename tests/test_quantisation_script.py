"""``scripts/quantisation_perplexity.py``: trained end to end on a few standard-library files, then judged.

The settings are tiny (one layer, a few dozen steps, short windows), so the
figures themselves mean little; what is checked is what must hold for any
settings: float32 is its own baseline, ``cpu`` equals ``pure``, training
lowers the loss, the quantised variants differ from float32 and hold fewer
bytes, the split is by file, and ``--weights`` evaluates the saved model
again to the same figures without training.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import math
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import torch
from marks import INT4_MISSING, needs_int4

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "quantisation_perplexity.py"
TINY = ["--max-files", "12", "--steps", "40", "--batch", "4", "--context", "32", "--n-layer", "1",
        "--n-embd", "64", "--n-head", "2", "--eval-tokens", "512", "--eval-batch", "8", "--threads", "1"]


@pytest.fixture(scope="module")
def script() -> Iterator[ModuleType]:
    spec = importlib.util.spec_from_file_location("quantisation_perplexity", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    yield module
    del sys.modules[spec.name]


def run(script: ModuleType, argv: list[str]) -> str:
    """``main(argv)`` in this process (torch and zoo are imported once); returns what it printed."""
    threads = torch.get_num_threads()
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
            script.main(argv)
    finally:
        torch.set_num_threads(threads)  # main() sets its --threads
    return out.getvalue()


@pytest.fixture(scope="module")
def trained(script: ModuleType, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, dict[str, Any]]:
    out = tmp_path_factory.mktemp("quantisation")
    printed = run(script, ["--out", str(out), *TINY])
    return out, printed, json.loads((out / "results.json").read_text())


def rows(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["label"]: r for r in results["results"]}


def test_prints_a_table_and_writes_json_for_every_variant(script: ModuleType, trained: Any) -> None:
    out, printed, results = trained
    labels = [j.label for j in script.runnable()[0]]
    assert [r["label"] for r in results["results"]] == labels
    table = [line for line in printed.splitlines() if line.startswith("| ")]
    assert len(table) == 2 + len(labels) + 1, printed  # header and rule, one row per variant, unigram
    for label, line in zip(labels, table[2:], strict=False):
        assert line.startswith(f"| {label} |"), line
    for r in results["results"]:
        assert r["weight_bytes"] > 0
        assert r["perplexity"] > 1 and math.isfinite(r["perplexity"])
        assert 0 <= r["top1_agreement"] <= 1
    corpus = results["corpus"]
    assert corpus["train_files"] == corpus["held_out_files"] == 12  # --max-files caps each side
    for side in ("train_tokens", "held_out_tokens"):
        assert f"{corpus[side]:,} tokens" in printed
    assert results["eval_targets"] == 512
    assert (out / "model" / "config.json").is_file() and (out / "model" / "model.safetensors").is_file()


def test_float32_is_the_baseline_and_cpu_matches_it(trained: Any) -> None:
    by = rows(trained[2])
    base, cpu = by["pure float32"], by["cpu (NumPy float32)"]
    assert base["ratio_to_float32"] == 1.0
    assert base["mean_kl_from_float32"] == 0.0 and base["top1_agreement"] == 1.0
    assert cpu["perplexity"] == pytest.approx(base["perplexity"], rel=1e-4)
    assert cpu["mean_kl_from_float32"] < 1e-6
    assert cpu["top1_agreement"] >= 0.99
    assert cpu["weight_bytes"] == base["weight_bytes"]  # both hold float32, the tie once


def test_lower_precisions_differ_from_float32_and_hold_fewer_bytes(trained: Any) -> None:
    by = rows(trained[2])
    base = by["pure float32"]
    assert by["pure bfloat16"]["weight_bytes"] == base["weight_bytes"] // 2
    int8 = by["quantised (int8)"]
    assert int8["weight_bytes"] < base["weight_bytes"] / 3
    for r in (by["pure bfloat16"], int8):
        assert r["mean_kl_from_float32"] > 0, r
        assert r["ratio_to_float32"] == pytest.approx(r["perplexity"] / base["perplexity"])


@needs_int4
def test_int4_holds_the_fewest_bytes_and_differs_the_most(trained: Any) -> None:
    by = rows(trained[2])
    int8, int4 = by["quantised (int8)"], by["quantised-int4"]
    assert int4["weight_bytes"] <= int8["weight_bytes"]
    assert int4["mean_kl_from_float32"] > 0
    assert int4["ratio_to_float32"] == pytest.approx(int4["perplexity"] / by["pure float32"]["perplexity"])
    assert int4["mean_kl_from_float32"] > int8["mean_kl_from_float32"]  # 16 levels a group against 255 a row


def test_a_variant_this_torch_cannot_run_is_named_with_the_reason(trained: Any) -> None:
    _, printed, results = trained
    assert results["not_judged"] == ({} if INT4_MISSING is None else {"quantised-int4": INT4_MISSING})
    for label, reason in results["not_judged"].items():
        assert f"not judged: {label}: {reason}" in printed


def test_training_lowered_the_loss(trained: Any) -> None:
    training = trained[2]["training"]
    assert len(training["losses"]) == training["steps"] == 40
    assert training["initial_loss"] == pytest.approx(math.log(50257), abs=1.0)  # GPT-2's init: near uniform
    assert training["final_loss"] < training["initial_loss"] - 1.0


def test_weights_flag_evaluates_again_without_training(script: ModuleType, trained: Any,
                                                       tmp_path: Path) -> None:
    out, _, first = trained
    again = tmp_path / "again.json"
    printed = run(script, ["--weights", str(out / "model"), "--json", str(again), *TINY])
    second = json.loads(again.read_text())
    assert second["training"] == first["training"]  # read from the record, not retrained
    assert "loss 10." in printed  # the record's step-0 loss is reported again
    for a, b in zip(first["results"], second["results"], strict=True):
        for key in ("perplexity", "mean_kl_from_float32", "top1_agreement", "weight_bytes"):
            assert a[key] == pytest.approx(b[key], rel=1e-6), (a["label"], key)


def test_weights_refuse_a_split_they_were_not_trained_with(script: ModuleType, trained: Any) -> None:
    out = trained[0]
    with pytest.raises(SystemExit, match="--held-out-every 10"):
        run(script, ["--weights", str(out / "model"), "--held-out-every", "7", *TINY])


def test_held_out_by_file_hash_about_one_in_n(script: ModuleType) -> None:
    import sysconfig

    root = Path(sysconfig.get_paths()["stdlib"])
    paths = [p.relative_to(root).as_posix() for p in script.source_files(root)]
    assert len(paths) > 200 and paths == sorted(paths)
    assert not any(set(p.split("/")[:-1]) & script.EXCLUDED_DIRS for p in paths)
    held = [p for p in paths if script.is_held_out(p, 10)]
    assert 0.05 < len(held) / len(paths) < 0.15


def test_eval_windows_spread_over_the_stream(script: ModuleType) -> None:
    stream = torch.arange(1000)
    windows = script.eval_windows(stream, context=10, eval_tokens=200)
    assert windows.shape == (20, 11)
    starts = windows[:, 0]
    assert int(starts[0]) == 0 and int(starts[-1]) == 980  # the first and the last whole window
    assert bool((starts % 10 == 0).all()) and bool((starts.diff() > 0).all())  # targets never scored twice
    assert torch.equal(windows[:, 1:] - windows[:, :-1], torch.ones(20, 10, dtype=torch.long))
