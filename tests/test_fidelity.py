"""The fidelity presets (learned weights, planted outliers), the ``fidelity`` property and how it is reported."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pytest
import torch
from marks import needs_int4

import zoo
from conformance import runner
from conformance.models import hf_model
from zoo import fidelity as presets
from zoo._cli import main


@pytest.fixture(scope="module")
def learned() -> presets.Preset:
    return presets.get_preset("learned")


def _logits(weights: dict[str, torch.Tensor], ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return hf_model(presets.LEARNED_CONFIG, weights)(input_ids=ids).logits.double()


# -- the presets --------------------------------------------------------------------------------
def test_learned_weights_have_learned_the_text(learned: presets.Preset) -> None:
    ids = learned.held_out
    assert ids.shape == (presets.RECIPE.windows, presets.RECIPE.context)
    figures = presets.measure(_logits(learned.weights, ids), _logits(learned.weights, ids), ids)
    counts = torch.bincount(ids[:, 1:].flatten(), minlength=presets.LEARNED_CONFIG.vocab_size).double() + 1
    unigram = math.exp(-(counts / counts.sum()).log()[ids[:, 1:]].mean())  # a floor that cheats: held-out counts
    assert figures.ppl < unigram / 2, (figures.ppl, unigram)
    assert figures.kl == 0 and figures.top1 == 1 and figures.ppl_ratio == pytest.approx(1)


def test_planted_outliers_keep_the_function_and_reach_the_hundreds(learned: presets.Preset) -> None:
    outliers = presets.get_preset("outliers")
    ids = learned.held_out[:4]
    before, after = _logits(learned.weights, ids), _logits(outliers.weights, ids)
    assert presets.measure(after, before, ids).kl < 1e-6
    model = zoo.load("pure", outliers.weights, config=outliers.config, layout="canonical")
    seen: dict[str, torch.Tensor] = {}
    for name in ("h.1.attn.c_attn", "h.1.mlp.c_fc", "h.1.attn.c_proj"):
        model.get_submodule(name).register_forward_hook(
            lambda mod, args, out, name=name: seen.__setitem__(name, args[0].detach().abs()))
    with torch.no_grad():
        model(ids)
    channels = list(presets.RECIPE.outlier_channels)
    for name, act in seen.items():
        per_channel = act.amax(dim=(0, 1))
        others = per_channel[[c for c in range(per_channel.numel()) if c not in channels]]
        assert per_channel[channels].min() > 100, (name, per_channel[channels])
        assert per_channel[channels].min() > 20 * others.max(), name


def test_plant_outliers_refuses_channels_outside_the_width(learned: presets.Preset) -> None:
    with pytest.raises(ValueError, match="outside the model's width 96"):
        presets.plant_outliers(learned.weights, learned.config, (96,), 10.0)


def test_measure_by_hand() -> None:
    ids = torch.tensor([[0, 1, 0]])
    ref = torch.log(torch.tensor([[[0.5, 0.5], [0.9, 0.1], [0.5, 0.5]]]))
    same = presets.measure(ref, ref, ids)
    assert same.kl == 0 and same.top1 == 1 and same.ppl == pytest.approx(math.exp(-(math.log(0.5) + math.log(0.9)) / 2))
    other = torch.log(torch.tensor([[[0.25, 0.75], [0.9, 0.1], [0.5, 0.5]]]))
    f = presets.measure(other, ref, ids)
    kl0 = 0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75)
    assert f.kl == pytest.approx(kl0 / 2)
    assert f.top1 == pytest.approx(0.5)  # argmax differs at position 0 only
    assert f.ppl_ratio == pytest.approx(math.exp((-math.log(0.75) + math.log(0.5)) / 2))


def test_learned_weights_come_from_the_cache_once_trained(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         learned: presets.Preset) -> None:
    monkeypatch.setenv("ZOO_CACHE", str(tmp_path))
    text = presets._text(presets.RECIPE, presets.LEARNED_CONFIG.vocab_size)
    calls = []
    monkeypatch.setattr(presets, "_train", lambda *a: calls.append(1) or dict(learned.weights))
    first = presets._learned_weights(presets.LEARNED_CONFIG, text, presets.RECIPE)
    second = presets._learned_weights(presets.LEARNED_CONFIG, text, presets.RECIPE)
    assert calls == [1]
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert [p.name for p in (tmp_path / "presets").iterdir()] == [presets._cache_file(presets.RECIPE).name]


def test_a_corrupt_or_unwritable_cache_costs_only_the_training(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                               caplog: pytest.LogCaptureFixture,
                                                               learned: presets.Preset) -> None:
    monkeypatch.setenv("ZOO_CACHE", str(tmp_path))
    text = presets._text(presets.RECIPE, presets.LEARNED_CONFIG.vocab_size)
    monkeypatch.setattr(presets, "_train", lambda *a: dict(learned.weights))
    path = presets._cache_file(presets.RECIPE)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not a safetensors file")
    assert presets._learned_weights(presets.LEARNED_CONFIG, text, presets.RECIPE).keys() == learned.weights.keys()
    assert "ignoring the unreadable learned-weights cache" in caplog.text
    monkeypatch.setenv("ZOO_CACHE", str(tmp_path / "a-file"))
    (tmp_path / "a-file").write_text("")
    assert presets._learned_weights(presets.LEARNED_CONFIG, text, presets.RECIPE).keys() == learned.weights.keys()
    assert "could not cache the learned weights" in caplog.text


# -- the property ---------------------------------------------------------------------------------
def test_exact_and_quantised_variants_pass_and_report_figures() -> None:
    results = runner.check(["pure", "quantised"], profile="quick", properties=["fidelity"])
    by_variant = {r.variant: r for r in results if r.prop == "fidelity"}
    assert all(r.status == "pass" for r in by_variant.values()), runner.failures(results)
    assert set(by_variant["pure"].figures) == {f"{p}@{d}" for p in presets.PRESETS for d in ("float32", "float64",
                                                                                                  "bfloat16")}
    int8 = by_variant["quantised"].figures["outliers@bfloat16"]
    assert 0 < int8["kl"] < 0.02 and 1 < int8["ppl_ratio"] < 1.02
    assert by_variant["pure"].figures["learned@float32"]["kl"] < 1e-8


def test_an_approximate_variant_without_a_budget_fails_with_what_it_measured() -> None:
    declared = zoo.get_variant("quantised")
    bare = dataclasses.replace(declared, name="int8-without-budget",
                               tolerances=dataclasses.replace(declared.tolerances, fidelity={}))
    zoo.register(bare)
    try:
        [_, result] = runner.check_variant("int8-without-budget", profile="quick", properties=["fidelity"])
    finally:
        zoo.unregister("int8-without-budget")
    assert result.status == "fail"
    assert "declares no fidelity budget for the learned preset; it measured KL" in result.message
    assert "zoo.Fidelity(max_kl=..., max_ppl_ratio=...)" in result.message
    assert "learned@bfloat16" in result.figures


@needs_int4
def test_zoo_check_prints_the_fidelity_table_and_writes_the_figures(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "check.json"
    assert main(["check", "quantised-int4", "--property", "fidelity", "--profile", "quick", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "fidelity against Hugging Face float32 on held-out text" in printed
    assert "quantised-int4  learned   bfloat16" in printed and "quantised-int4  outliers  bfloat16" in printed
    [_, result] = json.loads(out.read_text())["results"]
    assert set(result["figures"]["learned@bfloat16"]) == {"kl", "top1", "ppl", "ppl_ratio"}
