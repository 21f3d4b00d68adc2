"""A write that fails (a full disk, a file-size limit) is one named line, and leaves nothing behind."""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from hostile_files import READERS, build

from zoo import WeightsError
from zoo._convert import convert

# Run in a child whose files may not grow past a few KiB (RLIMIT_FSIZE): every writer's real write
# fails part-way, as on a full disk, with no root needed. SIGXFSZ is ignored so the write returns an error.
CHILD = """
import contextlib, io, json, sys
from zoo._cli import main
src, out = sys.argv[1], sys.argv[2]
results = {}
for to, name in json.loads(sys.argv[3]).items():
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = main(["convert", src, f"{out}/{name}", "--to", to])
    results[to] = (code, err.getvalue())
print(json.dumps(results))
"""


def limit_file_size() -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (16384, 16384))


def test_a_failed_write_is_one_line_and_leaves_nothing(tmp_path):
    source = build("safetensors", tmp_path / "src")
    out = tmp_path / "out"
    out.mkdir()
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}
    done = subprocess.run([sys.executable, "-c", CHILD, str(source), str(out), json.dumps(READERS)],
                          capture_output=True, text=True, env=env, preexec_fn=limit_file_size, timeout=120,
                          check=False)
    assert done.returncode == 0, done.stderr
    results = json.loads(done.stdout.splitlines()[-1])
    for to, (code, err) in results.items():
        assert code == 1, (to, err)
        assert err.count("\n") == 1 and err.startswith("zoo: error: writing ") and "nothing was written" in err, (to, err)
    assert os.listdir(out) == []


def test_too_little_space_is_refused_before_writing(tmp_path, monkeypatch):
    import shutil

    source = build("safetensors", tmp_path / "src")
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr("zoo._convert.shutil.disk_usage", lambda path: usage._replace(free=1000))
    for to, name in READERS.items():
        with pytest.raises(WeightsError, match=r"not enough space for .* about 0\.\d MiB .* 0\.0 MiB free"):
            convert(source, tmp_path / name, to=to)
    assert sorted(os.listdir(tmp_path)) == ["src"]
