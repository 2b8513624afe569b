"""A table of every run under a directory: single runs, sweep jobs, failed and unfinished ones."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import yaml

from nmsnn.files import FAILED_FILE
from nmsnn.sweeps import STATUS_FILE, metric_direction, varying_overrides


def run_dirs(root: Path) -> list[Path]:
    """Every run directory under ``root`` (``root`` itself included): those with a ``.hydra``
    folder, a ``metrics.json``, a ``FAILED`` marker or a sweep job's status file."""
    marks = (".hydra", "metrics.json", FAILED_FILE, STATUS_FILE)
    found = {p.parent for mark in marks for p in root.rglob(mark)}
    found |= {root} if any((root / m).exists() for m in marks) else set()
    # a sweep directory has a .hydra-less multirun.yaml; its jobs are the runs
    return sorted(p for p in found if not (p / "multirun.yaml").exists())


def run_record(run_dir: Path, root: Path) -> dict:
    """One row: where, status, overrides, epochs, seconds, metrics (no spike statistics), error."""
    metrics_file, failed, status_file = run_dir / "metrics.json", run_dir / FAILED_FILE, run_dir / STATUS_FILE
    summary = json.loads(metrics_file.read_text()) if metrics_file.exists() else {}
    job = json.loads(status_file.read_text()) if status_file.exists() else {}
    if failed.exists() or job.get("status") == "failed":
        status, error = "failed", job.get("error") or failed.read_text().strip()
    else:
        status, error = ("ok" if summary else "unfinished"), None
    overrides_file = run_dir / ".hydra" / "overrides.yaml"
    overrides = yaml.safe_load(overrides_file.read_text()) if overrides_file.exists() else []
    run = summary.get("run", {})
    metrics = {
        k: v for k, v in summary.get("metrics", {}).items() if "/spikes/" not in k and "_per_" not in k
    }
    return {
        "run": str(run_dir.relative_to(root)) if run_dir != root else run_dir.name,
        "status": status,
        "overrides": " ".join(overrides or []),
        "epochs": run.get("epochs", metrics.pop("epochs", None)),
        "tested_epoch": run.get("tested_epoch"),
        "fit_seconds": run.get("fit_seconds"),
        **{k: v for k, v in metrics.items() if k != "epochs"},
        "error": error,
    }


def runs_table(root: Path, sort: str | None = "val/loss") -> pd.DataFrame:
    """Every run under ``root``, best first by ``sort`` (its direction from its name; finished runs
    before failed and unfinished ones), with the overrides that differ as columns."""
    frame = pd.DataFrame([run_record(d, root) for d in run_dirs(root)])
    if frame.empty:
        return frame
    varying = varying_overrides(frame).drop(columns=["run_name"], errors="ignore")  # the run column says it
    varying = varying.fillna("default")  # a run that did not override the key
    frame = pd.concat(
        [frame[["run", "status"]], varying, frame.drop(columns=["run", "status", "overrides"])], axis=1
    )
    if sort and sort in frame.columns:
        ascending = metric_direction(sort) == "min"
        frame = frame.sort_values(sort, ascending=ascending, na_position="last", kind="stable")
    for column in ("epochs", "tested_epoch"):  # whole numbers, blank for runs without them
        frame[column] = pd.to_numeric(frame[column]).astype("Int64")
    if frame["error"].isna().all():
        frame = frame.drop(columns="error")
    return frame.reset_index(drop=True)
