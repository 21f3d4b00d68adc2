"""The README stays true: its Python runs, its commands parse, and CI runs its test command."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from zoo._cli import build_parser

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
FENCE = re.compile(r"(<!-- not run[^>]*-->\n)?```(\w+)\n(.*?)```", re.S)


def blocks(language: str) -> list[str]:
    return [body for skip, lang, body in FENCE.findall(README) if lang == language and not skip]


@pytest.mark.parametrize("index", range(len(blocks("python"))))
def test_python_examples_run(index: int) -> None:
    exec(compile(blocks("python")[index], f"README.md python block {index}", "exec"), {})


def zoo_commands() -> list[str]:
    commands = []
    for body in blocks("sh"):
        for line in body.replace("\\\n", " ").splitlines():  # a command continued with a backslash is one line
            line = line.split("  #")[0].strip()
            for part in line.split("&&"):
                part = part.strip().removeprefix(".venv/bin/")
                if part.startswith("zoo "):
                    commands.append(part)
    return commands


@pytest.mark.parametrize("command", zoo_commands())
def test_cli_examples_parse(command: str) -> None:
    build_parser().parse_args(shlex.split(command)[1:])  # argparse exits on an unknown option


def test_ci_runs_the_readme_test_command() -> None:
    sh = blocks("sh")
    test_command = next(line for body in sh for line in body.splitlines() if line.endswith("pytest"))
    assert test_command in (ROOT / ".ci" / "run").read_text(encoding="utf-8")
