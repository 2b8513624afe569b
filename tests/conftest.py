"""Shared fixtures: composing configs, the fixture CSVs, and running console scripts."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from nmsnn.threads import set_wait_policy

# what nmsnn's commands do before torch is imported: the tests (in this process and the commands
# they start) run under the same wait policy as users' runs
set_wait_policy()

import pytest  # noqa: E402
from hydra import compose, initialize_config_module  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

FIXTURES = Path(__file__).parent / "fixtures"
QUIET = [
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
]


@pytest.fixture
def fixtures() -> Path:
    return FIXTURES


def compose_train(output_dir: Path, overrides: list[str] = (), config: str = "train") -> DictConfig:
    """The composed ``train`` config with the run directory set to ``output_dir``."""
    with initialize_config_module("nmsnn.conf", version_base="1.3"):
        return compose(config, overrides=[f"paths.output_dir={output_dir}", *QUIET, *overrides])


def run_cli(command: str, *args: str, cwd: Path, env: dict | None = None, check: bool = True):
    """Run an installed console script (``nmsnn-train`` ...) from ``cwd``; return the result."""
    exe = Path(sys.executable).parent / command
    full_env = {**os.environ, "NMSNN_LOG_DIR": str(cwd / "logs"), **(env or {})}
    result = subprocess.run(
        [str(exe), *args], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=600
    )
    if check and result.returncode != 0:
        raise AssertionError(f"{command} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result
