"""Hydra multirun support: per-job status records and the sweep summary table.

In a multirun, each ``nmsnn-train`` job writes ``job_status.json`` (status, seconds, error) next
to its ``metrics.json``. A job that fails is recorded as failed and returns ``None`` to the
sweeper (Optuna marks the trial failed), so the other jobs go on. When the sweep ends,
:class:`SweepSummary` (a Hydra callback) collects every job directory into ``summary.csv`` and
``summary.md`` in the sweep directory.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import os
import re
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
from omegaconf import DictConfig, OmegaConf

from nmsnn.errors import user_error
from nmsnn.files import write_atomic, write_csv, write_text
from nmsnn.threads import usable_cores

log = logging.getLogger(__name__)

STATUS_FILE = "job_status.json"


GPU_ACCELERATORS = ("gpu", "cuda")


def slurm_gpus(accelerator: str, devices: Any) -> Any:
    """``gpus_per_node`` of the SLURM launcher: the trainer's devices when it trains on GPUs
    (``trainer.accelerator`` gpu or cuda), else none, so that a CPU-only partition, which refuses
    any GPU request, takes the job as it is (``auto`` requests none: set the accelerator on a GPU
    partition)."""
    return devices if str(accelerator).lower() in GPU_ACCELERATORS else None


OmegaConf.register_new_resolver("nmsnn.slurm_gpus", slurm_gpus, replace=True)


def _sacct_works() -> tuple[bool, str]:
    """Whether ``sacct`` answers here, and its error when it does not (e.g. "Slurm accounting
    storage is disabled" on a cluster without job accounting)."""
    import subprocess

    try:
        done = subprocess.run(["sacct", "-n", "-X", "-j", "1"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as err:
        return False, str(err)
    return done.returncode == 0, (done.stderr or done.stdout).strip()


def quiet_cluster_polling() -> None:
    """Poll a Slurm cluster without accounting quietly (``nmsnn-train`` only).

    submitit reads job states with ``sacct``; where that fails, every poll printed sacct's error
    and a "Bypassing sacct error" warning, several times per job. Here sacct is asked once, when a
    sweep first polls: if it fails, one line says so and submitit stops calling it (it then
    follows each job through its result file, as it did after every failed call). submitit's own
    log handlers are dropped, so its lines reach the console and log once, through Hydra's."""
    logging.getLogger("submitit").handlers.clear()
    try:
        from submitit.slurm.slurm import SlurmInfoWatcher
    except ImportError:  # the sweeps extra is not installed
        return
    make_command = SlurmInfoWatcher._make_command
    if getattr(make_command, "nmsnn_quiet", False):
        return
    answer: dict[str, bool] = {}

    def command(self: Any) -> list[str] | None:
        if "works" not in answer:
            answer["works"], error = _sacct_works()
            if not answer["works"]:
                log.info(
                    "sacct does not answer here (%s): job states come from the jobs' result files",
                    error or "no message",
                )
        return make_command(self) if answer["works"] else None

    command.nmsnn_quiet = True  # type: ignore[attr-defined]
    SlurmInfoWatcher._make_command = command  # type: ignore[method-assign]


def register_population_launcher() -> None:
    """Register ``hydra/launcher=population`` with Hydra's plugin registry.

    Hydra finds launchers by scanning the ``hydra_plugins`` namespace package, which does not see
    a package installed in editable mode (``pip install -e .``); registering the class directly
    works for every kind of install.
    """
    from hydra.core.plugins import Plugins

    from hydra_plugins.nmsnn_population_launcher.population_launcher import PopulationLauncher

    Plugins.instance().register(PopulationLauncher)


# jobs composed by the sweeper's check (Sweeper.validate_batch_is_legal), kept for the launcher
_COMPOSED: dict[tuple[int, tuple[str, ...]], DictConfig] = {}
_COMPOSED_MAX = 256


def compose_each_job_once() -> None:
    """Let a sweep compose each job's configuration once instead of twice.

    Hydra's sweepers compose every job of a batch to check it, then the launcher composes it
    again to run it; the two results are equal. This keeps the first composition of each job
    and hands that object to the second request for the same overrides (once: a third request
    composes again), which saves a few hundred milliseconds per job for every launcher that
    composes in this process (basic, joblib, population, submitit)."""
    from hydra._internal.config_loader_impl import ConfigLoaderImpl

    compose = ConfigLoaderImpl.load_sweep_config
    if getattr(compose, "nmsnn_once", False):
        return

    def load_sweep_config(self: Any, master_config: DictConfig, sweep_overrides: list[str]) -> DictConfig:
        key = (id(master_config), tuple(sweep_overrides))
        if key in _COMPOSED:
            return _COMPOSED.pop(key)
        config = compose(self, master_config, sweep_overrides)
        if len(_COMPOSED) >= _COMPOSED_MAX:  # bounded: a sweeper that never asks twice (Optuna)
            _COMPOSED.pop(next(iter(_COMPOSED)))
        _COMPOSED[key] = config
        return copy.deepcopy(config)

    load_sweep_config.nmsnn_once = True  # type: ignore[attr-defined]
    ConfigLoaderImpl.load_sweep_config = load_sweep_config  # type: ignore[method-assign]


def in_multirun() -> bool:
    """True inside a job of a Hydra multirun."""
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def parallel_jobs() -> int:
    """How many jobs of this multirun run at once on this machine (1 outside a multirun, or for
    launchers that run one job at a time or each on its own node): joblib's ``n_jobs``; for
    local submitit jobs, as many as the cores hold at their ``cpus_per_task`` each."""
    if not in_multirun():
        return 1
    launcher = HydraConfig.get().launcher
    target = str(launcher.get("_target_", ""))
    if "joblib" in target:
        n_jobs = int(launcher.get("n_jobs") or 1)
        return os.cpu_count() or 1 if n_jobs < 0 else n_jobs
    if target.endswith("submitit_launcher.LocalLauncher"):
        # local submitit jobs all run at once and see every core: each gets its cpus_per_task
        return max(1, usable_cores() // max(1, int(launcher.get("cpus_per_task") or 1)))
    return 1


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


LOWER_IS_BETTER = ("loss", "rmse", "mae", "mse", "seconds")


def metric_direction(metric: str, config: DictConfig | None = None) -> str:
    """``min`` or ``max`` for the sweep's optimized metric: the Optuna sweeper's direction, the
    monitor's mode when it is the monitored metric, else by the metric's name."""
    if config is not None:
        direction = str(config.hydra.get("sweeper", {}).get("direction", "") or "")
        if direction in ("minimize", "maximize"):
            return direction[:3]
        if metric == config.get("monitor") and config.get("monitor_mode") in ("min", "max"):
            return str(config.monitor_mode)
    return "min" if any(word in metric.rsplit("/", 1)[-1] for word in LOWER_IS_BETTER) else "max"


def varying_overrides(frame: pd.DataFrame) -> pd.DataFrame:
    """One column per override key whose value differs between jobs (the common ones dropped)."""
    split = [
        dict(item.split("=", 1) for item in text.split() if "=" in item)
        for text in frame["overrides"].fillna("")
    ]
    table = pd.DataFrame(split, index=frame.index)
    return table[[c for c in table.columns if table[c].nunique(dropna=False) > 1]]


def rank_jobs(frame: pd.DataFrame, metric: str | None, direction: str) -> pd.DataFrame:
    """The jobs best first by ``metric`` (finished ones first, failed and unfinished last), with
    ``rank`` (1 = best) and ``best`` (True for the one best job)."""
    frame = frame.copy()
    ok = frame["status"] == "ok"
    if metric and metric in frame.columns:
        score = frame[metric].where(ok)
        order = score.sort_values(ascending=direction == "min", na_position="last").index
        frame = frame.loc[order]
    else:
        frame = frame.sort_values("job", key=lambda job: job + (~ok).astype(int) * 10**9)
    frame.insert(0, "rank", range(1, len(frame) + 1))
    found = metric in frame.columns and frame[metric].where(frame["status"] == "ok").notna().any()
    frame.insert(1, "best", [found and i == 0 for i in range(len(frame))])
    return frame


PICK_RULES = ("one_se", "best")


def pick_job(
    frame: pd.DataFrame, metric: str | None, direction: str, rule: str = "one_se"
) -> tuple[pd.DataFrame, str | None]:
    """Mark the job a sweep recommends in a ``pick`` column of the ranked ``frame``; return it
    and one sentence saying which job that is and why (``None`` when no job has a score).

    ``best``: the best job by ``metric``. ``one_se`` (the one-standard-error rule): the sweep's
    first finished job, its anchor (list each swept value's default first, and the anchor is the
    untuned run), unless the best job beats it by more than the best job's standard error
    (``<metric>_se``, e.g. ``val/loss_se``); else the best. On a small validation split most
    differences between jobs are noise, and the best of many noisy scores flatters its job; the
    rule moves off the default only on evidence. Without a ``<metric>_se`` column: the best.
    """
    if rule not in PICK_RULES:
        raise ValueError(f"sweep_pick={rule!r} must be one of {', '.join(PICK_RULES)}.")
    frame = frame.copy()
    frame["pick"] = frame["best"]
    if not frame["best"].any():
        return frame, None
    best, error = frame.iloc[0], f"{metric}_se"
    if rule == "best" or error not in frame.columns:
        return frame, f"Pick: the best job, {best['job']}."
    label = "Pick (one-standard-error rule)"
    finished = frame[(frame["status"] == "ok") & frame[metric].notna()]
    anchor, margin = finished.loc[finished["job"].idxmin()], float(best[error])
    if anchor.name == best.name:
        return frame, f"{label}: the best job, {best['job']}, which is also the first job."
    if not math.isfinite(margin):
        return frame, f"{label}: the best job, {best['job']} (no {error} to weigh the difference by)."
    gain = (anchor[metric] - best[metric]) if direction == "min" else (best[metric] - anchor[metric])
    if gain > margin:
        return frame, (
            f"{label}: the best job, {best['job']}: it beats the first job by more than its "
            f"standard error ({margin:.4g})."
        )
    frame["pick"] = frame.index == anchor.name
    return frame, (
        f"{label}: job {anchor['job']}, the first job: its {metric} {anchor[metric]:.4g} is within "
        f"the best job's standard error ({margin:.4g}) of the best's {best[metric]:.4g}, a "
        "difference this validation split cannot tell from noise."
    )


def summary_view(frame: pd.DataFrame, metric: str | None, rows: int | None = None) -> pd.DataFrame:
    """What the Markdown summary and the console show: rank, job, status, the varying overrides,
    the optimized metric, the other non-spike metrics, seconds, error; floats to 4 digits."""
    # a sampled value (Optuna's 0.7118273996694524) to 4 digits too; the CSV keeps it whole
    varying = varying_overrides(frame).map(
        lambda v: (
            f"{float(v):.4g}"
            if isinstance(v, str) and re.fullmatch(r"[-+]?\d*\.\d{5,}(e[-+]?\d+)?", v)
            else v
        )
    )
    firsts = [metric] if metric in frame.columns else []
    metrics = [
        c
        for c in frame.columns
        if c.startswith(("val/", "test/")) and "/spikes/" not in c and c not in firsts
    ]
    metrics = [c for c in metrics if "synops" not in c and "macs" not in c]
    view = pd.concat(
        [frame[["rank", "job", "status"]], varying, frame[[*firsts, *metrics, "seconds"]]], axis=1
    )
    if frame["error"].notna().any():
        view["error"] = frame["error"]
    view["rank"] = [
        str(r) + (" (best)" if b else "") + (" (pick)" if p and not b else "")
        for r, b, p in zip(frame["rank"], frame["best"], frame["pick"], strict=True)
    ]
    view = view.head(rows) if rows else view
    return view.map(lambda v: float(f"{v:.4g}") if isinstance(v, float) else v)


def sweep_figure(frame: pd.DataFrame, metric: str, path: Path) -> Path | None:
    """``sweep.png``: the optimized metric against each varying numeric override (one panel
    each, finished jobs only); ``None`` when nothing numeric varies."""
    varying = varying_overrides(frame)
    numeric = {c: pd.to_numeric(varying[c], errors="coerce") for c in varying.columns}
    numeric = {c: v for c, v in numeric.items() if v.notna().all()}
    ok = (frame["status"] == "ok") & frame.get(metric, pd.Series(dtype=float)).notna()
    if not numeric or metric not in frame.columns or not ok.any():
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(numeric), figsize=(3.6 * len(numeric), 3.2), squeeze=False)
    for ax, (key, values) in zip(axes[0], numeric.items(), strict=True):
        ax.scatter(values[ok], frame.loc[ok, metric], s=18)
        ax.set_xlabel(key.rsplit(".", 1)[-1] if len(key) > 24 else key)
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    write_atomic(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110), True)
    plt.close(fig)
    return path


def write_summary(
    sweep_dir: Path, metric: str | None = None, direction: str = "min", rule: str = "one_se"
) -> tuple[pd.DataFrame, str | None]:
    """Write ``summary.csv`` (every column, full precision, best job first, the ``pick`` of
    ``rule`` marked: :func:`pick_job`), ``summary.md`` (the readable view) and ``sweep.png`` for
    the sweep in ``sweep_dir``; return the ranked jobs and the sentence on the pick."""
    frame = collect(sweep_dir)
    if frame.empty:
        return frame, None
    frame, note = pick_job(rank_jobs(frame, metric, direction), metric, direction, rule)
    write_csv(frame, sweep_dir / "summary.csv", True)
    failed = int((frame["status"] != "ok").sum())
    head = [f"# Sweep {sweep_dir.name}", ""]
    head.append(f"{len(frame)} jobs, {len(frame) - failed} ok, {failed} failed or unfinished.")
    if frame["best"].any():
        best = frame.iloc[0]
        varying = varying_overrides(frame).loc[best.name]
        chosen = " ".join(f"{k}={v}" for k, v in varying.items()) or best["overrides"]
        head.append(
            f"Best ({'lowest' if direction == 'min' else 'highest'} `{metric}`): job {best['job']}, "
            f"`{chosen}`, {metric} = {best[metric]:.6g}."
        )
        head.append(str(note))
    figure = sweep_figure(frame, metric, sweep_dir / "sweep.png") if metric else None
    lines = [
        *head,
        "",
        markdown_table(summary_view(frame, metric)),
        "",
        "Only the overrides that differ between jobs are shown; every column (spike statistics "
        "included, at full precision) is in `summary.csv`."
        + (" `sweep.png`: the metric against each swept value." if figure else ""),
        "",
    ]
    write_text("\n".join(lines), sweep_dir / "summary.md", True)
    return frame, note


class SweepSummary(Callback):
    """Hydra callback: write the sweep summary table when a multirun ends (and, as it starts,
    send an Optuna sweeper's log lines through the same handlers as every other line)."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        if "optuna" in str(config.hydra.sweeper.get("_target_", "")):
            import optuna

            # Optuna's own handler colours its lines (escape codes in piped output and log files)
            optuna.logging.disable_default_handler()
            optuna.logging.enable_propagation()

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        if not sweep_dir.is_dir():
            return
        metric = config.get("optimized_metric")
        direction = metric_direction(metric, config) if metric else "min"
        frame, note = write_summary(sweep_dir, metric, direction, str(config.get("sweep_pick", "one_se")))
        if frame.empty:
            return
        failed = frame[frame["status"] != "ok"]
        view = summary_view(frame, metric, rows=10)
        keep = [  # narrow enough for a console
            c for c in view.columns if (not c.startswith("val/") or c == metric) and not c.endswith("_se")
        ]
        more = f" (best 10 of {len(frame)})" if len(frame) > 10 else ""
        print(f"\nsweep {sweep_dir}{more}:\n{markdown_table(view[keep])}\n")
        if note:
            print(note + "\n")
        log.info("sweep summary: %s (%d jobs)", sweep_dir / "summary.md", len(frame))
        if len(failed):
            log.warning("%d of %d jobs failed: %s", len(failed), len(frame), failed["job"].tolist())
