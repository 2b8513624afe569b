"""End-to-end wall time of the original's binary setting on breast cancer (issue "Fast engine", item 5).

Runs, as separate processes from an empty log directory, the command of the benchmark write-up

    python -m nmsnn.cli.train model=pynmsnn_binary data=breast_cancer data.test_size=0.2 \
        data.val_size=0.0 monitor=null callbacks.early_stopping=null trainer.max_epochs=50 \
        logger=none trainer.enable_progress_bar=false model.backend=auto

for each thread setting, ``--repeats`` times with 50 epochs and with 1 epoch (the fixed cost:
imports, Hydra, set-up, first-use of numba's cached kernels, testing, writing the summary),
alternating, plus the time of ``import nmsnn.cli.train`` alone. Wall time is measured around the
process and CPU time from the children's rusage. One more 50-epoch run per setting adds
``+trainer.profiler=simple`` and reads Lightning's own per-hook timings: the share of training-step
time spent outside the network (fetching the batch and encoding it on the device) is
``(train_dataloader_next + batch_to_device) / (those + run_training_batch)``.

    python experiments/e2e_timing.py [--repeats 3] [--threads 1,2] [--json FILE]

``--threads 2`` runs with ``OMP_WAIT_POLICY=PASSIVE``: with libgomp's default (spinning) wait
policy, torch's idle OpenMP thread competes with numba's worker for the second core.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from environment import cpu_name, now

COMMAND = [
    "model=pynmsnn_binary",
    "data=breast_cancer",
    "data.test_size=0.2",
    "data.val_size=0.0",
    "monitor=null",
    "callbacks.early_stopping=null",
    "logger=none",
    "trainer.enable_progress_bar=false",
    "model.backend=auto",
]
SHARE_ACTIONS = ("train_dataloader_next", "batch_to_device", "run_training_batch")


def thread_env(threads: int) -> dict[str, str]:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    if threads > 1:
        env["OMP_WAIT_POLICY"] = "PASSIVE"
    return env


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """Wall and CPU seconds of one child process, and its output."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=Path(__file__).parents[1])
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, proc.stdout + proc.stderr


def train_cmd(epochs: int, *extra: str) -> list[str]:
    return [sys.executable, "-m", "nmsnn.cli.train", *COMMAND, f"trainer.max_epochs={epochs}", *extra]


def test_accuracy(output: str) -> float | None:
    match = re.search(r"^test/acc\s+([0-9.]+)\s*$", output, re.MULTILINE)
    return float(match.group(1)) if match else None


def profiler_totals(output: str) -> dict[str, tuple[float, int]]:
    """Total seconds and calls of the actions in Lightning's SimpleProfiler table."""
    totals = {}
    for line in output.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 4:
            continue
        for action in SHARE_ACTIONS:
            if cells[0] == action or cells[0].endswith(f".{action}"):
                try:
                    totals[action] = (float(cells[3]), int(cells[2]))
                except ValueError:
                    pass
    return totals


def measure(threads: int, repeats: int) -> dict:
    env = thread_env(threads)
    runs: dict[str, list] = {"epochs_50": [], "epochs_1": [], "import": []}
    accuracy = None
    with tempfile.TemporaryDirectory() as log_dir:
        env["NMSNN_LOG_DIR"] = log_dir
        for _ in range(repeats):
            for key, epochs in (("epochs_50", 50), ("epochs_1", 1)):
                wall, cpu, out = timed(train_cmd(epochs), env)
                runs[key].append((wall, cpu))
                if epochs == 50:
                    accuracy = test_accuracy(out)
            wall, cpu, _ = timed([sys.executable, "-c", "import nmsnn.cli.train"], env)
            runs["import"].append((wall, cpu))
        _, _, out = timed(train_cmd(50, "+trainer.profiler=simple"), env)
    totals = profiler_totals(out)
    outside = sum(totals.get(a, (0.0, 0))[0] for a in SHARE_ACTIONS[:2])
    inside = totals.get("run_training_batch", (0.0, 0))[0]
    record = {
        "threads": threads,
        "omp_wait_policy": env.get("OMP_WAIT_POLICY", "default"),
        "test_acc": accuracy,
        "profiler_totals_s": {k: v[0] for k, v in totals.items()},
        "profiler_calls": {k: v[1] for k, v in totals.items()},
        "input_share": round(outside / (outside + inside), 4) if inside else None,
    }
    for key, values in runs.items():
        record[f"{key}_wall_s"] = [round(w, 2) for w, _ in values]
        record[f"{key}_cpu_s"] = [round(c, 2) for _, c in values]
        record[f"{key}_wall_median_s"] = round(statistics.median(w for w, _ in values), 2)
    return record


def markdown(records: list[dict]) -> str:
    rows = [
        "| torch threads | 50 epochs, wall (median) | 1 epoch (fixed cost) | `import nmsnn.cli.train` "
        "| per further epoch | input pipeline share of a step | test acc |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in records:
        per_epoch = (r["epochs_50_wall_median_s"] - r["epochs_1_wall_median_s"]) / 49
        share = "n/a" if r["input_share"] is None else f"{100 * r['input_share']:.1f} %"
        rows.append(
            f"| {r['threads']} ({r['omp_wait_policy']} wait) | **{r['epochs_50_wall_median_s']:.1f} s** "
            f"(runs: {', '.join(f'{w:.1f}' for w in r['epochs_50_wall_s'])}) | "
            f"{r['epochs_1_wall_median_s']:.1f} s | {r['import_wall_median_s']:.1f} s | "
            f"{1000 * per_epoch:.0f} ms | {share} | {r['test_acc']} |"
        )
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", default="1,2", help="comma-separated torch thread counts")
    parser.add_argument("--json", type=Path, help="write the records here")
    args = parser.parse_args()
    records = [measure(int(t), args.repeats) for t in args.threads.split(",")]
    for r in records:
        r.update({"cpu": cpu_name(), "cpu_count": os.cpu_count(), "when": now(), "load_avg": os.getloadavg()})
    print(markdown(records))
    if args.json:
        args.json.write_text(json.dumps(records, indent=1) + "\n")


if __name__ == "__main__":
    main()
