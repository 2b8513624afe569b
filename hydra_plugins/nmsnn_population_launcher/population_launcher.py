"""Hydra discovers launchers in the ``hydra_plugins`` namespace; the work is in
:mod:`nmsnn.population.launcher` (imported only when this launcher is used)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from hydra.core.utils import JobReturn
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig


class PopulationLauncher(Launcher):
    """Train a sweep's jobs as populations of at most ``max_members`` (see nmsnn's README)."""

    def __init__(self, max_members: int = 16, **_: Any) -> None:
        from nmsnn.population.launcher import PopulationLaunch

        self.work = PopulationLaunch(max_members=max_members)

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.work.setup(hydra_context=hydra_context, task_function=task_function, config=config)

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        return self.work.launch(job_overrides, initial_job_idx)
