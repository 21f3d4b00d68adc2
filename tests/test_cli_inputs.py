"""Hostile command lines: each fails in one line naming the problem, with no traceback, before any work."""

from __future__ import annotations

import json

import pytest
import torch

import zoo
from zoo._cli import main

CONFIG = zoo.GPT2Config(vocab_size=50257, n_positions=32, n_embd=16, n_layer=1, n_head=2)


def one_line(capsys: pytest.CaptureFixture[str], argv: list[str], code: int = 1) -> str:
    assert main(argv) == code
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("zoo") and "Traceback" not in captured.err, captured.err
    assert captured.out == ""
    return lines[0]


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory):
    from transformers import GPT2LMHeadModel

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("cli-inputs") / "tiny-gpt2"
    GPT2LMHeadModel(CONFIG.to_hf()).save_pretrained(path)
    return path


@pytest.mark.parametrize("seed", [str(2**70), str(2**64), "-1", "1.5", "x"])
def test_generate_seed_outside_what_torch_takes_is_a_usage_error(capsys, seed):
    line = one_line(capsys, ["generate", "pure", "--weights", "random", "--prompt", "hi", "--seed", seed], 2)
    assert f"--seed: '{seed}' is not an int in [0, 2**64)" in line


def test_generate_with_a_config_too_large_for_memory_is_refused_before_building(capsys, tmp_path):
    config = json.loads(CONFIG.to_hf().to_json_string())
    config.update(n_layer=10**6, n_embd=4096, n_head=32)
    (tmp_path / "config.json").write_text(json.dumps(config))
    line = one_line(capsys, ["generate", "pure", "--weights", "random", "--config", str(tmp_path), "--prompt", "hi"])
    assert "201,380,045,991,936 parameters" in line and "TiB of weights" in line and "choose a smaller config" in line


def test_generate_weights_that_do_not_match_the_config_is_one_line(capsys, folder, tmp_path):
    # far apart: refused on the tensor count alone
    line = one_line(capsys, ["generate", "pure", "--weights", str(folder), "--config", "gpt2", "--prompt", "hi"])
    assert "declares n_layer=12, which needs 148 tensors, but the weights (hf layout) hold only 16" in line
    assert line.endswith("; drop --config to use the config the weights carry, or give the one they were saved with")
    # a near miss: every name compared, the first difference named
    config = json.loads(CONFIG.to_hf().to_json_string())
    config.update(n_embd=32)
    (tmp_path / "config.json").write_text(json.dumps(config))
    line = one_line(capsys, ["generate", "pure", "--weights", str(folder), "--config", str(tmp_path),
                             "--prompt", "hi"])
    assert "mis-shaped tensors" in line and "(first: " in line and "drop --config" in line


def test_check_device_threads_and_json_folder_are_checked_before_the_run(capsys, tmp_path):
    assert "--device 'bogus' is not a device torch knows" in one_line(capsys, ["check", "pure", "--device", "bogus"])
    assert "--threads: '-3' is not an int >= 1" in one_line(capsys, ["check", "pure", "--threads", "-3"], 2)
    missing = tmp_path / "missing" / "out.json"
    assert "does not exist; create it first" in one_line(capsys, ["check", "pure", "--json", str(missing)])


def test_check_with_an_unknown_hypothesis_profile_names_the_known_ones(capsys, monkeypatch):
    monkeypatch.setenv("HYPOTHESIS_PROFILE", "thorogh")
    line = one_line(capsys, ["check", "pure"])
    assert "'thorogh' names no hypothesis profile" in line and "quick, ci, thorough" in line


def test_bench_where_every_asked_subject_would_be_skipped_fails_before_measuring(capsys):
    line = one_line(capsys, ["bench", "pure@float16", "cpu@float64"])
    assert "nothing to measure: pure does not offer float16" in line and "cpu does not offer float64" in line
