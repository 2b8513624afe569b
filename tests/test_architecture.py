"""The package's layers point down: a module imports only from its own layer or lower ones, and
no two packages import each other (also through imports inside functions)."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1] / "nmsnn"

# the layers of pyproject.toml's import-linter contract (written there once), lowest first; a
# module belongs to the layer of the longest name that prefixes it
CONTRACTS = tomllib.loads((ROOT.parent / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
LAYERS = [["nmsnn", *re.split(r"\s*[:|]\s*", row)] if i == 0 else re.split(r"\s*[:|]\s*", row)
          for i, row in enumerate(reversed(CONTRACTS[0]["layers"]))]  # fmt: skip


def test_the_import_linter_contracts_hold():
    """``lint-imports`` (import-linter) on the installed package: every contract kept."""
    result = subprocess.run(
        [str(Path(sys.executable).parent / "lint-imports")], cwd=ROOT.parent, capture_output=True, text=True
    )
    assert result.returncode == 0 and " 0 broken" in result.stdout, result.stdout[-3000:]


def modules() -> dict[str, Path]:
    """Every module but the package's own ``__init__`` (the public façade, above every layer: it
    re-exports the estimators and the version)."""
    found = {}
    for path in ROOT.rglob("*.py"):
        name = ".".join(path.relative_to(ROOT.parent).with_suffix("").parts).removesuffix(".__init__")
        if name != "nmsnn":
            found[name] = path
    return found


def imports(path: Path, known: dict[str, Path]) -> set[str]:
    """The nmsnn modules ``path`` imports, anywhere in the file."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("nmsnn"):
            names |= {node.module, *(f"{node.module}.{alias.name}" for alias in node.names)}
        elif isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names if alias.name.startswith("nmsnn")}
    return {name for name in names if name in known}


def layer(module: str) -> tuple[int, str]:
    """The layer index and the owning name (the longest listed prefix)."""
    matches = [
        (len(prefix), i, prefix)
        for i, names in enumerate(LAYERS)
        for prefix in names
        if module == prefix or module.startswith(prefix + ".")
    ]
    assert matches, f"{module} is in no layer: add it to LAYERS"
    _, index, owner = max(matches)
    return index, owner


def test_every_module_has_a_layer():
    assert all(layer(name) for name in modules())


def test_lower_layers_never_import_higher_ones():
    known = modules()
    upward = []
    for name, path in known.items():
        own, _ = layer(name)
        for target in imports(path, known):
            if layer(target)[0] > own:
                upward.append(f"{name} -> {target}")
    assert not upward, upward


def test_no_two_packages_import_each_other():
    known = modules()
    graph: dict[str, set[str]] = defaultdict(set)
    for name, path in known.items():
        for target in imports(path, known):
            if layer(target)[1] != layer(name)[1]:
                graph[layer(name)[1]].add(layer(target)[1])
    mutual = sorted(f"{a} <-> {b}" for a in graph for b in graph[a] if a < b and a in graph.get(b, ()))
    assert not mutual, mutual


# numba's kernel builders and the loops they compile: a kernel is one loop nest, kept whole
COMPILED_KERNELS = {
    ("nmsnn/core/backends/numba_cpu.py", "_build_backward"),
    ("nmsnn/core/backends/numba_cpu.py", "backward"),
}


def test_no_function_is_longer_than_sixty_lines():
    long = []
    for path in ROOT.rglob("*.py"):
        name = str(path.relative_to(ROOT.parent))
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > 60 and (name, node.name) not in COMPILED_KERNELS:
                    long.append(f"{name}:{node.lineno} {node.name} ({lines} lines)")
    assert not long, long
