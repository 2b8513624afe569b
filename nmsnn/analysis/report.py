"""What ``nmsnn-train`` leaves in its run directory after testing.

* ``plots/*.png``: evaluation plots (also logged to TensorBoard under ``test/plots/``);
* ``metrics.json``: every validation and test metric, spike statistics and energy estimate;
* ``summary.md``: the same in a short human-readable page, with where things are;
* TensorBoard's HPARAMS tab: the run's hyperparameters beside its final metrics.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import pandas as pd
from lightning.pytorch.loggers import TensorBoardLogger

from nmsnn.analysis.plots import classification_figures, regression_figures, save_figures
from nmsnn.data.preprocessing import TabularPreprocessor
from nmsnn.files import write_text

HPARAMS_PREFIXES = ("val/", "test/")


def evaluation_plots(
    preprocessor: TabularPreprocessor, rows: pd.DataFrame, predictions: pd.DataFrame, directory: Path
) -> tuple[dict[str, Path], dict[str, Any]]:
    """Figures for the test rows (by task), saved as PNG: their paths and the figures."""
    y = rows[preprocessor.target]
    if preprocessor.task == "classification":
        proba = predictions[[f"proba_{c}" for c in preprocessor.classes]].to_numpy()
        figures = classification_figures(preprocessor.transform_target(y), proba, preprocessor.classes)
    else:
        figures = regression_figures(preprocessor.target_numbers(y), predictions["prediction"].to_numpy())
    names = list(figures)
    return dict(zip(names, save_figures(figures, directory), strict=True)), figures


def log_figures(trainer: L.Trainer, plots: dict[str, Path], step: int) -> None:
    """Log the saved plot images to TensorBoard under ``test/plots/<name>`` (the PNG files are
    read back: drawing the figures a second time would cost as much as saving them)."""
    loggers = [logger for logger in trainer.loggers if isinstance(logger, TensorBoardLogger)]
    if not loggers:
        return
    from matplotlib.image import imread

    images = {name: imread(path)[..., :3] for name, path in plots.items()}
    for logger in loggers:
        for name, image in images.items():
            logger.experiment.add_image(f"test/plots/{name}", image, step, dataformats="HWC")


def log_hparams_with_metrics(trainer: L.Trainer, params: dict[str, Any], metrics: dict[str, float]) -> None:
    """Write the HPARAMS-tab summary: hyperparameters beside the final metrics.

    The metrics are written under ``hparams/<metric>`` (e.g. ``hparams/test/acc``) so that they do
    not add a step-0 point to the training curves of the same name.
    """
    final = {
        f"hparams/{k}": v for k, v in metrics.items() if k.startswith(HPARAMS_PREFIXES) and np.isfinite(v)
    }
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            logger.log_hyperparams(params, metrics=final)


def write_summary(
    out_dir: Path,
    metrics: dict[str, float],
    checkpoint: str | None,
    plots: dict[str, Path],
    extra: dict[str, Any] | None = None,
) -> None:
    """``metrics.json`` and ``summary.md`` in ``out_dir`` (written atomically)."""
    summary = {
        "metrics": metrics,
        "checkpoint": checkpoint,
        "run_dir": str(out_dir),
        "plots": {k: str(v) for k, v in plots.items()},
        **(extra or {}),
    }
    write_text(json.dumps(summary, indent=2), out_dir / "metrics.json", True)
    write_text(summary_markdown(summary), out_dir / "summary.md", True)


def summary_markdown(summary: dict[str, Any]) -> str:
    metrics = summary["metrics"]

    def table(keys: list[str]) -> list[str]:
        return ["| metric | value |", "| --- | --- |", *(f"| `{k}` | {metrics[k]:.6g} |" for k in keys)]

    groups = {
        "Test metrics": [
            k
            for k in metrics
            if k.startswith("test/") and "/spikes/" not in k and "synops" not in k and "macs" not in k
        ],
        "Validation metrics": [k for k in metrics if k.startswith("val/") and "/spikes/" not in k],
        "Spike statistics (test set)": [k for k in metrics if k.startswith("test/spikes/")],
        "Energy estimate (per row, test set)": [k for k in metrics if "synops" in k or "macs" in k],
    }
    lines = [f"# nmsnn run {Path(summary['run_dir']).name}", ""]
    for title, keys in groups.items():
        if keys:
            lines += [f"## {title}", "", *table(sorted(keys)), ""]
    lines += ["## Files", "", f"- checkpoint: `{summary['checkpoint']}`"]
    lines += [f"- plot `{name}`: `{path}`" for name, path in summary["plots"].items()]
    run_dir = Path(summary["run_dir"])
    if (run_dir / "tensorboard").is_dir():
        lines += [f"- TensorBoard: `tensorboard --logdir {run_dir}`"]
    lines += [f"- CSV log: `{path}`" for path in sorted(run_dir.glob("csv/**/metrics.csv"))]
    return "\n".join([*lines, ""])
