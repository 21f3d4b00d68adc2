"""Progress of long commands: plain lines off a terminal (CI, pipes, --json), a bar on one, nothing with -q."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest

import zoo
from zoo._cli import main
from zoo.progress import Progress


class Terminal(io.StringIO):
    """stderr as a terminal would be."""

    def isatty(self) -> bool:
        return True


def test_off_a_terminal_every_line_is_a_plain_prefixed_line() -> None:
    out = io.StringIO()
    with Progress("zoo check", total=3, stream=out) as progress:
        assert not progress.bar
        progress("pure: logits ...")
        progress.advance()
        progress.keep("pure: logits FAILED")
        progress.set_total(4)
        progress.advance(2)
    assert out.getvalue() == "zoo check: pure: logits ...\nzoo check: pure: logits FAILED\n"
    assert progress.done == 3


def test_on_a_terminal_a_bar_and_the_kept_lines() -> None:
    out = Terminal()
    with Progress("zoo bench", stream=out) as progress:
        assert progress.bar
        progress("[1/2] hf generate float32: loaded in 0.5 s")
        progress.set_total(5)
        progress.advance(3)
        progress.keep("[2/2] pure float32: failed: it crashed")
    text = out.getvalue()
    assert "zoo bench: [2/2] pure float32: failed: it crashed\n" in text
    assert "3/5" in text  # the bar drew itself
    progress.close()  # twice is harmless


def test_quiet_and_asked_for_plain_lines() -> None:
    out = Terminal()
    with Progress("zoo check", stream=out, quiet=True) as progress:
        progress("a")
        progress.keep("b")
        progress.advance()
    assert out.getvalue() == ""
    with Progress("zoo check", stream=out, bar=False) as progress:  # --json: plain lines on a terminal too
        progress("c")
    assert out.getvalue() == "zoo check: c\n"


def _check(argv: list[str]) -> list[str]:
    return ["check", "pure", "--property", "bad-input", "--profile", "quick", "--no-database", *argv]


def test_zoo_check_on_a_terminal_draws_a_bar(monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    assert main(_check([])) == 0
    err = terminal.getvalue()
    assert "zoo check: profile quick" in err  # kept above the bar
    assert "/2 " in err and "\r" in err  # a bar over the two checks
    assert "pure     bad-input  pass" in capsys.readouterr().out


def test_zoo_check_quiet_prints_no_progress(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["-q", *_check([])]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    assert "pure     bad-input  pass" in captured.out


def test_zoo_convert_counts_tensors_on_a_terminal_only(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    config = zoo.GPT2Config(vocab_size=300, n_positions=16, n_embd=16, n_layer=1, n_head=2)
    src = zoo.convert(zoo.random_weights(config, 0), tmp_path / "src", to="hf", config=config, layout="canonical")
    assert main(["convert", str(src), str(tmp_path / "out.safetensors"), "--to", "safetensors"]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""  # off a terminal: its one line on stdout, as before
    assert captured.out.startswith("wrote ")
    n = len(zoo.random_weights(config, 0))
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    assert main(["convert", str(src), str(tmp_path / "out.bin"), "--to", "llmc"]) == 0
    assert f"/{n} " in terminal.getvalue()  # a bar of n tensors (tqdm draws at most every 0.1 s)
    assert f"writing {n} tensors to" in terminal.getvalue()


def test_convert_reports_each_tensor_once(tmp_path: Path) -> None:
    config = zoo.GPT2Config(vocab_size=300, n_positions=16, n_embd=16, n_layer=1, n_head=2)
    seen: list[tuple[int, int]] = []
    zoo.convert(zoo.random_weights(config, 0), tmp_path / "w.gguf", to="gguf", config=config,
                layout="canonical", progress=lambda done, total: seen.append((done, total)))
    total = seen[0][1]
    assert seen == [(i, total) for i in range(1, total + 1)]
