"""The ``zoo`` command line: list, info, generate, and one-line errors for user mistakes."""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import subprocess
import sys

import pytest
import torch

import zoo
import zoo._registry as registry
from zoo._cli import main

# the real GPT-2 vocabulary (the tokenizer's ids), everything else tiny
CONFIG = zoo.GPT2Config(vocab_size=50257, n_positions=48, n_embd=32, n_layer=2, n_head=2)
PROMPT = "Hello, world! Ünïcode"


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """A random GPT-2 written with ``save_pretrained``, as a user would point ``--weights`` at it."""
    from transformers import GPT2LMHeadModel

    torch.manual_seed(0)
    model = GPT2LMHeadModel(CONFIG.to_hf()).eval()
    path = tmp_path_factory.mktemp("cli") / "tiny-gpt2"
    model.save_pretrained(path)
    return path


@pytest.fixture
def fresh_registry(monkeypatch):
    monkeypatch.delenv(registry.DISABLE_AUTOLOAD_ENV, raising=False)
    registry._reset()
    yield
    registry._reset()


def expected_text(weights, max_new_tokens, *, config=None, seed=0, allow_nonfinite=False, **kwargs):
    """What ``zoo generate`` must print: the prompt, then the decoded continuation up to <|endoftext|>.

    The command uses ``--seed`` both for random weights and for sampling.
    """
    model = zoo.load("pure", weights, config=config, seed=seed, allow_nonfinite=allow_nonfinite)
    enc = zoo.get_tokenizer()
    new = zoo.generate(model, enc.encode(PROMPT), max_new_tokens, seed=seed, **kwargs)[0]
    if model.config.eos_token_id in new:
        new = new[: new.index(model.config.eos_token_id)]
    return PROMPT + enc.decode_bytes(new).decode("utf-8", errors="replace") + "\n"


def run_error(capsys, argv, code=1):
    """Run ``zoo argv``; it must fail with ``code`` and exactly one readable line on stderr."""
    assert main(argv) == code
    _, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("zoo"), err
    assert "Traceback" not in err
    return lines[0]


# -- list and info ------------------------------------------------------------------------


def test_list_table(capsys, fresh_registry):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in ("pure", "hf"):
        line = next(line for line in out.splitlines() if line.startswith(name + " "))
        assert " ok " in line and zoo.get_variant(name).summary in line
    assert "gpt2-zoo" in out and "float32" in out


def test_list_json_has_every_field(capsys, fresh_registry):
    assert main(["list", "--json"]) == 0
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    pure = rows["pure"]
    assert pure["status"] == "ok" and pure["error"] is None
    assert pure["distribution"] == "gpt2-zoo"
    assert pure["summary"] == zoo.get_variant("pure").summary
    assert pure["source"] == zoo.get_variant("pure").source
    assert pure["capabilities"]["dtypes"] == list(zoo.get_variant("pure").capabilities.dtypes)
    assert pure["capabilities"]["trainable"] is True


def test_list_pattern(capsys, fresh_registry):
    assert main(["list", "pur*", "--json"]) == 0
    names = [row["name"] for row in json.loads(capsys.readouterr().out)]
    assert names == [n for n in zoo.list_variants() if n.startswith("pur")]
    assert "pure" in names and "hf" not in names
    assert main(["list", "no-such-*"]) == 0
    assert "no variant matches" in capsys.readouterr().out


def test_list_shows_broken_plugins_with_their_error(capsys, fresh_registry, tmp_path, monkeypatch):
    info = tmp_path / "fake_dist-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fake-dist\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[zoo]\nfake-broken = fake_cli_boom\n")
    (tmp_path / "fake_cli_boom.py").write_text("raise ImportError('needs a missing library')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "fake_cli_boom", raising=False)
    registry._reset()

    assert main(["list", "--json"]) == 0
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    assert rows["fake-broken"]["status"] == "broken"
    assert rows["fake-broken"]["error"] == "ImportError: needs a missing library"
    assert rows["fake-broken"]["source"].startswith("fake-dist 1.0")
    assert rows["pure"]["status"] == "ok"
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert any(line.startswith("fake-broken") and "broken" in line for line in out.splitlines())
    line = run_error(capsys, ["info", "fake-broken"])
    assert "needs a missing library" in line


def test_info(capsys):
    assert main(["info", "pure"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("pure: ")
    assert "distribution: gpt2-zoo" in out and "bfloat16" in out and "trainable:" in out
    assert "tolerances:" in out


def test_info_of_every_variant_prints_its_capabilities_and_notes(capsys):
    for name in zoo.list_variants():  # test_configs (compiled) and approximate tolerances (quantised) included
        assert main(["info", name]) == 0
        out = capsys.readouterr().out
        assert out.startswith(f"{name}: ") and "test_configs:" in out and "tolerances:" in out
    assert main(["info", "compiled"]) == 0
    out = capsys.readouterr().out
    assert "test_configs: GPT2Config(vocab_size=101" in out and "the first decode step" in out


# -- generate -------------------------------------------------------------------------------


def test_generate_from_a_save_pretrained_folder(capsys, folder):
    assert main(["generate", "pure", "--weights", str(folder), "--prompt", PROMPT,
                 "--max-new-tokens", "6"]) == 0
    out, err = capsys.readouterr()
    assert out == expected_text(str(folder), 6)
    assert err == ""


def test_generate_streams_as_it_goes(monkeypatch, folder):
    writes: list[str] = []

    class Recorder(io.StringIO):
        def write(self, text):
            writes.append(text)
            return super().write(text)

    monkeypatch.setattr(sys, "stdout", Recorder())
    assert main(["generate", "hf", "--weights", str(folder), "--prompt", PROMPT,
                 "--max-new-tokens", "5", "--temperature", "0.8", "--top-k", "50", "--seed", "3"]) == 0
    assert writes[0] == PROMPT
    assert len([w for w in writes if w]) >= 3  # the prompt, then piece by piece
    assert "".join(writes) == expected_text(str(folder), 5, seed=3, temperature=0.8, top_k=50)


def test_generate_random_weights_with_a_config_json(capsys, folder):
    argv = ["generate", "pure", "--weights", "random", "--config", str(folder / "config.json"),
            "--prompt", PROMPT, "--max-new-tokens", "4", "--seed", "7"]
    assert main(argv) == 0
    out, err = capsys.readouterr()
    assert out == expected_text(None, 4, config=CONFIG, seed=7)
    assert "random weights" in err
    assert main([*argv[:5], str(folder), *argv[6:]]) == 0  # the folder holding config.json
    assert capsys.readouterr().out == out


def test_generate_says_while_a_compiled_variant_compiles(capsys, caplog, folder):
    argv = ["generate", "compiled", "--weights", "random", "--config", str(folder / "config.json"),
            "--prompt", PROMPT, "--max-new-tokens", "4", "--seed", "7"]
    assert main(argv) == 0
    assert capsys.readouterr().out == expected_text(None, 4, config=CONFIG, seed=7)  # greedy: pure's text
    # logged at INFO without -v (records below a logger's level are never made, so none would be here)
    said = [r.getMessage() for r in caplog.records if r.name == "zoo.compile" and r.levelno == logging.INFO]
    assert said and said[0].startswith("compiling the decode step for batch 1")


def test_generate_max_new_tokens_zero_prints_the_prompt(capsys, folder):
    assert main(["generate", "pure", "--weights", str(folder), "--prompt", "abc", "--max-new-tokens", "0"]) == 0
    assert capsys.readouterr().out == "abc\n"


@pytest.mark.parametrize(
    ("extra", "code", "expected"),
    [
        (["--weights", "/no/such/folder"], 1, "no such file or folder"),
        (["--dtype", "int8"], 1, "does not support dtype 'int8'"),
        (["--max-new-tokens", "-1"], 2, "--max-new-tokens: '-1' is not an int >= 0"),
        (["--max-new-tokens", "lots"], 2, "'lots' is not an int >= 0"),
        (["--temperature", "-0.5"], 2, "--temperature"),
        (["--top-k", "0"], 2, "--top-k"),
        (["--top-p", "1.5"], 2, "--top-p"),
        (["--device", "no-such-device"], 1, "--device 'no-such-device'"),
        (["--config", "gpt5"], 1, "neither a preset"),
        (["--max-new-tokens", "100"], 1, "exceeds n_positions=48"),
    ],
)
def test_generate_user_mistakes_are_one_line(capsys, folder, extra, code, expected):
    argv = ["generate", "pure", "--weights", str(folder), "--prompt", PROMPT, "--max-new-tokens", "2", *extra]
    assert expected in run_error(capsys, argv, code)
    assert capsys.readouterr().out == ""


def test_generate_refuses_nonfinite_weights_unless_allowed(capsys, tmp_path):
    weights = dict(zoo.random_weights(CONFIG, seed=1))
    weights["wpe.weight"] = weights["wpe.weight"].clone()
    weights["wpe.weight"][-1, 0] = float("nan")  # the last position, which a short generation never reaches
    nan = zoo.convert(weights, tmp_path / "nan", to="hf", layout="canonical", config=CONFIG,
                      allow_nonfinite=True)
    argv = ["generate", "pure", "--weights", str(nan), "--prompt", PROMPT, "--max-new-tokens", "3"]
    line = run_error(capsys, argv)
    assert "wpe.weight holds 1 NaN or Inf value" in line and "--allow-nonfinite" in line
    assert main([*argv, "--allow-nonfinite"]) == 0
    assert capsys.readouterr().out == expected_text(str(nan), 3, allow_nonfinite=True)
    assert main(["generate", "--help"]) == 0
    assert "--allow-nonfinite" in capsys.readouterr().out


def test_generate_unknown_variant(capsys, folder):
    line = run_error(capsys, ["generate", "puer", "--weights", str(folder), "--prompt", "x"])
    assert "no variant named 'puer'" in line and "did you mean 'pure'" in line


def test_generate_vocabulary_too_small_for_the_tokenizer(capsys, tmp_path):
    small = zoo.GPT2Config(vocab_size=300, n_positions=32, n_embd=16, n_layer=1, n_head=2)
    (tmp_path / "config.json").write_text(small.to_hf().to_json_string())
    line = run_error(capsys, ["generate", "pure", "--weights", "random", "--config", str(tmp_path),
                              "--prompt", "Hello world"])
    assert "vocab_size=300" in line


def test_usage_errors_are_one_line(capsys):
    assert "invalid choice: 'bogus'" in run_error(capsys, ["bogus"], 2)
    assert "required" in run_error(capsys, ["generate", "pure"], 2)


def test_version_and_help(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"gpt2-zoo {zoo.__version__}"
    assert main(["generate", "--help"]) == 0
    assert "--max-new-tokens" in capsys.readouterr().out


def test_python_dash_m_zoo_error_is_one_line_without_traceback():
    env = dict(os.environ, ZOO_DISABLE_PLUGIN_AUTOLOAD="1")
    proc = subprocess.run([sys.executable, "-m", "zoo", "info", "no-such-variant"],
                          capture_output=True, text=True, env=env, timeout=120, check=False)
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()]
    assert "no variant named 'no-such-variant'" in proc.stderr and "Traceback" not in proc.stderr


# -- commands from plugins ------------------------------------------------------------------


class HelloPlugin:
    """A third-party plugin that adds ``zoo hello NAME``."""

    @zoo.hookimpl
    def zoo_addcommands(self, subparsers):
        p = subparsers.add_parser("hello", help="greet a variant")
        p.add_argument("name")
        p.set_defaults(func=lambda args: print(f"hello, {zoo.get_variant(args.name).name}") or 0)


class FailingPlugin:
    """Adds a command, then fails while adding the next one."""

    @zoo.hookimpl
    def zoo_addcommands(self, subparsers):
        subparsers.add_parser("half", help="added before the plugin failed")
        raise RuntimeError("cannot add the rest")


class TakenNamePlugin:
    """Asks for a built-in command's name (argparse refuses it from Python 3.11)."""

    @zoo.hookimpl
    def zoo_addcommands(self, subparsers):
        p = subparsers.add_parser("list", help="another list")
        p.set_defaults(func=lambda args: print("not the zoo's list") or 0)


class ReplacingPlugin:
    """Replaces a built-in command, as Python 3.10's argparse lets ``add_parser`` do silently."""

    @zoo.hookimpl
    def zoo_addcommands(self, subparsers):
        subparsers.choices["info"] = argparse.ArgumentParser(prog="not the zoo's info")


def test_a_plugin_adds_a_subcommand_through_the_hook(capsys, fresh_registry):
    zoo.plugin_manager().register(HelloPlugin(), name="fake-hello")
    assert main(["hello", "pure"]) == 0
    assert capsys.readouterr().out == "hello, pure\n"
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "hello" in out and "greet a variant" in out and "check" in out
    assert "no variant named 'bogus'" in run_error(capsys, ["hello", "bogus"])


def test_a_plugin_failing_to_add_commands_is_named_and_the_rest_work(capsys, caplog, fresh_registry):
    pm = zoo.plugin_manager()
    pm.register(HelloPlugin(), name="fake-hello")
    pm.register(FailingPlugin(), name="fake-failing")
    pm.register(TakenNamePlugin(), name="fake-taken")
    pm.register(ReplacingPlugin(), name="fake-replacing")
    with caplog.at_level(logging.WARNING, logger="zoo"):
        assert main(["hello", "pure"]) == 0
    assert capsys.readouterr().out == "hello, pure\n"
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    failing = next(w for w in warnings if "'fake-failing'" in w)
    assert "could not add its commands: RuntimeError: cannot add the rest" in failing
    assert "uninstall" in failing
    taken = next(w for w in warnings if "'fake-taken'" in w)
    assert "list" in taken.split("could not add its commands")[1]  # argparse's words from Python 3.11, ours before
    replacing = next(w for w in warnings if "'fake-replacing'" in w)
    assert "command 'info' is already taken" in replacing
    # the built-in commands, the harness's and the other plugin's are all there
    assert main(["info", "pure"]) == 0
    assert capsys.readouterr().out.startswith("pure: ")
    assert main(["list", "pur*", "--json"]) == 0
    assert "pure" in [row["name"] for row in json.loads(capsys.readouterr().out)]
    assert main(["check", "--help"]) == 0
    assert "--property" in capsys.readouterr().out
    # the command added before the failure reports it instead of doing something half-made
    line = run_error(capsys, ["half"])
    assert "'fake-failing'" in line and "cannot add the rest" in line


def test_the_core_cli_imports_no_harness_module():
    """``zoo list`` gets `zoo check` from the harness's plugin without importing hypothesis or the properties."""
    code = (
        "import sys\n"
        "from zoo._cli import build_parser\n"
        "parser = build_parser()\n"
        "assert parser.parse_args(['list']).command == 'list'\n"
        "assert parser.parse_args(['check', 'pure']).command == 'check'\n"
        "heavy = ('hypothesis', 'conformance.properties', 'conformance.strategies', 'conformance.runner',\n"
        "         'conformance.models')\n"
        "print(sorted(m for m in sys.modules if m.startswith(heavy)))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]", proc.stdout
