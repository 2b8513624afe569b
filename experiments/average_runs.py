"""Average the test predictions of several nmsnn variants of ``tabular_suite.py``, per table and seed.

A probe for bagging: run the same table and seed as several variants that differ only in what
each member sees (e.g. ``data.val_split_seed=101``, ``...=102``), then score the mean of their
test predictions (class probabilities, or predicted values) on the same test rows, beside the
first variant alone, the members' mean score and the best baseline of ``--baselines`` on the
same seeds. Runs are found through ``<out>.json`` (their ``run_name``) under ``--work-dir``.

    python experiments/tabular_suite.py --only-nmsnn --seeds 0 1 \\
        --variant v1=data.val_split_seed=101 --variant v2=data.val_split_seed=102 \\
        --variants default,v1,v2 --out /tmp/bag/out --work-dir /tmp/bag/work
    python experiments/average_runs.py --runs /tmp/bag/out.json --work-dir /tmp/bag/work \\
        --members default,v1,v2
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tabular_suite import DEFAULT_SUITE, REPO, load_split

DEFAULT_BASELINES = REPO / "experiments" / "results" / "tabular_suite.json"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=Path, required=True, help="tabular_suite.py's <out>.json")
    p.add_argument("--work-dir", type=Path, required=True, help="tabular_suite.py's --work-dir")
    p.add_argument(
        "--members", required=True, help="variants to average, comma-separated; the first is the reference"
    )
    p.add_argument("--suite-dir", type=Path, default=DEFAULT_SUITE)
    p.add_argument(
        "--baselines", type=Path, default=DEFAULT_BASELINES, help="a JSON holding the baselines' records"
    )
    return p.parse_args(argv)


def test_score(pre, rows, predictions: list[pd.DataFrame]) -> float:
    """Accuracy or R² of the mean of ``predictions`` (``test_predictions.csv`` frames)."""
    from nmsnn.tools.compare import score

    if pre.task == "classification":
        columns = [c for c in predictions[0].columns if c.startswith("proba_")]
        proba = np.mean([p[columns].to_numpy() for p in predictions], axis=0)
        return score(pre, rows.y_test.reshape(-1), proba)["accuracy"]
    values = np.mean([p["prediction"].to_numpy() for p in predictions], axis=0)
    return score(pre, rows.y_test, values.reshape(-1, 1))["r2"]


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    members = [m.strip() for m in args.members.split(",") if m.strip()]
    suite = json.loads((args.suite_dir / "suite.json").read_text())
    runs: dict[tuple[str, int], dict[str, pd.DataFrame]] = defaultdict(dict)
    for r in json.loads(args.runs.read_text())["records"]:
        if r["kind"] == "nmsnn" and r.get("status", "ok") == "ok" and r["name"] in members:
            found = list(args.work_dir.glob(f"**/{r['run_name']}/test_predictions.csv"))
            if found:
                runs[(r["table"], r["seed"])][r["name"]] = pd.read_csv(found[0])
    baselines: dict[tuple[str, int], dict[str, float]] = defaultdict(dict)
    for r in json.loads(args.baselines.read_text())["records"]:
        if r["kind"] == "baseline" and r.get("status", "ok") == "ok":
            baselines[(r["table"], r["seed"])][r["name"]] = r["metrics"][
                "acc" if r["task"] == "classification" else "r2"
            ]

    scores: dict[str, dict[int, dict[str, float]]] = defaultdict(dict)
    tasks = {}
    for (table, seed), got in sorted(runs.items()):
        if not all(m in got for m in members) or not baselines.get((table, seed)):
            continue
        rows, pre = load_split(args.suite_dir / suite[table]["file"], suite[table]["target"], seed)
        tasks[table] = pre.task
        scores[table][seed] = {
            "first": test_score(pre, rows, [got[members[0]]]),
            "members": float(np.mean([test_score(pre, rows, [got[m]]) for m in members])),
            "average": test_score(pre, rows, [got[m] for m in members]),
        }

    kinds = ("first", "members", "average")
    print(f"Members: {', '.join(members)}. Cells: nmsnn − the best baseline (mean over the seeds).\n")
    print(
        f"| table | seeds | best baseline | {members[0]} alone | a member (mean) | the average of {len(members)} |"
    )
    print("|---|---|---|---|---|---|")
    gaps: dict[str, dict[str, list[float]]] = {k: defaultdict(list) for k in kinds}
    wins = dict.fromkeys(kinds, 0)
    for table, by_seed in scores.items():
        seeds = sorted(by_seed)
        names = set.intersection(*(set(baselines[(table, s)]) for s in seeds))
        means = {n: np.mean([baselines[(table, s)][n] for s in seeds]) for n in names}
        best = max(means, key=means.get)
        cells = []
        for k in kinds:
            gap = float(np.mean([by_seed[s][k] for s in seeds]) - means[best])
            gaps[k][tasks[table]].append(gap)
            wins[k] += gap >= -1e-6
            cells.append(f"{gap:+.3f}")
        seed_text = " ".join(map(str, seeds))
        print(f"| {table} | {seed_text} | {means[best]:.3f} ({best}) | " + " | ".join(cells) + " |")
    print()
    for k in kinds:
        means = ", ".join(f"{task} {np.mean(v):+.4f}" for task, v in sorted(gaps[k].items()))
        print(f"- {k}: ≥ the best baseline on {wins[k]} of {len(scores)} tables; mean gap {means}")


if __name__ == "__main__":
    main()
