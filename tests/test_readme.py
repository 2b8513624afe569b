"""The README opens with the two set-up commands, and CI runs the second one verbatim."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]


def setup_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    block = re.search(r"```bash\n(.*?)```", text, re.S)
    assert block and text.index(block.group(0)) < 200, "the README must open with its set-up commands"
    return [line for line in block.group(1).splitlines() if line.strip()]


def test_readme_starts_with_two_setup_commands():
    train, test = setup_commands()
    assert train.startswith("pip install") and train.endswith("nmsnn-train")
    assert test.startswith("pip install") and '".[dev]"' in test and test.endswith("pytest")


def test_ci_runs_the_readme_test_command():
    _, test = setup_commands()
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert test in ci


def test_every_package_is_installed():
    """A plain ``pip install .`` ships exactly the packages listed in pyproject.toml (nmsnn's, and
    its Hydra launcher in the ``hydra_plugins`` namespace)."""
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {
        ".".join(p.parent.relative_to(ROOT).parts)
        for top in ("nmsnn", "hydra_plugins")
        for p in (ROOT / top).rglob("__init__.py")
    } | {"nmsnn.conf"}
    assert found == listed


def test_readme_python_api_is_the_notebooks_first_cell():
    import json

    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Python API") :]
    block = re.search(r"```python\n(.*?)```", section, re.S).group(1).strip()
    notebook = json.loads((ROOT / "notebooks" / "quickstart.ipynb").read_text())
    first = next(c for c in notebook["cells"] if c["cell_type"] == "code")
    assert "".join(first["source"]).strip() == block
    assert len(block.splitlines()) == 5
