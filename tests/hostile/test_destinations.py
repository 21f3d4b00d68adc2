"""Destinations: one conversion at a time, what killed ones leave cleaned, folders replaced crash-safely."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from hostile_files import build, canonical_weights

import zoo
from zoo import WeightsError
from zoo._convert import convert
from zoo._destination import locked

ROOT = Path(__file__).parents[2]

# A conversion in a child process whose writer is replaced by ``STEP``: it runs with the lock held,
# after the temporary folder is made. argv: source, destination, format, force, then STEP's arguments.
CHILD = """
import os, signal, sys, time
from pathlib import Path
import zoo._destination, zoo.formats
src, dst, to, force = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "force"
fmt = zoo.formats.FORMATS[to]
write = fmt.module.write

def killed_mid_write(weights, config, path, dtype):
    Path(path).write_bytes(b"half a file")
    os.kill(os.getpid(), signal.SIGKILL)

def waits(weights, config, path, dtype):
    Path(sys.argv[5]).touch()
    while not Path(sys.argv[6]).exists():
        time.sleep(0.02)
    write(weights, config, path, dtype)

def killed_between_renames(new, dst):
    os.kill(os.getpid(), signal.SIGKILL)

step = os.environ["STEP"]
if step == "between-renames":
    zoo._destination._exchange = lambda a, b: False  # the fallback path, where the crash window is
    zoo._destination._move_into_place = killed_between_renames
else:
    fmt.module.write = {"mid-write": killed_mid_write, "waits": waits}[step]
from zoo._cli import main
sys.exit(main(["convert", src, dst, "--to", to] + (["--force"] if force else [])))
"""


def child(step: str, src: Path, dst: Path, to: str, *extra: str,
          force: bool = False) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "STEP": step}
    argv = [sys.executable, "-c", CHILD, str(src), str(dst), to, "force" if force else "-", *extra]
    return subprocess.Popen(argv, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def assert_killed(process: subprocess.Popen[str]) -> None:
    _, err = process.communicate(timeout=60)
    assert process.returncode == -signal.SIGKILL, err


def dead_pid() -> int:
    done = subprocess.Popen([sys.executable, "-c", "pass"])
    done.wait()
    return done.pid


@pytest.fixture
def source(tmp_path: Path) -> Path:
    return build("safetensors", tmp_path / "src")


def test_a_held_destination_is_refused_at_once_naming_the_writer(tmp_path, source):
    dst = tmp_path / "m.gguf"
    refused = pytest.raises(WeightsError, match=rf"another conversion \(pid {os.getpid()} on .*\) is writing")
    with locked(dst), refused:
        convert(source, dst, to="gguf")
    assert not dst.exists()
    convert(source, dst, to="gguf")  # released
    assert sorted(os.listdir(tmp_path)) == ["m.gguf", "src"]  # no lock file left


def test_two_processes_converting_to_one_destination(tmp_path, source, capsys):
    dst, ready, go = tmp_path / "m.safetensors", tmp_path / "ready", tmp_path / "go"
    first = child("waits", source, dst, "safetensors", str(ready), str(go))
    try:
        deadline = time.monotonic() + 60
        while not ready.exists():
            assert first.poll() is None, first.communicate()[1]
            assert time.monotonic() < deadline, "the first conversion never reached its writer"
            time.sleep(0.02)
        from zoo._cli import main

        assert main(["convert", str(source), str(dst), "--to", "safetensors", "--force"]) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"another conversion (pid {first.pid} on " in err
        assert "wait for it to finish" in err
    finally:
        go.touch()
        _, first_err = first.communicate(timeout=60)
    assert first.returncode == 0, first_err
    assert zoo.open_weights(dst)[0] == zoo.open_weights(source)[0]


def test_a_conversion_killed_mid_write_is_cleaned_by_the_next(tmp_path, source, caplog):
    dst = tmp_path / "m.bin"
    killed = child("mid-write", source, dst, "llmc")
    assert_killed(killed)
    leftovers = [p for p in tmp_path.iterdir() if p.name.endswith(".partial")]
    assert [p.name.split(".")[3] for p in leftovers] == [str(killed.pid)]  # named with its owner's pid
    assert (leftovers[0] / "m.bin").read_bytes() == b"half a file"
    assert not dst.exists()
    with caplog.at_level(logging.WARNING, logger="zoo"):
        convert(source, dst, to="llmc")
    assert [r.getMessage() for r in caplog.records] == [
        f"removed {leftovers[0]}, left by a conversion (pid {killed.pid}) that was killed"]
    assert sorted(os.listdir(tmp_path)) == ["m.bin", "src"]


def test_a_live_owners_temporary_folder_is_left_alone(tmp_path, source, caplog):
    dst = tmp_path / "m.pt"
    live = tmp_path / f".m.pt.{os.getppid()}.abcdefgh.partial"  # pytest's parent: running
    dead = tmp_path / f".m.pt.{dead_pid()}.ijklmnop.partial"
    other = tmp_path / f".m.pt.x.{dead_pid()}.qrstuvwx.partial"  # another destination's (m.pt.x)
    for folder in (live, dead, other):
        folder.mkdir()
        (folder / "m.pt").write_bytes(b"x")
    with caplog.at_level(logging.WARNING, logger="zoo"):
        convert(source, dst, to="nanogpt")
    assert live.exists() and other.exists() and not dead.exists()
    said = [r.getMessage() for r in caplog.records]
    assert said == [
        f"left {live} alone: process {os.getppid()}, which made it, is running; remove it once it is not",
        f"removed {dead}, left by a conversion (pid {dead.name.split('.')[3]}) that was killed",
    ]


def test_a_folder_replacement_killed_between_renames_is_undone_by_the_next(tmp_path, source, caplog):
    dst = tmp_path / "folder"
    convert(source, dst, to="hf")
    before = {p.name: p.read_bytes() for p in dst.iterdir()}
    other = build("safetensors", tmp_path / "other", canonical_weights(seed=1))
    killed = child("between-renames", other, dst, "hf", force=True)
    assert_killed(killed)
    replaced = tmp_path / ".folder.replaced"
    assert not dst.exists() and replaced.is_dir()  # the crash window: the old folder is aside, named
    refused = pytest.raises(WeightsError, match="exists; pass --force")
    with caplog.at_level(logging.WARNING, logger="zoo"), refused:
        convert(other, dst, to="hf")  # the next run restores it, then refuses to replace it without --force
    said = [r.getMessage() for r in caplog.records]
    assert said[-1] == f"restored {dst} from {replaced}: a conversion was killed while replacing it"
    assert said[0].startswith("removed ") and f"(pid {killed.pid})" in said[0]
    assert {p.name: p.read_bytes() for p in dst.iterdir()} == before
    assert sorted(os.listdir(tmp_path)) == ["folder", "other", "src"]


def test_a_stale_replaced_folder_beside_its_successor_is_removed(tmp_path, source, caplog):
    dst = tmp_path / "folder"
    convert(source, dst, to="hf")
    (tmp_path / ".folder.replaced").mkdir()  # killed after the new folder was in place, before the old went
    with caplog.at_level(logging.WARNING, logger="zoo"):
        convert(source, dst, to="hf", force=True)
    assert [r.getMessage() for r in caplog.records] == [
        f"removed {tmp_path / '.folder.replaced'}, the folder a killed conversion had replaced with {dst}"]
    assert sorted(os.listdir(tmp_path)) == ["folder", "src"]


@pytest.mark.parametrize("exchange", [True, False], ids=["renameat2", "fallback"])
def test_force_replaces_a_folder_leaving_nothing_beside_it(tmp_path, source, monkeypatch, exchange):
    dst = tmp_path / "folder"
    convert(source, dst, to="hf", dtype="bfloat16")
    if not exchange:
        monkeypatch.setattr("zoo._destination._exchange", lambda a, b: False)
    convert(source, dst, to="hf", force=True)
    assert zoo.open_weights(dst)[1]["wte.weight"].dtype == torch.float32  # replaced: it was bfloat16
    assert sorted(os.listdir(tmp_path)) == ["folder", "src"]


def test_a_failed_move_into_place_puts_the_old_folder_back(tmp_path, source, monkeypatch):
    dst = tmp_path / "folder"
    convert(source, dst, to="hf", dtype="bfloat16")

    def fails(new: Path, dst: Path) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("zoo._destination._exchange", lambda a, b: False)
    monkeypatch.setattr("zoo._destination._move_into_place", fails)
    with pytest.raises(WeightsError, match=r"moving .* failed \(No space left on device\), so the old"):
        convert(source, dst, to="hf", force=True)
    assert zoo.open_weights(dst)[1]["wte.weight"].dtype == torch.bfloat16  # the old folder, back
    assert sorted(os.listdir(tmp_path)) == ["folder", "src"]
