"""Converting stays within a bounded address space: the source mapped once, the output streamed.

A child process converts a small model to every format and back under
``RLIMIT_AS`` (what ``ulimit -v`` sets): the budget is what importing torch
takes on this machine, plus three times the model's file, plus 256 MiB for the
zoo's other imports and torch's threads. Mapping the source again for each
tensor, or holding every tensor before writing, needs tens of times the file.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path

from hostile_files import READERS

import zoo

ROOT = Path(__file__).parents[2]
# about 5M parameters in 52 tensors: a 22 MB file
CONFIG = zoo.GPT2Config(vocab_size=8192, n_positions=256, n_layer=4, n_embd=256, n_head=4)
SLACK = 256 << 20

PEAK = "print(dict(l.split(':', 1) for l in open('/proc/self/status'))['VmPeak'].split()[0])"
CHILD = """
import contextlib, io, json, sys
from zoo._cli import main
src, out, config = sys.argv[1], sys.argv[2], sys.argv[3]
results = {}
for to, name in json.loads(sys.argv[4]).items():
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        there = main(["convert", src, f"{out}/{name}", "--to", to, "--config", config])
        back = main(["convert", f"{out}/{name}", f"{out}/back-{to}.safetensors", "--to", "safetensors"])
    results[to] = (there, back, err.getvalue())
print(json.dumps(results))
"""


def test_every_format_converts_within_a_bounded_address_space(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    bare = subprocess.run([sys.executable, "-c", f"import torch; {PEAK}"], capture_output=True, text=True,
                          env=env, timeout=120, check=True)
    torch_bytes = int(bare.stdout.split()[-1]) * 1024
    source = zoo.convert(zoo.random_weights(CONFIG), tmp_path / "src.safetensors", to="safetensors",
                         config=CONFIG, layout="canonical")
    (tmp_path / "config.json").write_text(CONFIG.to_hf().to_json_string())
    budget = torch_bytes + 3 * source.stat().st_size + SLACK
    out = tmp_path / "out"
    out.mkdir()

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (budget, budget))

    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(source), str(out), str(tmp_path / "config.json"),
         json.dumps(READERS)],
        capture_output=True, text=True, env=env, preexec_fn=limit, timeout=300, check=False,
    )
    assert done.returncode == 0, f"budget {budget >> 20} MiB: {done.stderr[-2000:]}"
    results = json.loads(done.stdout.splitlines()[-1])
    for to, (there, back, err) in results.items():
        assert (there, back, err) == (0, 0, ""), f"{to}, within {budget >> 20} MiB: {err}"
