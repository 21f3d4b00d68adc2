"""``examples/zoo-plugin-example`` end to end: installed beside the zoo, it is a variant like any other.

Once per module, a fresh virtual environment is made without pip or packages of
its own; a ``.pth`` file puts this environment's site-packages behind it (torch,
transformers, pytest and the zoo itself, without copying anything), and pip, run
in it with ``--no-index``, installs three copies of the example built from
temporary copies of its folder:

- ``zoo-plugin-example``: the example as it is, variants ``explicit`` and ``w8a8``;
- ``zoo-plugin-example-planted``: variants ``explicit-planted`` and
  ``w8a8-planted``, one planted bug in the written-out attention (the scale is
  ``1/hs`` instead of ``1/sqrt(hs)``);
- ``zoo-plugin-example-broken``: entry point ``zoo-example-broken``, whose module
  imports a package that is not installed.

Every check then runs the ``zoo`` command (or pytest) in that environment, from a
folder outside this repository, as a user would.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import shutil
import site
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

import zoo
from conformance.properties import PROPERTIES

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "zoo-plugin-example"
DIST = "zoo-plugin-example"
CHECKS = ["interface", *(p.name for p in PROPERTIES)]  # what zoo check and the pytest plugin run
PROMPT = "The zoo has a new"
# the real GPT-2 vocabulary (the tokenizer's ids), everything else tiny
CONFIG = zoo.GPT2Config(vocab_size=50257, n_positions=32, n_embd=16, n_layer=2, n_head=2)
# the environment variables of this run that would change what the commands do
SCRUBBED = ("ZOO_DISABLE_PLUGIN_AUTOLOAD", "ZOO_VARIANT", "HYPOTHESIS_PROFILE", "PYTHONPATH",
            "PYTHONHOME", "VIRTUAL_ENV", "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_FIND_LINKS")


@dataclass(frozen=True)
class Env:
    """The virtual environment with the example installed, and where to run commands from."""

    python: Path
    zoo: Path
    example: Path  # the installed copy of the example's folder, with its tests
    cwd: Path

    def run(self, *argv: str | Path, cwd: Path | None = None, **env: str) -> subprocess.CompletedProcess[str]:
        variables = {k: v for k, v in os.environ.items() if k not in SCRUBBED}
        variables.update(OMP_NUM_THREADS=os.environ.get("ZOO_TEST_THREADS", "1"), ZOO_OFFLINE="1",
                         HF_HUB_OFFLINE="1", PYTHONDONTWRITEBYTECODE="1", **env)
        return subprocess.run([str(a) for a in argv], cwd=cwd or self.cwd, env=variables, capture_output=True,
                              text=True, timeout=300, check=False)

    def zoo_cmd(self, *args: str | Path, **env: str) -> subprocess.CompletedProcess[str]:
        return self.run(self.zoo, *args, **env)


def replace_once(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert text.count(old) == 1, f"{old!r} is not in {path} once: the example changed, update this test"
    path.write_text(text.replace(old, new), encoding="utf-8")


def copy_example(dst: Path, suffix: str = "") -> Path:
    """A copy of the example to build from; with ``suffix``, another distribution (names renamed)."""
    shutil.copytree(EXAMPLE, dst, ignore=shutil.ignore_patterns(
        "build", "*.egg-info", "__pycache__", ".pytest_cache", ".hypothesis"))
    if suffix:
        module = f"zoo_example_{suffix}"
        (dst / "src" / "zoo_example").rename(dst / "src" / module)
        pyproject = dst / "pyproject.toml"
        replace_once(pyproject, f'name = "{DIST}"', f'name = "{DIST}-{suffix}"')
        replace_once(pyproject, 'zoo-example = "zoo_example"', f'zoo-example-{suffix} = "{module}"')
        replace_once(pyproject, 'zoo_example = ["py.typed"]', f'{module} = ["py.typed"]')
        hook = dst / "src" / module / "__init__.py"
        replace_once(hook, 'declare("explicit",', f'declare("explicit-{suffix}",')
        replace_once(hook, '"zoo_example.explicit:ExplicitGPT"', f'"{module}.explicit:ExplicitGPT"')  # its own model
        replace_once(hook, 'declare("w8a8",', f'declare("w8a8-{suffix}",')
        replace_once(hook, '"zoo_example.w8a8:W8A8Linear"', f'"{module}.w8a8:W8A8Linear"')  # its own kernel
    return dst


def make_venv(root: Path) -> Path:
    """A venv whose own site-packages comes first and this environment's after it; returns its python."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", root], check=True, capture_output=True)
    python = root / "bin" / "python"
    where = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    purelib = subprocess.run([python, "-c", where], check=True, capture_output=True, text=True).stdout.strip()
    paths = sysconfig.get_paths()
    ours = dict.fromkeys([*site.getsitepackages(), paths["purelib"], paths["platlib"]])
    # addsitedir, not a bare path: this environment's own .pth files (the zoo's editable install) must run too
    lines = [f"import site; site.addsitedir({path!r})" for path in ours if Path(path).is_dir()]
    (Path(purelib) / "_parent_environment.pth").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return python


def console_script(python: Path, name: str) -> Path:
    """The ``name`` script of this environment's distribution, written for the venv's python, as pip would."""
    (ep,) = importlib.metadata.entry_points(group="console_scripts", name=name)
    module, func = ep.value.split(":")
    path = python.parent / name
    path.write_text(f"#!{python}\nimport sys\nfrom {module} import {func}\nsys.exit({func}())\n",
                    encoding="utf-8")
    path.chmod(0o755)
    return path


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Env:
    root = tmp_path_factory.mktemp("example-plugin")
    python = make_venv(root / "venv")
    good = copy_example(root / "src" / DIST)
    planted = copy_example(root / "src" / "planted", "planted")
    # the planted bug: scores divided by hs instead of sqrt(hs), softmax too flat
    replace_once(planted / "src" / "zoo_example_planted" / "explicit.py",
                 "scores * (1.0 / math.sqrt(hs))", "scores * (1.0 / hs)")
    broken = copy_example(root / "src" / "broken", "broken")
    replace_once(broken / "src" / "zoo_example_broken" / "__init__.py", "\nimport zoo\n",
                 "\nimport zoo\nimport zoo_example_missing_dependency  # a dependency nobody installed\n")
    # no --no-deps: the example's dependencies (gpt2-zoo, torch) must be found already installed
    pip = subprocess.run(
        [str(python), "-m", "pip", "install", "--no-index", "--no-build-isolation", "--no-input", "-q",
         "--disable-pip-version-check", str(good), str(planted), str(broken)],
        capture_output=True, text=True, timeout=300, cwd=root, check=False,
    )
    assert pip.returncode == 0, pip.stdout + pip.stderr
    cwd = root / "work"
    cwd.mkdir()
    return Env(python=python, zoo=console_script(python, "zoo"), example=good, cwd=cwd)


@pytest.fixture(scope="module")
def listing(env: Env) -> str:
    proc = env.zoo_cmd("list")
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def entry(listing: str, name: str) -> str:
    """The two lines ``zoo list`` prints for ``name``."""
    match = re.search(rf"^{re.escape(name)} +(ok|broken|n/a) .*\n.*", listing, re.MULTILINE)
    assert match, f"{name} is not listed:\n{listing}"
    return match.group(0)


def builtin_variants() -> set[str]:
    """The variants gpt2-zoo itself registers (one entry point may declare several)."""
    return {name for name in zoo.list_variants() if zoo.get_variant(name).source.startswith("gpt2-zoo ")}


def test_zoo_list_shows_both_variants_with_their_distribution(listing: str) -> None:
    source = f"[{DIST} 0.1.0 (entry point zoo-example = zoo_example)]"
    explicit = entry(listing, "explicit")
    assert " ok " in explicit and "attention written out" in explicit
    assert "cpu | float32,float64,bfloat16 | exact kv_cache padding trainable" in explicit
    assert source in explicit
    w8a8 = entry(listing, "w8a8")
    assert " ok " in w8a8 and "int8 per-token activations" in w8a8
    assert "cpu | float32 | kv_cache padding " in w8a8  # approximate: no "exact", no training
    assert source in w8a8
    assert f"[{DIST}-planted 0.1.0" in entry(listing, "explicit-planted")
    assert f"[{DIST}-planted 0.1.0" in entry(listing, "w8a8-planted")


def test_a_plugin_that_fails_to_import_is_listed_as_broken_and_nothing_else_breaks(listing: str) -> None:
    broken = entry(listing, "zoo-example-broken")
    assert " broken " in broken
    assert "ModuleNotFoundError: No module named 'zoo_example_missing_dependency'" in broken
    assert f"[{DIST}-broken 0.1.0 (entry point zoo-example-broken = zoo_example_broken)]" in broken
    for name in [*builtin_variants(), "explicit", "w8a8", "explicit-planted", "w8a8-planted"]:
        # an engine variant whose engine is not installed here is n/a, as without the broken plugin
        assert " ok " in entry(listing, name) or " n/a " in entry(listing, name), name


def test_using_the_broken_plugin_is_one_line_naming_its_error(env: Env) -> None:
    proc = env.zoo_cmd("info", "zoo-example-broken")
    assert proc.returncode == 1
    *warnings, error = proc.stderr.strip().splitlines()  # discovery warns about it, then the error
    warned = "zoo: WARNING: zoo plugin 'zoo-example-broken' is broken"
    assert all(line.startswith(warned) for line in warnings), proc.stderr
    assert error.startswith("zoo: error: variant plugin 'zoo-example-broken' from zoo-plugin-example-broken 0.1.0")
    assert error.endswith("ModuleNotFoundError: No module named 'zoo_example_missing_dependency'"), error


def test_zoo_info(env: Env) -> None:
    proc = env.zoo_cmd("info", "explicit")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("explicit: zoo.nn's GPT-2 with attention written out")
    assert re.search(rf"^  distribution: {DIST}$", proc.stdout, re.MULTILINE), proc.stdout
    assert re.search(r"^  devices: +cpu$", proc.stdout, re.MULTILINE), proc.stdout
    assert re.search(r"^  dtypes: +float32, float64, bfloat16$", proc.stdout, re.MULTILINE), proc.stdout
    assert "not yet checked on a GPU" in proc.stdout  # the variant's notes
    proc = env.zoo_cmd("info", "w8a8")
    assert proc.returncode == 0, proc.stderr
    assert re.search(r"^  tolerances: .*max_kl=0\.04, max_rel_logit_error=0\.15, fidelity=", proc.stdout, re.MULTILINE), \
        proc.stdout  # the scheme row's bounds reach the variant


def test_turning_autoload_off_hides_it(env: Env) -> None:
    proc = env.zoo_cmd("list", "--json", ZOO_DISABLE_PLUGIN_AUTOLOAD="1")
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    assert {r["name"] for r in rows} == builtin_variants()
    assert all(r["status"] in ("ok", "unavailable") and r["distribution"] == "gpt2-zoo" for r in rows)
    info = env.zoo_cmd("info", "explicit", ZOO_DISABLE_PLUGIN_AUTOLOAD="1")
    assert info.returncode == 1 and "no variant named 'explicit'" in info.stderr, info.stderr


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random GPT-2 written with ``save_pretrained``; weights wide enough that greedy choices are clear."""
    from transformers import GPT2LMHeadModel

    torch.manual_seed(0)
    model = GPT2LMHeadModel(CONFIG.to_hf(initializer_range=0.2)).eval()
    path = tmp_path_factory.mktemp("weights") / "tiny-gpt2"
    model.save_pretrained(path)
    return path


def test_zoo_generate_uses_it_by_name(env: Env, weights: Path) -> None:
    proc = env.zoo_cmd("generate", "explicit", "--weights", weights, "--prompt", PROMPT, "--max-new-tokens", "8")
    assert proc.returncode == 0, proc.stderr
    model = zoo.load("pure", weights)  # the reference implementation, in this process
    enc = zoo.get_tokenizer()
    new = zoo.generate(model, enc.encode(PROMPT), 8)[0]
    if CONFIG.eos_token_id in new:
        new = new[: new.index(CONFIG.eos_token_id)]
    assert len(new) > 0
    assert proc.stdout == PROMPT + enc.decode_bytes(new).decode("utf-8", errors="replace") + "\n"


def test_zoo_check_passes(env: Env) -> None:
    proc = env.zoo_cmd("check", "explicit", "w8a8", "--profile", "quick")  # ci passes too, in about twice the time
    assert proc.returncode == 0, proc.stdout + proc.stderr

    table = proc.stdout.split("\n\n")[0]  # the property table; the fidelity table follows it

    def results(name: str) -> dict[str, str]:
        return {row[1]: row[2] for row in (line.split() for line in table.splitlines()) if row[:1] == [name]}

    assert results("explicit") == dict.fromkeys(CHECKS, "pass"), proc.stdout  # every check applies
    assert results("w8a8") == {**dict.fromkeys(CHECKS, "pass"), "training": "skip"}, proc.stdout  # not trainable
    assert re.search(r"^0 failed, \d+ passed, 1 skipped", proc.stdout, re.MULTILINE), proc.stdout


def test_zoo_check_fails_the_planted_bug_with_a_readable_report(env: Env) -> None:
    proc = env.zoo_cmd("check", "explicit-planted", "--profile", "quick", "--property", "logits")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    out = proc.stdout
    assert re.search(r"^explicit-planted +interface +pass", out, re.MULTILINE), out
    assert re.search(r"^explicit-planted +logits +FAIL", out, re.MULTILINE), out
    report = out[out.index("== explicit-planted / logits =="):]
    assert "explicit-planted fails logits" in report
    assert re.search(r"logits \(\w+\) at batch \d+, position \d+, token \d+: x=\S+, but should be", report)
    assert re.search(r"example: logits\(\s+case=ForwardCase\(config=GPT2Config\(", report)  # counterexample
    assert "zoo check explicit-planted --property logits --profile quick" in report  # how to reproduce it
    assert "Traceback" not in out + proc.stderr
    assert re.search(r"^1 failed, 1 passed", out, re.MULTILINE), out


def test_the_examples_own_pytest_passes(env: Env) -> None:
    proc = env.run(env.python, "-m", "pytest", "-v", "-p", "no:cacheprovider", "--zoo-profile", "quick",
                   cwd=env.example)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert f"zoo conformance: variant explicit from {DIST} 0.1.0" in out  # the report header
    assert "profile quick" in out
    for check in CHECKS:  # the harness's items, added by addopts = --zoo-variant explicit
        assert re.search(rf"^zoo-conformance\[explicit\]::{check} PASSED", out, re.MULTILINE), out
    for own in ("test_conformance", "test_explicit", "test_w8a8"):  # the package's own tests
        assert re.search(rf"^tests/{own}.py::\S+ PASSED", out, re.MULTILINE), out
