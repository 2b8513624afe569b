"""Refit a suite sweep's pick on its training and validation rows together: does the data nmsnn
holds out for early stopping explain its gaps?

In the suite nmsnn trains on 64 % of a table's rows and stops early on 16 %, while the baselines
fit on all 80 %. This script takes each sweep that ``tabular_suite.py --sweep`` left in its work
folder (the job ``summary.csv`` marks as ``pick``), retrains that job's settings with
``data.val_size=0`` (the same test rows, every other row training, the preprocessing fitted on
them) for as long as the pick trained to its tested checkpoint, and scores the final weights on
the test rows. Two rules for "as long as", both with the pick's batch size:

* ``replay``: the pick's own learning-rate schedule (the warm-up and cosine over its training
  budget, step by step), stopped after as many optimizer steps as the pick took to its tested
  epoch (so about 20 % fewer passes over the larger training set);
* ``anneal``: as many epochs as the pick's tested epoch, the warm-up and cosine fitted to them
  (the learning rate reaches zero at the end, as in a run without early stopping).

Each refit is one ``nmsnn-train`` process. Writes ``<out>.md`` and ``<out>.json``.

    python experiments/sweep_refit.py --sweeps /tmp/nmsnn-sweep2/sweeps --out experiments/results/sweep_refit
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "experiments"))

from sweep_picks import suite_sweeps  # noqa: E402
from tabular_suite import (  # noqa: E402
    DEFAULT_CACHE,
    DEFAULT_SUITE,
    MAIN_METRIC,
    gap,
    this_command,
    train_program,
    write_results,
)

RULES = ("replay", "anneal")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--sweeps", type=Path, nargs="+", help="<work-dir>/sweeps of --sweep runs (unless --report-only)"
    )
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="the suite's baseline cache")
    parser.add_argument("--suite-dir", type=Path, default=DEFAULT_SUITE, help="folder with suite.json")
    parser.add_argument("--out", type=Path, required=True, help="writes <out>.md and <out>.json")
    parser.add_argument(
        "--work-dir", type=Path, help="where the refits' runs go (required unless --report-only)"
    )
    parser.add_argument("--report-only", action="store_true", help="rewrite <out>.md from <out>.json")
    parser.add_argument("--jobs", type=int, default=1, help="refits run at once")
    return parser.parse_args(argv)


def pick_length(job_dir: Path) -> dict[str, int]:
    """The picked job's batch size, batches per epoch, tested epoch and its schedule's total
    optimizer steps (from its ``best.ckpt``, its composed config and ``metrics.json``)."""
    from omegaconf import OmegaConf

    from nmsnn.checkpoint import load_checkpoint
    from nmsnn.lit.schedules import budget_epochs

    datamodule = load_checkpoint(job_dir / "checkpoints" / "best.ckpt").datamodule()
    datamodule.setup("fit")
    batch = datamodule.train_batch_size()
    batches = math.ceil(len(datamodule.tensors["train"]) / batch)
    cfg = OmegaConf.load(job_dir / ".hydra" / "config.yaml")
    cap = cfg.trainer.get("max_epochs")
    budget = (cfg.get("callbacks") or {}).get("training_budget")
    epochs = budget_epochs(budget.steps, batches, cap) if budget else cap
    tested = json.loads((job_dir / "metrics.json").read_text())["run"]["tested_epoch"]
    return {"batch_size": batch, "batches": batches, "tested_epoch": tested, "total_steps": epochs * batches}


def refit_overrides(rule: str, length: dict[str, int]) -> list[str]:
    """``nmsnn-train`` overrides that refit on train + validation rows under ``rule``."""
    common = [
        "data.val_size=0",
        f"data.batch_size={length['batch_size']}",
        "callbacks.training_budget=null",
        "callbacks.early_stopping=null",
        "test_ckpt=last",
        "resume=never",
    ]
    if rule == "replay":
        steps = length["tested_epoch"] * length["batches"]
        schedule = f"{{_target_:nmsnn.lit.schedules.warmup_cosine,interval:step,total_steps:{length['total_steps']}}}"
        return [
            *common,
            "trainer.max_epochs=-1",
            f"+trainer.max_steps={steps}",
            f"model.scheduler={schedule}",
        ]
    if rule == "anneal":
        return [*common, f"trainer.max_epochs={length['tested_epoch']}"]
    raise ValueError(f"unknown rule {rule!r}")


def refit(job: dict[str, Any], rule: str, work_dir: Path) -> float:
    """Run one refit and return its test accuracy / R²."""
    name = f"{job['table']}-s{job['seed']}-{rule}"
    command = [
        train_program(),
        *shlex.split(job["overrides"]),
        f"run_name={name}",
        f"paths.log_dir={work_dir}",
        *refit_overrides(rule, job["length"]),
    ]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"{name} failed:\n{done.stderr[-3000:]}")
    metrics = json.loads((work_dir / "train" / "runs" / name / "metrics.json").read_text())["metrics"]
    return float(metrics[f"test/{job['metric']}"])


def report(records: list[dict[str, Any]], command: str) -> str:
    columns = ("one-SE pick", *RULES)
    lines = [
        "# Refitting a sweep's pick on the training and validation rows",
        "",
        "Generated by `experiments/sweep_refit.py`; do not edit by hand.",
        "",
        f"```bash\n{command}\n```",
        "",
        f"Date: {datetime.now(timezone.utc):%Y-%m-%d %H:%M:%S} UTC. For each table and seed, the test "
        "accuracy / R² of the sweep's one-SE pick (trained on the training rows, stopped on the "
        "validation rows) and of the same settings refitted on both (`replay`: the pick's schedule "
        "and optimizer steps; `anneal`: its epochs, the schedule fitted to them). `epochs` is the "
        "pick's tested epoch. **Bold**: at or above the best baseline (which fits on the same "
        "training and validation rows).",
        "",
        "| table | seed | best baseline | epochs | " + " | ".join(columns) + " |",
        "|---|---|---|---|" + "---|" * len(columns),
    ]
    for r in records:
        cells = [
            f"**{r['scores'][c]:.3f}**" if gap(r["scores"][c], r["bar"]) >= 0 else f"{r['scores'][c]:.3f}"
            for c in columns
        ]
        lines.append(
            f"| {r['table']} | {r['seed']} | {r['bar']:.3f} ({r['bar_name']}) | "
            f"{r['length']['tested_epoch']} | " + " | ".join(cells) + " |"
        )
    tables = list(dict.fromkeys(r["table"] for r in records))
    seeds = sorted({r["seed"] for r in records})
    lines += ["", f"Mean over seeds {', '.join(map(str, seeds))}, per table (refit − pick in brackets):", ""]
    lines += ["| table | best baseline | " + " | ".join(columns) + " |", "|---|---|" + "---|" * len(columns)]
    wins = dict.fromkeys(columns, 0)
    change: dict[tuple[str, str], list[float]] = {(r, m): [] for r in RULES for m in ("acc", "r2")}
    for table in tables:
        mine = [r for r in records if r["table"] == table]
        bar = max(sum(r["baselines"][b] for r in mine) / len(mine) for b in mine[0]["baselines"])
        means = {c: sum(r["scores"][c] for r in mine) / len(mine) for c in columns}
        cells = []
        for c in columns:
            wins[c] += gap(means[c], bar) >= 0
            text = f"{means[c]:.3f}"
            if c in RULES:
                change[(c, mine[0]["metric"])].append(means[c] - means["one-SE pick"])
                text += f" ({means[c] - means['one-SE pick']:+.3f})"
            cells.append(f"**{text}**" if gap(means[c], bar) >= 0 else text)
        lines.append(f"| {table} | {bar:.3f} | " + " | ".join(cells) + " |")
    lines += ["", "Tables at or above the best baseline by the mean over the seeds:", ""]
    lines += [f"- {c}: {wins[c]} of {len(tables)}" for c in columns]
    lines += ["", "Mean change over the tables (refit − pick), and the tables it raised:", ""]
    for rule in RULES:
        parts = [
            f"{what} {sum(v) / len(v):+.4f} ({sum(d > 0 for d in v)} of {len(v)} tables up)"
            for what, v in (("accuracy", change[(rule, "acc")]), ("R²", change[(rule, "r2")]))
            if v
        ]
        lines.append(f"- {rule}: " + ", ".join(parts))
    lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not args.report_only and (args.work_dir is None or not args.sweeps):
        raise SystemExit("--sweeps and --work-dir are required (the sweeps to read, where the refits go)")
    if args.report_only:  # the report again from the JSON, under the command that made it
        records = json.loads(args.out.with_suffix(".json").read_text())
        command = args.out.with_suffix(".md").read_text().split("```bash\n")[1].split("\n```")[0]
        write_results(args.out, records, report(records, command))
        return 0
    jobs = []
    for (table, seed, _name), sweep, task, bar in suite_sweeps(args.sweeps, args.suite_dir, args.cache):
        metric = MAIN_METRIC[task]
        frame = pd.read_csv(sweep / "summary.csv")
        picked = frame[frame["pick"]].iloc[0]
        jobs.append(
            {
                "table": table,
                "seed": seed,
                "metric": metric,
                "job": int(picked["job"]),
                "overrides": picked["overrides"],
                "length": pick_length(sweep / str(int(picked["job"]))),
                "scores": {"one-SE pick": float(picked[f"test/{metric}"])},
                **bar,
            }
        )
    tasks = [(job, rule) for job in jobs for rule in RULES]
    with ThreadPoolExecutor(max(1, args.jobs)) as pool:
        scores = list(pool.map(lambda task: refit(*task, args.work_dir), tasks))
    for (job, rule), value in zip(tasks, scores):
        job["scores"][rule] = value
    for job in jobs:
        print(job["table"], job["seed"], {k: round(v, 3) for k, v in job["scores"].items()}, flush=True)
    write_results(args.out, jobs, report(jobs, this_command()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
