"""How a suite sweep's job is picked, and what the sweep's grid held: read back a Table 3 run.

``tabular_suite.py --sweep`` records two validation-only picks per table (the summary's
one-standard-error pick and the lowest ``val/loss``). This script reads the sweeps it left in its
work folder (``<work-dir>/sweeps/<table>-s<seed>-<name>-<stamp>/``: every job's ``summary.csv``
row, its best checkpoint and its test predictions) and scores, against the best baseline of the
same table and seed (the suite's baseline cache), each of:

* ``first job``: the sweep's job 0, the default as a population member;
* ``one-SE pick``: what ``summary.csv`` marks as ``pick`` (``sweep_pick=one_se``): job 0 unless
  the best job beats it by more than the best job's ``val/loss_se``;
* ``paired one-SE``: the same rule with the standard error of the mean *difference* between the
  two jobs' per-row validation losses (both jobs score the same rows, so the paired error is far
  smaller): computed here from each job's ``best.ckpt`` on its validation rows, with the model's
  own ``row_losses``. A candidate rule, not the product's;
* ``lowest val/loss``: the best job on validation rows;
* ``greedy ensemble``: ensemble selection with replacement (Caruana et al., 2004): 16 rounds, each
  adds the job whose addition gives the lowest validation loss of the averaged prediction (class
  probabilities, scored by the mean negative log probability of the true class; or values on the
  original scale, by their squared error); the ensemble of the round with the lowest loss;
* ``top-4 mean``: the average of the 4 jobs with the lowest ``val/loss``;
* ``mean of all``: the average of every finished job (no selection; a reference);
* ``best on test``: the single job with the highest test score. Not a pick (it looks at the test
  rows): what the grid holds, the most any validation-only choice of one job could reach.

An ensemble's prediction is the mean of its jobs' predictions (class probabilities, or values on
the original scale), each job's from its ``best.ckpt``, on the validation and test rows.

It also counts how many of the grid's jobs reach the best baseline on each table. Writes
``<out>.md`` and ``<out>.json``.

    python experiments/sweep_picks.py --sweeps /tmp/nmsnn-sweep2/sweeps --out experiments/results/sweep_picks
    python experiments/sweep_picks.py --sweeps RUN1/sweeps RUN2/sweeps --out ...   # several runs (seeds)
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "experiments"))

from tabular_suite import (  # noqa: E402
    BASELINE_LABELS,
    DEFAULT_CACHE,
    DEFAULT_SUITE,
    MAIN_METRIC,
    gap,
    this_command,
    write_results,
)

SWEEP_DIR = re.compile(r"^(?P<table>.+)-s(?P<seed>\d+)-(?P<name>.+)-(?P<stamp>\d{8}-\d{6}-\d+)$")
SINGLE = ("first job", "one-SE pick", "paired one-SE", "lowest val/loss")
ENSEMBLES = ("greedy ensemble", "top-4 mean", "mean of all")
RULES = (*SINGLE, *ENSEMBLES, "best on test")
GREEDY_ROUNDS = 16
TOP_K = 4


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--sweeps", type=Path, nargs="+", required=True, help="<work-dir>/sweeps of --sweep runs"
    )
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="the suite's baseline cache")
    parser.add_argument("--suite-dir", type=Path, default=DEFAULT_SUITE, help="folder with suite.json")
    parser.add_argument("--out", type=Path, required=True, help="writes <out>.md and <out>.json")
    return parser.parse_args(argv)


def latest_sweeps(root: Path) -> dict[tuple[str, int, str], Path]:
    """The newest sweep folder per (table, seed, sweep name)."""
    found: dict[tuple[str, int, str], Path] = {}
    for path in sorted(root.iterdir()):
        match = SWEEP_DIR.match(path.name)
        if match and (path / "summary.csv").is_file():
            found[(match["table"], int(match["seed"]), match["name"])] = path  # sorted: newest last
    return found


def suite_sweeps(roots: list[Path], suite_dir: Path, cache_path: Path) -> Iterator[tuple]:
    """``((table, seed, sweep name), sweep folder, task, bar)`` for the newest sweep of each
    table, seed and name under ``roots``, by seed then the suite's table order; ``bar``: the
    seed's baseline scores (``baselines``), the best of them (``bar``) and its label (``bar_name``)."""
    suite = json.loads((suite_dir / "suite.json").read_text())
    cache = json.loads(cache_path.read_text())
    found = {k: v for root in roots for k, v in latest_sweeps(root).items()}
    for (table, seed, name), sweep in sorted(
        found.items(), key=lambda kv: (kv[0][1], list(suite).index(kv[0][0]))
    ):
        task = suite[table]["task"]
        prefix = f"{table}|{seed}|"
        scores = {
            k.removeprefix(prefix): v["metrics"][MAIN_METRIC[task]]
            for k, v in cache.items()
            if k.startswith(prefix)
        }
        best = max(scores, key=scores.get)
        bar = {"bar": scores[best], "baselines": scores, "bar_name": BASELINE_LABELS.get(best, best)}
        yield (table, seed, name), sweep, task, bar


class JobOutputs:
    """Each job's predictions on its validation and test rows, from its ``best.ckpt`` (loaded once).

    ``values[split]``: class probabilities ``[N, C]`` or original-scale values ``[N]``;
    ``targets[split]``: class indices or original-scale targets; ``row_losses``: each validation
    row's term of the job's ``val/loss`` (the model's own ``row_losses``)."""

    def __init__(self, job_dir: Path) -> None:
        import torch

        from nmsnn.checkpoint import load_checkpoint

        loaded = load_checkpoint(job_dir / "checkpoints" / "best.ckpt")
        datamodule = loaded.datamodule()
        datamodule.setup("fit")
        module = loaded.module.eval()
        self.values: dict[str, Any] = {}
        self.targets: dict[str, Any] = {}
        with torch.no_grad():  # each split in one pass: at most a few thousand rows
            for split in ("val", "test"):
                rows = datamodule.tensors[split]
                # validation rows in folds are scored by the members that held them out
                prediction = module.fold_view(module(rows.x).prediction, rows.fold, training=False)
                if split == "val":
                    losses = module.row_losses(prediction, rows.y).double().numpy()
                    self.row_losses = pd.Series(losses, index=datamodule.split_frame("val").index)
                self.values[split] = module.predict_values(prediction).double().numpy()
                self.targets[split] = module.metric_target(rows.y).double().numpy()


def validation_losses(job_dir: Path) -> pd.Series:
    """Each validation row's loss under the job's tested checkpoint, by row number: the terms
    whose mean is the job's ``val/loss``."""
    return JobOutputs(job_dir).row_losses


def ensemble_loss(values: Any, targets: Any, task: str) -> float:
    """The validation loss ensemble selection minimizes: the mean negative log probability of the
    true class, or the mean squared error."""
    import numpy as np

    if task == "classification":
        picked = values[np.arange(len(targets)), targets.astype(int)]
        return float(-np.log(np.clip(picked, 1e-12, None)).mean())
    return float(((values - targets) ** 2).mean())


def score(values: Any, targets: Any, task: str) -> float:
    """Accuracy of the most probable class, or R² (as the runs' metrics compute them)."""
    from sklearn.metrics import accuracy_score, r2_score

    if task == "classification":
        return float(accuracy_score(targets, values.argmax(1)))
    return float(r2_score(targets, values))


def greedy_selection(outputs: dict[int, JobOutputs], task: str, rounds: int = GREEDY_ROUNDS) -> list[int]:
    """Ensemble selection with replacement: the jobs (repeated as chosen) of the round whose
    averaged validation prediction has the lowest :func:`ensemble_loss`."""
    targets = next(iter(outputs.values())).targets["val"]
    chosen: list[int] = []
    total: Any = 0.0  # the sum of the chosen jobs' validation predictions
    best: tuple[float, list[int]] = (math.inf, [])
    for _ in range(rounds):
        trial = {
            job: ensemble_loss((total + out.values["val"]) / (len(chosen) + 1), targets, task)
            for job, out in outputs.items()
        }
        job = min(trial, key=lambda j: (trial[j], j))
        chosen.append(job)
        total = total + outputs[job].values["val"]
        if trial[job] < best[0]:
            best = (trial[job], list(chosen))
    return best[1]


def ensemble_score(outputs: dict[int, JobOutputs], jobs: list[int], task: str) -> float:
    """The test score of the mean of ``jobs``' test predictions (a job listed twice counts twice)."""
    first = outputs[jobs[0]]
    mean = sum(outputs[j].values["test"] for j in jobs) / len(jobs)
    return score(mean, first.targets["test"], task)


def paired_pick(
    outputs: dict[int, JobOutputs], val_loss: pd.Series, first: int, best: int
) -> tuple[int, float, float]:
    """The paired one-standard-error rule: the ``first`` job unless the ``best`` one (lowest
    ``val_loss``, by job) beats it by more than the standard error of their per-row loss
    differences. Returns (job, gain, error)."""
    if first == best:
        return first, 0.0, 0.0
    a, b = outputs[first].row_losses, outputs[best].row_losses
    for job, losses in ((first, a), (best, b)):  # the rows' terms are the recorded val/loss
        assert abs(losses.mean() - val_loss[job]) < 1e-4, (job, losses.mean(), val_loss[job])
    difference = a - b
    error = float(difference.std(ddof=1) / math.sqrt(len(difference)))
    gain = float(val_loss[first] - val_loss[best])
    return (best if gain > error else first), gain, error


def analyse(sweep: Path, task: str, bar: float) -> dict[str, Any]:
    """Each rule's job(s) and test score on one sweep, and how many jobs reach ``bar``."""
    frame = pd.read_csv(sweep / "summary.csv")
    metric = f"test/{MAIN_METRIC[task]}"
    ok = frame[frame["status"] == "ok"].set_index("job")
    outputs = {int(job): JobOutputs(sweep / str(job)) for job in ok.index}
    for job, out in outputs.items():  # the checkpoints' predictions are the runs' own test scores
        recomputed = score(out.values["test"], out.targets["test"], task)
        assert abs(recomputed - ok.loc[job, metric]) < 1e-4, (sweep, job, recomputed, ok.loc[job, metric])
    first, lowest = int(ok.index.min()), int(ok["val/loss"].idxmin())
    paired, gain, error = paired_pick(outputs, ok["val/loss"], first, lowest)
    jobs: dict[str, list[int]] = {
        "first job": [first],
        "one-SE pick": [int(frame.loc[frame["pick"], "job"].iloc[0])],
        "paired one-SE": [paired],
        "lowest val/loss": [lowest],
        "greedy ensemble": sorted(greedy_selection(outputs, task)),
        "top-4 mean": sorted(int(j) for j in ok["val/loss"].nsmallest(TOP_K).index),
        "mean of all": sorted(outputs),
        "best on test": [int(ok[metric].idxmax())],
    }
    return {
        "jobs": jobs,
        "scores": {rule: ensemble_score(outputs, chosen, task) for rule, chosen in jobs.items()},
        "paired": {"gain": gain, "error": error},
        "at_bar": int(sum(gap(float(s), bar) >= 0 for s in ok[metric])),
        "finished": len(ok),
    }


def jobs_text(jobs: list[int]) -> str:
    """``3`` for one job; ``2, 5×3, 9`` for an ensemble (a job chosen three times: ×3)."""
    from collections import Counter

    return ", ".join(f"{j}×{n}" if n > 1 else str(j) for j, n in sorted(Counter(jobs).items()))


def by_mean_count(records: list[dict[str, Any]], rule: str) -> int:
    """The tables where ``rule``'s mean score over the seeds is at or above the best baseline's
    mean (the baseline with the highest mean over the same seeds)."""
    wins = 0
    for table in dict.fromkeys(r["table"] for r in records):
        mine = [r for r in records if r["table"] == table]
        bar = max(sum(r["baselines"][name] for r in mine) / len(mine) for name in mine[0]["baselines"])
        wins += gap(sum(r["scores"][rule] for r in mine) / len(mine), bar) >= 0
    return wins


def report(records: list[dict[str, Any]], command: str) -> str:
    lines = [
        "# Picking a sweep's job: the suite's Table 3 sweep read back",
        "",
        "Generated by `experiments/sweep_picks.py`; do not edit by hand.",
        "",
        f"```bash\n{command}\n```",
        "",
        f"Date: {datetime.now(timezone.utc):%Y-%m-%d %H:%M:%S} UTC. Each cell: the test accuracy / R² of "
        "the job a rule picks, or of the mean of an ensemble's jobs (the job numbers in brackets; "
        "`5×3`: job 5 chosen three times), and in the last column how many of the grid's jobs reach "
        "the best baseline on the test rows. **Bold**: at or above the best baseline. `best on test` "
        "looks at the test rows: not a pick, but the most any validation-only choice of one job "
        "could reach with this grid.",
        "",
        "| table | seed | best baseline | " + " | ".join(RULES) + " | jobs ≥ best baseline |",
        "|---|---|---|" + "---|" * (len(RULES) + 1),
    ]
    for r in records:
        cells = []
        for rule in RULES:
            value = r["scores"][rule]
            text = f"{value:.3f} ({jobs_text(r['jobs'][rule])})"
            cells.append(f"**{text}**" if gap(value, r["bar"]) >= 0 else text)
        lines.append(
            f"| {r['table']} | {r['seed']} | {r['bar']:.3f} ({r['bar_name']}) | "
            + " | ".join(cells)
            + f" | {r['at_bar']} of {r['finished']} |"
        )
    seeds = sorted({r["seed"] for r in records})
    lines += [
        "",
        "Tables at or above the best baseline, per rule" + (", per seed:" if len(seeds) > 1 else ":"),
        "",
    ]
    for rule in RULES:
        counts = []
        for seed in seeds:
            mine = [r for r in records if r["seed"] == seed]
            wins = sum(gap(r["scores"][rule], r["bar"]) >= 0 for r in mine)
            counts.append(f"{wins} of {len(mine)}" + (f" (seed {seed})" if len(seeds) > 1 else ""))
        lines.append(f"- {rule}: {', '.join(counts)}")
    if len(seeds) > 1:
        lines += [
            "",
            f"By the mean over seeds {', '.join(map(str, seeds))} (the suite report's measure: each "
            "table's mean score against the mean of its best baseline by mean):",
            "",
        ]
        for rule in RULES:
            lines.append(f"- {rule}: {by_mean_count(records, rule)} of {len({r['table'] for r in records})}")
    moved = [r for r in records if r["jobs"]["paired one-SE"] != r["jobs"]["first job"]]
    if moved:
        gains = ", ".join(
            f"{r['table']} seed {r['seed']} (gain {r['paired']['gain']:.4g} > error {r['paired']['error']:.4g})"
            for r in moved
        )
        lines += ["", f"`paired one-SE` moved off the first job on {gains}."]
    lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    records = []
    for (table, seed, name), sweep, task, bar in suite_sweeps(args.sweeps, args.suite_dir, args.cache):
        record = {"table": table, "seed": seed, "sweep": name, **bar}
        record.update(analyse(sweep, task, record["bar"]))
        records.append(record)
        print(table, seed, {k: round(v, 3) for k, v in record["scores"].items()}, flush=True)
    write_results(args.out, records, report(records, this_command()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
