"""How long the everyday commands take, on a quiet machine and beside a busy process.

Each case runs as a fresh process, as a user types it, from an empty log directory; wall time is
measured around the process. Every case runs twice: on the quiet machine, and with a CPU-bound
neighbour (a Python busy loop on one core, as another user's job or a browser tab would be).

* ``train``: bare ``nmsnn-train`` (the bundled breast-cancer set, every default);
* ``train, old threads``: the same without the thread settings nmsnn now applies by itself
  (``OMP_WAIT_POLICY`` set empty, i.e. libgomp's spinning default, and ``threads`` = all cores);
* the imports of a training run (torch, Lightning, nmsnn's pipeline and population), which both
  launchers pay once per sweep;
* ``--help``, a bad key (``model.no_such_key=1``), ``nmsnn-predict`` of 20 rows, and
  ``nmsnn-predict`` refusing to overwrite an existing file;
* the 8-configuration sweep (4 decays x 2 thresholds, 5 epochs) and the 16-configuration one
  (4 decays x 4 thresholds, 60 epochs), each with the basic launcher and with
  ``hydra/launcher=population``; their ``summary.csv`` files are compared job by job. A sweep's
  per-job overhead is (sweep wall time - the jobs' fit seconds) / jobs;
* with ``--tests``, the test suite (``pytest`` from the repository root, as the README runs it).

    python experiments/everyday_timing.py [--skip-long-sweeps] [--tests] [--out experiments/results/everyday_timing]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from environment import cpu_name, now

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
QUIET = ["logger=none"]
SWEEP_8 = ["model.neuron.decay=0.8,0.85,0.9,0.95", "model.neuron.threshold=0.5,1.0", "trainer.max_epochs=5"]
SWEEP_16 = [
    "model.neuron.decay=0.8,0.85,0.9,0.95",
    "model.neuron.threshold=0.5,0.75,1.0,1.25",
    "trainer.max_epochs=60",
]
TESTS = ["-q", "-p", "no:cacheprovider"]
IMPORTS = "import torch, lightning, nmsnn.pipeline, nmsnn.population.training"
# epochs fixed by trainer.max_epochs alone (the step budget would otherwise set them)
FIXED_EPOCHS = ["callbacks.training_budget=null", "callbacks.early_stopping=null"]


def command(name: str, *args: str) -> list[str]:
    exe = BIN / name
    return [str(exe) if exe.exists() else name, *args]


def timed(
    cmd: list[str], env: dict[str, str], expect_fail: bool = False, cwd: Path | None = None
) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=cwd)
    wall = time.perf_counter() - start
    failed = done.returncode != 0
    if failed != expect_fail:
        raise SystemExit(
            f"{' '.join(cmd)} exited {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        )
    return wall, done.stdout + done.stderr


class BusyNeighbour:
    """A Python busy loop on one core for the span of a ``with`` block (or nothing)."""

    def __init__(self, busy: bool) -> None:
        self.busy, self.proc = busy, None

    def __enter__(self) -> BusyNeighbour:
        if self.busy:
            self.proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
            time.sleep(0.5)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()


def sweep_record(sweep_dir: Path, wall: float) -> dict:
    """Wall time, jobs, the jobs' fit seconds and the per-job overhead of one sweep."""
    summary = pd.read_csv(sweep_dir / "summary.csv")
    fits = []
    for metrics in sweep_dir.glob("*/metrics.json"):
        run = json.loads(metrics.read_text()).get("run", {})
        fits.append(run.get("fit_seconds") or 0.0)
    jobs = len(summary)
    return {
        "wall_s": round(wall, 2),
        "jobs": jobs,
        "fit_s": round(sum(fits), 2),
        "overhead_per_job_s": round((wall - sum(fits)) / max(jobs, 1), 2),
        "summary": summary,
    }


def same_summaries(a: pd.DataFrame, b: pd.DataFrame) -> str:
    """Whether two sweeps' summaries agree job by job on every metric column (to 1e-4)."""
    keys = [c for c in a.columns if c.startswith(("test/", "val/")) and c in b.columns]
    a, b = a.sort_values("job").reset_index(drop=True), b.sort_values("job").reset_index(drop=True)
    if len(a) != len(b):
        return f"no: {len(a)} vs {len(b)} jobs"
    worst = max(((a[k] - b[k]).abs().max(), k) for k in keys)
    return "yes" if worst[0] <= 1e-4 else f"no: {worst[1]} differs by up to {worst[0]:.3g}"


def run_cases(work: Path, busy: bool, long_sweeps: bool, tests: bool) -> dict:
    env = {**os.environ, "NMSNN_LOG_DIR": str(work / "logs")}
    results: dict = {}
    with BusyNeighbour(busy):
        if tests:  # the README's test command, once its install is done
            results["test suite (pytest)"], _ = timed(command("pytest", *TESTS), env, cwd=REPO)
        results["train"], _ = timed(command("nmsnn-train", *QUIET, f"run_name=plain-{busy}"), env)
        cores = os.cpu_count() or 1
        old_env = {**env, "OMP_WAIT_POLICY": ""}
        results["train, old threads"], _ = timed(
            command("nmsnn-train", *QUIET, f"threads={cores}", f"run_name=old-{busy}"), old_env
        )
        results["--help"], _ = timed(command("nmsnn-train", "--help"), env)
        # what every training process, and so every sweep with either launcher, imports first
        results["imports of a training run"], _ = timed([sys.executable, "-c", IMPORTS], env)
        results["bad key"], _ = timed(command("nmsnn-train", "model.no_such_key=1"), env, expect_fail=True)
        ckpt = work / "logs" / "train" / "runs" / f"plain-{busy}" / "checkpoints" / "best.ckpt"
        rows = work / "rows.csv"
        predictions = work / f"predictions-{busy}.csv"
        predict = ["ckpt_path=" + str(ckpt), f"input_path={rows}", f"output_path={predictions}"]
        results["predict 20 rows"], _ = timed(command("nmsnn-predict", *predict), env)
        results["predict, overwrite refused"], _ = timed(
            command("nmsnn-predict", *predict), env, expect_fail=True
        )
        sweeps = {"8 jobs x 5 epochs": SWEEP_8}
        if long_sweeps:
            sweeps["16 jobs x 60 epochs"] = SWEEP_16
        for name, overrides in sweeps.items():
            records = {}
            for launcher in ("basic", "population"):
                sweep_dir = work / f"sweep-{busy}-{launcher}-{name.split()[0]}"
                extra = ["hydra/launcher=population"] if launcher == "population" else []
                cmd = command(
                    "nmsnn-train",
                    "--multirun",
                    *QUIET,
                    *FIXED_EPOCHS,
                    *overrides,
                    *extra,
                    f"hydra.sweep.dir={sweep_dir}",
                )
                wall, _ = timed(cmd, env)
                records[launcher] = sweep_record(sweep_dir, wall)
            same = same_summaries(records["basic"]["summary"], records["population"]["summary"])
            for launcher, record in records.items():
                record.pop("summary")
                results[f"sweep {name}, {launcher}"] = record
            results[f"sweep {name}, same summaries"] = same
    return results


def wall(value: object) -> float:
    return value["wall_s"] if isinstance(value, dict) else float(value)


def markdown(data: dict) -> str:
    quiet, busy = data["quiet"], data["busy"]
    lines = [
        "# Everyday timing",
        "",
        f"Generated {data['date']} by `experiments/everyday_timing.py`; rerun it to regenerate. "
        f"Machine: {data['machine']}. Every time is one run's wall time of a fresh process; "
        "*busy*: beside a Python busy loop on one core. The machine is shared, so read ratios "
        "within one run.",
        "",
        "| case | quiet s | busy s | busy / quiet |",
        "| --- | --- | --- | --- |",
    ]
    for case in quiet:
        if case.endswith("same summaries"):
            continue
        q, b = wall(quiet[case]), wall(busy[case])
        lines.append(f"| {case} | {q:.2f} | {b:.2f} | {b / q:.2f} |")
    lines += [
        "",
        "## Sweeps",
        "",
        "| sweep | machine | wall s | jobs | jobs' fit s | overhead per job s | population speed-up | same summaries |",
    ]
    lines.append("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for label, results in (("quiet", quiet), ("busy", busy)):
        for case in results:
            if not case.startswith("sweep") or not case.endswith(", basic"):
                continue
            name = case.removeprefix("sweep ").removesuffix(", basic")
            for launcher in ("basic", "population"):
                r = results[f"sweep {name}, {launcher}"]
                speedup = (
                    wall(results[f"sweep {name}, basic"]) / r["wall_s"] if launcher == "population" else None
                )
                lines.append(
                    f"| {name}, {launcher} | {label} | {r['wall_s']:.1f} | {r['jobs']} | {r['fit_s']:.1f} | "
                    f"{r['overhead_per_job_s']:.2f} | {'' if speedup is None else f'{speedup:.2f}x'} | "
                    f"{results[f'sweep {name}, same summaries'] if launcher == 'population' else ''} |"
                )
    t_quiet, t_busy = wall(quiet["train"]), wall(busy["train"])
    o_busy = wall(busy["train, old threads"])
    lines += [
        "",
        "## Summary",
        "",
        f"- bare `nmsnn-train` beside a busy process: {t_busy / t_quiet:.2f}x its quiet time "
        f"(without nmsnn's thread settings: {o_busy / wall(quiet['train, old threads']):.2f}x; "
        f"{o_busy / t_busy:.1f}x slower than with them).",
        f"- `--help` {wall(quiet['--help']):.2f} s, bad key {wall(quiet['bad key']):.2f} s, overwrite "
        f"refusal {wall(quiet['predict, overwrite refused']):.2f} s (quiet).",
    ]
    for name, target in (("8 jobs x 5 epochs", 3), ("16 jobs x 60 epochs", 5)):
        if f"sweep {name}, basic" not in quiet or "imports of a training run" not in quiet:
            continue
        basic, population = quiet[f"sweep {name}, basic"], quiet[f"sweep {name}, population"]
        lines.append(
            f"- sweep {name}: a {target}x speed-up needs the population within "
            f"{basic['wall_s'] / target:.1f} s (quiet); its training alone took {population['fit_s']:.1f} s, "
            f"everything else {population['wall_s'] - population['fit_s']:.1f} s, of which "
            f"{wall(quiet['imports of a training run']):.1f} s are the imports both launchers pay once."
        )
    if "test suite (pytest)" in quiet:
        q, b = wall(quiet["test suite (pytest)"]), wall(busy["test suite (pytest)"])
        lines.append(f"- the test suite: {q / 60:.1f} min quiet, {b / 60:.1f} min beside a busy process.")
    lines += ["", "Commands:", "", "```bash", *data["commands"], "```", ""]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--skip-long-sweeps", action="store_true", help="leave out the 16-job, 60-epoch sweep"
    )
    parser.add_argument(
        "--tests", action="store_true", help="also time the test suite (pytest), quiet and busy"
    )
    parser.add_argument("--out", type=Path, default=REPO / "experiments" / "results" / "everyday_timing")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="nmsnn-everyday-"))
    try:
        from sklearn.datasets import load_breast_cancer

        frame = load_breast_cancer(as_frame=True).frame.drop(columns="target").head(20)
        frame.to_csv(work / "rows.csv", index=False)
        data = {"date": now(), "machine": f"{platform.machine()}, {os.cpu_count()} cores ({cpu_name()})"}
        for label in ("quiet", "busy"):
            data[label] = run_cases(work, label == "busy", not args.skip_long_sweeps, args.tests)
            print(label, json.dumps(data[label], indent=1), flush=True)
        data["commands"] = [
            "nmsnn-train logger=none",
            "OMP_WAIT_POLICY= nmsnn-train logger=none threads=<cores>   # old threads",
            "nmsnn-train --help",
            f'python -c "{IMPORTS}"',
            "nmsnn-train model.no_such_key=1",
            "nmsnn-predict ckpt_path=<run>/checkpoints/best.ckpt input_path=rows.csv output_path=p.csv  # twice",
            "nmsnn-train --multirun logger=none "
            + " ".join(FIXED_EPOCHS + SWEEP_8)
            + " [hydra/launcher=population]",
            "nmsnn-train --multirun logger=none "
            + " ".join(FIXED_EPOCHS + SWEEP_16)
            + " [hydra/launcher=population]",
        ]
        if args.tests:
            data["commands"].append(f"pytest {' '.join(TESTS)}   # from the repository root")
        Path(f"{args.out}.json").write_text(json.dumps(data, indent=1))
        Path(f"{args.out}.md").write_text(markdown(data))
        print(f"wrote {args.out}.json and {args.out}.md")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
