"""``wages.csv`` is panel data: how much of the trees' lead there comes from knowing the person?

The suite's ``wages`` table holds 595 people, 7 consecutive rows (years) each; its time-invariant
columns (``ed``, ``sex``, ``black``) and ``exp`` rising by one a year identify a person. The
suite splits rows at random, so almost every test row's person also has rows in training. This
script measures, for seeds 0..4:

* **row split** (as the suite splits: ``nmsnn-train``'s split of ``seed``): the mean ``lwage`` of
  the test row's person in the training rows (no model at all), beside the suite's cached random
  forest and Ridge on the same test rows;
* **person split**: a fifth of the people held out (every row of theirs). nmsnn trains exactly as
  ``nmsnn-train data=csv data.path=<the other people's rows> data.target=lwage seed=S`` and is
  scored by ``nmsnn-eval ... +data.path=<held-out people> split=all``; the suite's baselines
  (same settings, same preprocessing: nmsnn's, fitted on the training people's train and
  validation rows) are scored on the same held-out rows.

Writes ``<out>.md`` and ``<out>.json``.

    python experiments/wages_panel.py --out experiments/results/wages_panel
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "experiments"))

from tabular_suite import (  # noqa: E402
    BASELINE_LABELS,
    DEFAULT_CACHE,
    DEFAULT_SUITE,
    load_split,
    make_baseline,
    mean_std,
    write_results,
)

SUITE_RESULTS = REPO / "experiments" / "results" / "tabular_suite.json"
ROWS_PER_PERSON = 7
TARGET = "lwage"
BASELINES = ("linear", "mlp", "rf", "hgb", "xgb", "lgbm")
LABELS = {**BASELINE_LABELS, "linear": "Ridge"}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--suite-dir", type=Path, default=DEFAULT_SUITE, help="folder with wages.csv")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="the suite's baseline cache")
    parser.add_argument(
        "--suite-results",
        type=Path,
        default=SUITE_RESULTS,
        help="the suite's records (nmsnn's row-split runs)",
    )
    parser.add_argument("--baselines", default=",".join(BASELINES), help="baselines on the person split")
    parser.add_argument("--out", type=Path, required=True, help="writes <out>.md and <out>.json")
    return parser.parse_args(argv)


def r2(y: np.ndarray, prediction: np.ndarray) -> float:
    from sklearn.metrics import r2_score

    return float(r2_score(y, prediction))


def row_split(
    path: Path, frame: pd.DataFrame, seed: int, cache: dict[str, Any], suite_runs: dict[int, float]
) -> dict[str, float]:
    """The suite's split of ``seed``: each test row predicted by its person's training mean,
    beside the suite's own results on those rows."""
    from nmsnn.data.datamodule import TabularDataModule

    datamodule = TabularDataModule(path=str(path), target=TARGET, split_seed=seed, shuffle_seed=seed)
    datamodule.setup("fit")
    person = pd.Series(np.arange(len(frame)) // ROWS_PER_PERSON)
    index = datamodule.split_index
    fit_rows = np.union1d(index["train"], index["val"])  # the same rows twice with data.folds
    means = frame[TARGET].iloc[fit_rows].groupby(person.iloc[fit_rows].to_numpy()).mean()
    test = index["test"]
    guess = person.iloc[test].map(means).fillna(frame[TARGET].iloc[fit_rows].mean())
    result = {"person mean": r2(frame[TARGET].iloc[test].to_numpy(), guess.to_numpy())}
    if seed in suite_runs:
        result["nmsnn"] = suite_runs[seed]
    for name in ("rf", "linear"):
        result[name] = cache[f"wages|{seed}|{name}"]["metrics"]["r2"]
    return result


def person_split(frame: pd.DataFrame, seed: int, work: Path, baselines: list[str]) -> dict[str, float]:
    """A fifth of the people held out: nmsnn (train and eval as a user runs them) and the baselines."""
    from nmsnn.tools.compare import unscale

    people = np.arange(len(frame)) // ROWS_PER_PERSON
    rng = np.random.default_rng(seed)
    held = np.isin(people, rng.choice(np.unique(people), len(np.unique(people)) // 5, replace=False))
    train_csv, held_csv = work / f"wages-train-s{seed}.csv", work / f"wages-heldout-s{seed}.csv"
    frame[~held].to_csv(train_csv, index=False)
    frame[held].to_csv(held_csv, index=False)
    y_held = frame.loc[held, TARGET].to_numpy()
    result = {"nmsnn": nmsnn_score(train_csv, held_csv, seed, work)}

    rows, pre = load_split(train_csv, TARGET, seed)
    x_held = pre.transform(frame[held], str(held_csv))
    for name in baselines:
        try:
            model = make_baseline(name, "regression", seed)
        except ImportError:  # xgboost / lightgbm: the bench extra
            continue
        model.fit(rows.x_fit, rows.y_fit.reshape(-1))  # the standardized target, as the suite fits
        result[name] = r2(y_held, unscale(pre, model.predict(x_held)))
    return result


def nmsnn_score(train_csv: Path, held_csv: Path, seed: int, work: Path) -> float:
    env = {**os.environ, "NMSNN_LOG_DIR": str(work / "logs")}
    run_name = f"wages-people-s{seed}"
    bin_dir = Path(sys.executable).parent
    train = [str(bin_dir / "nmsnn-train"), "data=csv", f"data.path={train_csv}", f"data.target={TARGET}"]
    train += [f"seed={seed}", f"run_name={run_name}", "logger=none"]
    subprocess.run(train, env=env, check=True, capture_output=True, text=True)
    checkpoint = work / "logs" / "train" / "runs" / run_name / "checkpoints" / "best.ckpt"
    evaluate = [str(bin_dir / "nmsnn-eval"), f"ckpt_path={checkpoint}", f"+data.path={held_csv}", "split=all"]
    done = subprocess.run(evaluate, env=env, check=True, capture_output=True, text=True)
    return float(json.loads(done.stdout.strip().splitlines()[-1])["all/r2"])


def report(records: list[dict[str, Any]], command: str) -> str:
    def cell(split: str, name: str) -> str:
        values = [r[split][name] for r in records if name in r[split]]
        mean, std = mean_std(values)
        return f"{mean:.3f} ± {std:.3f}"

    seeds = ", ".join(str(r["seed"]) for r in records)
    person = [n for n in ("nmsnn", *BASELINES) if n in records[0]["person split"]]
    lines = [
        "# `wages`: a row split lets a model recognise the person",
        "",
        "Generated by `experiments/wages_panel.py`; do not edit by hand.",
        "",
        f"```bash\n{command}\n```",
        "",
        f"Date: {datetime.now(timezone.utc):%Y-%m-%d %H:%M:%S} UTC. Seeds {seeds}; test R² of `lwage`, "
        "mean ± std over seeds. `wages.csv` holds 595 people × 7 years. **Row split**: the suite's "
        "(`nmsnn-train`'s test rows of each seed); `person mean` predicts a test row by the mean "
        "`lwage` of the same person's training rows, no model at all; nmsnn, RF and Ridge are the "
        "suite's results on the same rows (Table 1). **Person split**: every row of a fifth of the people held "
        "out; nmsnn trained by `nmsnn-train` on the other people's rows with every default and scored "
        "by `nmsnn-eval ... split=all` on the held-out ones; the suite's baselines fitted on the same "
        "training rows with the same preprocessing.",
        "",
        "| row split | R² |",
        "|---|---|",
        *(
            f"| {label} | {cell('row split', name)} |"
            for name, label in (
                ("person mean", "person mean (no model)"),
                ("nmsnn", "nmsnn default"),
                ("rf", "RF"),
                ("linear", "Ridge"),
            )
        ),
        "",
        "| person split | R² |",
        "|---|---|",
        *(f"| {LABELS.get(n, n)} | {cell('person split', n)} |" for n in person),
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    path = args.suite_dir / "wages.csv"
    frame = pd.read_csv(path)
    cache = json.loads(args.cache.read_text())
    suite = json.loads(args.suite_results.read_text())["records"]
    suite_runs = {
        r["seed"]: r["metrics"]["r2"]
        for r in suite
        if r["table"] == "wages" and r["kind"] == "nmsnn" and r["name"] == "default" and r["status"] == "ok"
    }
    records = []
    with tempfile.TemporaryDirectory(prefix="wages-panel-") as tmp:
        for seed in args.seeds:
            record = {"seed": seed, "row split": row_split(path, frame, seed, cache, suite_runs)}
            record["person split"] = person_split(frame, seed, Path(tmp), args.baselines.split(","))
            records.append(record)
            print(json.dumps(record), flush=True)
    given = sys.argv[1:] if argv is None else argv
    command = " ".join(["python", "experiments/wages_panel.py", *given])
    write_results(args.out, records, report(records, command))
    return 0


if __name__ == "__main__":
    sys.exit(main())
