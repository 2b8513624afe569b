"""A 16-configuration sweep (4 decays x 4 thresholds) with the basic and the population launcher.

Runs the same ``nmsnn-train --multirun`` command twice on the bundled default (breast cancer,
the default model and trainer, early stopping on), once with Hydra's basic launcher (one job after
another) and once with ``hydra/launcher=population``, times each whole command (wall clock, from
process start to exit), and compares the two sweep summaries column by column.

    python experiments/population_sweep.py [--device cpu] [--out experiments/results]

Writes ``population_sweep_<device>.md`` and ``.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from environment import cpu_name, now

from nmsnn.files import write_text
from nmsnn.sweeps import markdown_table

GRID = ["model.neuron.decay=0.7,0.8,0.9,0.95", "model.neuron.threshold=0.5,0.75,1.0,1.5"]
COMMON = ["trainer.enable_progress_bar=false", "trainer.enable_model_summary=false"]


def run_sweep(
    launcher: list[str], device: str, workdir: Path, threads: int | None
) -> tuple[float, pd.DataFrame, str, float]:
    """Run the sweep; return its wall time, summary, command and the populations' training time."""
    workdir.mkdir(parents=True)
    accelerator = ["trainer.accelerator=gpu"] if device == "cuda" else ["trainer.accelerator=cpu"]
    command = ["nmsnn-train", "--multirun", *launcher, *GRID, *COMMON, *accelerator]
    exe = Path(sys.executable).parent / "nmsnn-train"
    launch = [str(exe)] if exe.exists() else [sys.executable, "-m", "nmsnn.cli.train"]  # not installed
    env = {**os.environ, "NMSNN_LOG_DIR": str(workdir / "logs")}
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    start = time.perf_counter()
    proc = subprocess.run([*launch, *command[1:]], cwd=workdir, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{proc.stderr[-3000:]}")
    (sweep,) = (workdir / "logs" / "train" / "multiruns").iterdir()
    return seconds, pd.read_csv(sweep / "summary.csv").set_index("job"), " ".join(command), training(sweep)


def training(sweep: Path) -> float:
    """The training time of the sweep's populations (each recorded in its members' job status)."""
    populations = {}
    for status_file in sweep.glob("*/job_status.json"):
        population = json.loads(status_file.read_text()).get("population")
        if population:
            populations[population["first_job"]] = population["training_seconds"]
    return sum(populations.values())


def phases(wall: float, summary: pd.DataFrame, trained: float) -> dict[str, float]:
    """Where a sweep's wall time went: the jobs' own time (the summary's ``seconds``: set-up, fit
    and report; for a population, the shares of its training), of which the populations'
    training, and the rest (process start, imports, Hydra's composition of every job, its job
    machinery and the sweep summary)."""
    jobs = float(summary["seconds"].sum())
    return {
        "wall": round(wall, 2),
        "jobs": round(jobs, 2),
        "population_training": round(trained, 2),
        "jobs_without_population_training": round(jobs - trained, 2),
        "outside_jobs": round(wall - jobs, 2),
    }


def compare(basic: pd.DataFrame, population: pd.DataFrame) -> dict[str, float]:
    """Largest absolute difference per metric column (NaN-safe), and the columns' equality."""
    columns = [c for c in basic.columns if c.startswith(("val/", "test/")) or c == "epochs"]
    diffs = {c: float((population[c] - basic[c]).abs().max()) for c in columns}
    return {"same_columns": list(basic.columns) == list(population.columns), "max_abs_diff": diffs}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads for both sweeps (OMP_NUM_THREADS; 0: torch's default)",
    )
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="nmsnn-population-"))
    try:
        load_before = os.getloadavg()
        basic_s, basic, basic_cmd, _ = run_sweep([], args.device, work / "basic", args.threads)
        pop_s, population, pop_cmd, trained = run_sweep(
            ["hydra/launcher=population"], args.device, work / "population", args.threads
        )
        load_after = os.getloadavg()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    check = compare(basic, population)
    worst = max(check["max_abs_diff"].values())
    split = {"basic": phases(basic_s, basic, 0.0), "population": phases(pop_s, population, trained)}
    # the speed-up if the population's training took no time at all: what the rest allows
    ceiling = basic_s / (pop_s - trained)
    record = {
        "device": args.device,
        "cpu": cpu_name(),
        "gpu": torch.cuda.get_device_name(0) if args.device == "cuda" else None,
        "torch": torch.__version__,
        "date": now(),
        "basic_seconds": round(basic_s, 2),
        "population_seconds": round(pop_s, 2),
        "speedup": round(basic_s / pop_s, 2),
        "threads": args.threads or "torch default",
        "load_average_before_after": [round(load_before[0], 2), round(load_after[0], 2)],
        "jobs": len(basic),
        "basic_command": basic_cmd,
        "population_command": pop_cmd,
        "same_summary_columns": check["same_columns"],
        "max_abs_metric_diff": worst,
        "max_abs_diff_per_metric": check["max_abs_diff"],
        "epochs": population["epochs"].tolist(),
        "phases_seconds": split,
        "speedup_if_training_were_free": round(ceiling, 2),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / f"population_sweep_{args.device}"
    write_text(json.dumps(record, indent=1) + "\n", stem.with_suffix(".json"), True)
    shown = ["overrides", "epochs", "val/loss", "test/acc", "test/auroc"]
    table = population[shown].copy()
    table["overrides"] = table["overrides"].str.replace(" trainer.*", "", regex=True)
    for column in shown[1:]:
        table[f"{column} (basic)"] = basic[column]
    lines = [
        f"# Population sweep vs one job after another ({args.device})",
        "",
        f"Produced by `python experiments/population_sweep.py --device {args.device}` on {record['date']}: "
        f"{record['cpu']}{', ' + record['gpu'] if record['gpu'] else ''}, torch {record['torch']}, "
        f"torch threads: {record['threads']} (`OMP_NUM_THREADS`, the same for both sweeps). "
        f"1-minute load average before / after: {load_before[0]:.2f} / {load_after[0]:.2f} "
        f"({os.cpu_count()} cores).",
        "",
        "| launcher | command | wall time (s) |",
        "| --- | --- | ---: |",
        f"| basic | `{basic_cmd}` | {basic_s:.1f} |",
        f"| population | `{pop_cmd}` | {pop_s:.1f} |",
        "",
        f"**Speed-up: {basic_s / pop_s:.2f}x** for {len(basic)} jobs (whole commands, start to exit, "
        "measured in one run of this script).",
        "",
        "Where the time went (s; a job's `seconds` in the summary covers its set-up, training and "
        "report, and in a population its share of the members' joint training):",
        "",
        "| | basic | population |",
        "| --- | ---: | ---: |",
        *(
            f"| {label} | {split['basic'][key]:.1f} | {split['population'][key]:.1f} |"
            for label, key in (
                ("whole command", "wall"),
                ("jobs (sum of the summary's `seconds`)", "jobs"),
                ("of which: the population's training", "population_training"),
                (
                    "of which: each job's own work (basic: set-up, fit, report; population: set-up, report)",
                    "jobs_without_population_training",
                ),
                (
                    "outside the jobs: process start, imports, Hydra composing every job, summary",
                    "outside_jobs",
                ),
            )
        ),
        "",
        f"If the population's training took no time at all, the speed-up would be "
        f"{ceiling:.2f}x: the rest of the population sweep (each job's set-up and report, which both "
        "launchers do, and the start-up) bounds it.",
        "",
        f"Same summary columns: {check['same_columns']}. Largest difference of any metric between "
        f"the two summaries: {worst:.3g} (every column: `{stem.name}.json`).",
        "",
        markdown_table(table.reset_index()),
        "",
    ]
    write_text("\n".join(lines), stem.with_suffix(".md"), True)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
