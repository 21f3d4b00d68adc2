"""Quiet by default: zoo's commands print their own lines only; -v adds the libraries' warnings and logs.

The commands run in subprocesses here, as a user runs them: in-process, pytest's
own log capture and its warnings-as-errors would hide what reaches a terminal.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import zoo

SUMMARY = re.compile(r"^\d+ failed, \d+ passed, \d+ skipped in ")


def zoo_command(*argv: str, cwd: Path | None = None, timeout: int = 600) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for name in ("TORCH_LOGS", "TRANSFORMERS_VERBOSITY", "HYPOTHESIS_STORAGE_DIRECTORY"):  # as a user has them
        env.pop(name, None)
    return subprocess.run([sys.executable, "-m", "zoo", *argv], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=timeout, check=False)


def foreign(stderr: str) -> list[str]:
    """The lines on stderr that are not ours."""
    return [line for line in stderr.splitlines() if line.strip() and not line.startswith("zoo")]


def test_zoo_check_prints_only_its_own_lines(tmp_path: Path) -> None:
    proc = zoo_command("check", "pure", "--profile", "quick", "--property", "logits", "--threads", "1",
                       cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert list(tmp_path.iterdir()) == []  # hypothesis' files went to the cache, not into the current folder
    assert foreign(proc.stderr) == []
    lines = proc.stdout.splitlines()
    assert lines[0].split() == ["variant", "property", "result", "examples", "worst", "/", "bound", "time"]
    assert set(lines[1]) <= {"-", " "}
    rows = [line for line in lines[2:] if line]
    assert [row.split()[:3] for row in rows[:-1]] == [["pure", "interface", "pass"], ["pure", "logits", "pass"]]
    assert SUMMARY.match(rows[-1]), proc.stdout


def test_zoo_generate_prints_the_text_and_its_own_lines(tmp_path: Path) -> None:
    config = zoo.GPT2Config(vocab_size=50257, n_positions=32, n_embd=16, n_layer=1, n_head=2)
    (tmp_path / "config.json").write_text(json.dumps(config.to_hf().to_dict()))
    proc = zoo_command("generate", "pure", "--weights", "random", "--config", str(tmp_path / "config.json"),
                       "--prompt", "Hello", "--max-new-tokens", "4")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("Hello") and proc.stdout.count("\n") == 1
    assert foreign(proc.stderr) == []
    assert proc.stderr.splitlines() == ["zoo: note: random weights (--weights random): the text will be gibberish"]


NOISY = """
import logging, sys, warnings
import zoo._cli as cli

def noisy(args):
    warnings.warn("a library's deprecation", DeprecationWarning, stacklevel=1)
    warnings.warn("a library's advice", UserWarning, stacklevel=1)
    logging.getLogger("transformers.modeling_utils").warning("a library's log line")
    logging.getLogger("zoo").warning("a line of ours")
    print("the result")
    return 0

cli.cmd_info = noisy
sys.exit(cli.main(sys.argv[1:]))
"""


def _noisy(*argv: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ZOO_DISABLE_PLUGIN_AUTOLOAD": "1", "PYTHONWARNINGS": "always"}
    return subprocess.run([sys.executable, "-c", NOISY, *argv], capture_output=True, text=True, env=env,
                          timeout=300, check=False)


def test_libraries_warnings_and_log_lines_are_hidden_unless_verbose() -> None:
    quiet = _noisy("info", "pure")
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stdout == "the result\n"
    assert quiet.stderr == "zoo: WARNING: a line of ours\n"
    loud = _noisy("-v", "info", "pure")
    lines = loud.stderr.splitlines()
    assert "zoo: WARNING: a line of ours" in lines
    assert "zoo: WARNING: [transformers.modeling_utils] a library's log line" in lines
    assert any(line.startswith("zoo: WARNING: [py.warnings] UserWarning: a library's advice") for line in lines)
    assert foreign(loud.stderr) == []  # shown, and still as lines of ours


def test_the_library_itself_changes_no_warning_filter_or_logger() -> None:
    code = ("import logging, warnings; before = list(warnings.filters); import zoo, conformance.cli, zoo.progress; "
            "assert warnings.filters == before, 'filters changed'; "
            "assert not logging.getLogger().handlers, 'a root handler was added'; print('ok')")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False)
    assert proc.stdout.strip() == "ok", proc.stderr
