"""``nmsnn-compare``: the spiking model against non-spiking baselines on one split of one dataset.

Trains the spiking model as ``nmsnn-train`` would (every train setting applies) into
``<run dir>/spiking/``, fits a same-shaped MLP, a linear model, HistGradientBoosting and XGBoost
(when installed) on the same rows, and writes ``comparison.csv``, ``comparison.md`` and
``comparison.png`` to the run directory (``logs/compare/runs/<timestamp>``).
"""

from __future__ import annotations

from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from nmsnn.cli.common import CONFIG_PATH, entry_point, user_errors
from nmsnn.console import tidy_third_party_output


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="compare")
def run(cfg: DictConfig) -> None:
    with user_errors():
        from nmsnn.sweeps import markdown_table
        from nmsnn.tools.compare import command_line, compare

        tidy_third_party_output()
        command = command_line(list(HydraConfig.get().overrides.task))
        table = compare(cfg, command)
        out_dir = Path(cfg.paths.output_dir)
        print(markdown_table(table))
        print(f"comparison: {out_dir / 'comparison.md'}")


def main() -> None:
    entry_point(run)


if __name__ == "__main__":
    main()
