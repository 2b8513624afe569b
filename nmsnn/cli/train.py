"""``nmsnn-train``: fit a spiking model, test its best checkpoint, report and save everything.

The run itself is :func:`nmsnn.pipeline.train`; this entry point composes the configuration and
imports the pipeline (torch, Lightning) only once it is valid, so ``--help`` and configuration
errors answer at once. Returns ``optimized_metric`` for Hydra sweepers.
"""

from __future__ import annotations

from pathlib import Path

import hydra
from omegaconf import DictConfig

from nmsnn.cli.common import CONFIG_PATH, entry_point, failure_marker, user_errors
from nmsnn.console import tidy_third_party_output
from nmsnn.sweeps import (
    compose_each_job_once,
    in_multirun,
    quiet_cluster_polling,
    register_population_launcher,
)

register_population_launcher()
compose_each_job_once()
quiet_cluster_polling()


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="train")
def run(cfg: DictConfig) -> float | None:
    from nmsnn.pipeline import train

    tidy_third_party_output()
    if in_multirun():  # a failing job is recorded, and the sweep goes on
        from nmsnn.sweeps import run_job

        return run_job(train, cfg, Path(cfg.paths.output_dir))
    with user_errors(), failure_marker(Path(cfg.paths.output_dir)):
        return train(cfg).get(cfg.get("optimized_metric"))
    return None


def main() -> None:
    entry_point(run)


if __name__ == "__main__":
    main()
