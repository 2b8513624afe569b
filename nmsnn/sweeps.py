"""Hydra multirun support: per-job status records and the sweep summary table.

In a multirun, each ``nmsnn-train`` job writes ``job_status.json`` (status, seconds, error) next
to its ``metrics.json``. A job that fails is recorded as failed and returns ``None`` to the
sweeper (Optuna marks the trial failed), so the other jobs go on. When the sweep ends,
:class:`SweepSummary` (a Hydra callback) collects every job directory into ``summary.csv`` and
``summary.md`` in the sweep directory.
"""

from __future__ import annotations

import json
import logging
import math
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import yaml
from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig

from nmsnn.errors import user_error
from nmsnn.predicting import write_csv, write_text

log = logging.getLogger(__name__)

STATUS_FILE = "job_status.json"


def register_population_launcher() -> None:
    """Register ``hydra/launcher=population`` with Hydra's plugin registry.

    Hydra finds launchers by scanning the ``hydra_plugins`` namespace package, which does not see
    a package installed in editable mode (``pip install -e .``); registering the class directly
    works for every kind of install.
    """
    from hydra.core.plugins import Plugins

    from hydra_plugins.nmsnn_population_launcher.population_launcher import PopulationLauncher

    Plugins.instance().register(PopulationLauncher)


def in_multirun() -> bool:
    """True inside a job of a Hydra multirun."""
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def run_job(
    task: Callable[[DictConfig], dict[str, float]],
    cfg: DictConfig,
    out_dir: Path,
    extra: dict[str, Any] | None = None,
    shared_seconds: float = 0.0,
) -> float | None:
    """Run one sweep job, record its status (with ``extra``), and return ``optimized_metric``, or
    ``None`` when the job failed or the metric is not a finite number: the Optuna sweeper records
    such a trial as failed and goes on (a NaN would stop the whole search). ``shared_seconds``:
    this job's share of work done for several jobs at once (a population's training), added to its
    own time."""
    start = time.perf_counter()
    record: dict[str, Any] = {"status": "ok", "error": None}
    value = math.nan
    try:
        metrics = task(cfg)
        value = metrics.get(cfg.get("optimized_metric"), math.nan)
    except Exception as err:  # one failing job must not end the sweep
        cause = user_error(err)
        record = {"status": "failed", "error": f"{type(cause or err).__name__}: {cause or err}"}
        if cause is not None:  # a bad value or input: its message says it all
            log.error("job failed: %s", record["error"])
        else:
            log.error("job failed: %s\n%s", record["error"], traceback.format_exc())
    record["seconds"] = round(time.perf_counter() - start + shared_seconds, 3)
    record.update(extra or {})
    out_dir.mkdir(parents=True, exist_ok=True)
    write_text(json.dumps(record, indent=2), out_dir / STATUS_FILE, True)
    return value if math.isfinite(value) else None


def collect(sweep_dir: Path) -> pd.DataFrame:
    """One row per job directory: job number, status, overrides, seconds, metrics, error."""
    rows = []
    for job_dir in sorted(
        (p for p in sweep_dir.iterdir() if p.is_dir() and p.name.isdigit()), key=lambda p: int(p.name)
    ):
        overrides_file = job_dir / ".hydra" / "overrides.yaml"
        overrides = yaml.safe_load(overrides_file.read_text()) if overrides_file.exists() else []
        status_file = job_dir / STATUS_FILE
        status = json.loads(status_file.read_text()) if status_file.exists() else {"status": "unfinished"}
        metrics_file = job_dir / "metrics.json"
        metrics = json.loads(metrics_file.read_text())["metrics"] if metrics_file.exists() else {}
        rows.append(
            {
                "job": int(job_dir.name),
                "status": status.get("status"),
                "overrides": " ".join(overrides or []),
                "seconds": status.get("seconds"),
                **metrics,
                "error": status.get("error"),
            }
        )
    return pd.DataFrame(rows)


def markdown_table(frame: pd.DataFrame) -> str:
    """A GitHub Markdown table of ``frame`` (numbers with 6 significant digits)."""

    def cell(value: Any) -> str:
        if isinstance(value, float):
            return "" if math.isnan(value) else f"{value:.6g}"
        return "" if value is None else str(value).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(frame.columns) + " |", "|" + " --- |" * len(frame.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines)


def write_summary(sweep_dir: Path) -> pd.DataFrame:
    """Write ``summary.csv`` and ``summary.md`` for the sweep in ``sweep_dir``."""
    frame = collect(sweep_dir)
    if frame.empty:
        return frame
    write_csv(frame, sweep_dir / "summary.csv", True)
    failed = int((frame["status"] != "ok").sum())
    short = frame[[c for c in frame.columns if "/spikes/" not in c]]
    text = "\n".join(
        [
            f"# Sweep {sweep_dir.name}",
            "",
            f"{len(frame)} jobs, {len(frame) - failed} ok, {failed} failed or unfinished. Every column "
            "(spike statistics included) is in `summary.csv`.",
            "",
            markdown_table(short),
            "",
        ]
    )
    write_text(text, sweep_dir / "summary.md", True)
    return frame


class SweepSummary(Callback):
    """Hydra callback: write the sweep summary table when a multirun ends."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        if not sweep_dir.is_dir():
            return
        frame = write_summary(sweep_dir)
        if frame.empty:
            return
        failed = frame[frame["status"] != "ok"]
        log.info("sweep summary: %s (%d jobs)", sweep_dir / "summary.md", len(frame))
        if len(failed):
            log.warning("%d of %d jobs failed: %s", len(failed), len(frame), failed["job"].tolist())
