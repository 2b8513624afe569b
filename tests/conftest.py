"""Shared fixtures: composing configs, the fixture CSVs, and running console scripts."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

from nmsnn.threads import set_wait_policy

# what nmsnn's commands do before torch is imported: the tests (in this process and the commands
# they start) run under the same wait policy as users' runs
set_wait_policy()

# Triton's kernels are tested on CPU in its interpreter, a mode fixed when triton and nmsnn's
# kernels are first imported (``triton.jit`` reads TRITON_INTERPRET as it decorates them).
# Importing them here, before any test, fixes it for the whole test process (or xdist worker): a
# test that sets TRITON_INTERPRET=0 for its own check must not be the first to import them.
os.environ.setdefault("TRITON_INTERPRET", "1")
if importlib.util.find_spec("triton") is not None:
    import nmsnn.core.backends.triton_cuda  # noqa: F401

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
