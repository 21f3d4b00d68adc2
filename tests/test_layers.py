"""The layers of the Architecture section hold: no import cycles, the core imports no plugin, variants share code through ``zoo``."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("zoo", "conformance", "plugins")


def _modules() -> dict[str, tuple[Path, bool]]:
    """Dotted module name -> (file, is a package) for every module of the project's packages."""
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            is_package = parts[-1] == "__init__"
            found[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return found


MODULES = _modules()


def imports(name: str, *, module_level: bool) -> set[str]:
    """The project modules ``name`` imports (at module level only, or anywhere); ``TYPE_CHECKING`` blocks excluded."""
    path, is_package = MODULES[name]
    package = name if is_package else name.rpartition(".")[0]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    nodes = tree.body if module_level else list(ast.walk(tree))
    skipped = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If)
               and "TYPE_CHECKING" in ast.unparse(node.test) for n in ast.walk(node)}
    found: set[str] = set()
    for node in nodes:
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, *([node.module] if node.module else [])])
            subs = {f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in MODULES}
            found |= subs if len(subs) == len(node.names) else {base, *subs}  # `from . import sub`: the submodule
    return {m for m in found if m in MODULES and m != name}


def test_no_module_level_import_cycles() -> None:
    graph = {name: imports(name, module_level=True) for name in MODULES}
    cycles = []

    def visit(node: str, path: list[str], done: set[str]) -> None:
        for nxt in graph[node]:
            if nxt in path:
                cycles.append([*path[path.index(nxt):], nxt])
            elif nxt not in done:
                visit(nxt, [*path, nxt], done)
        done.add(node)

    done: set[str] = set()
    for name in sorted(graph):
        if name not in done:
            visit(name, [name], done)
    assert cycles == [], "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_the_core_imports_no_plugin() -> None:
    found = {name: sorted(m for m in imports(name, module_level=False) if m.split(".")[0] in ("plugins", "conformance"))
             for name in MODULES if name.split(".")[0] == "zoo"}
    assert {k: v for k, v in found.items() if v} == {}, "zoo/ imports a plugin or the harness: give it a hook instead"


def test_variants_share_code_through_zoo_not_through_each_other() -> None:
    found = {}
    for name in MODULES:
        if name.split(".")[0] != "plugins" or name == "plugins":
            continue
        family = ".".join(name.split(".")[:2])  # plugins.quantised
        other = sorted(m for m in imports(name, module_level=False)
                       if m.startswith("plugins.") and not (m == family or m.startswith(family + ".")))
        if other:
            found[name] = other
    assert found == {}, "a plugin imports another plugin: move what they share into zoo/ (zoo.nn for torch code)"


def test_listing_and_describing_variants_imports_no_torch() -> None:
    code = ("import sys, zoo._cli as cli; cli.main(['list']); cli.main(['info', 'quantised-int4-compiled']); "
            "print(sorted(m for m in ('torch', 'numpy', 'transformers', 'hypothesis') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stdout
