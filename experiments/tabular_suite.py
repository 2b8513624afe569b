"""nmsnn against tabular baselines on the 15 real tables of the tabular suite.

For every table of ``suite.json`` (``/work/shared/data/tabular-suite`` by default) and every
seed, this script

* runs nmsnn exactly as a user does: a ``nmsnn-train data=csv data.path=FILE data.target=TARGET
  seed=S`` subprocess per *variant* (a named list of overrides; built in: ``default``, no
  overrides, ``heaviside``, ``model.neuron.spike_fn=heaviside``, and ``old-default``, the
  default before this suite), with ``NMSNN_LOG_DIR`` set
  to a work folder, timed from start to exit; it reads the run's ``metrics.json``;
* builds the same split (``TabularDataModule(path, target, split_seed=S, shuffle_seed=S)``, every
  other setting at its default) and fits LogisticRegression / Ridge, an MLP (128), a random
  forest, HistGradientBoosting, XGBoost and LightGBM (the last two when installed: the ``bench``
  extra) on the train + validation rows, scored on the same test rows as nmsnn.

The main metric is test accuracy (classification) or test R² on the original target scale, as
mean ± std over seeds. Baseline results depend only on (table, seed, model, library versions),
so they are cached (``--cache``) and reused unless ``--refresh-baselines``. Records are merged
into ``<out>.json`` by (table, seed, variant or baseline), so a suite can be run in pieces;
``<out>.md`` is written from the JSON.

    python experiments/tabular_suite.py                       # 15 tables x seeds 0..4, the built-in variants
    python experiments/tabular_suite.py --quick               # 7 tables x seeds 0 1
    python experiments/tabular_suite.py --variant old=trainer.max_epochs=60,data.batch_size=64 \\
        --variants default,old                                # a variant of your own beside the default
    python experiments/tabular_suite.py --only-baselines      # fill the baseline cache
    python experiments/tabular_suite.py --report-only         # rebuild <out>.md from <out>.json
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import json
import math
import os
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import time
import warnings
from concurrent.futures import ThreadPoolExecutor, as_completed
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
DEFAULT_SUITE = REPO.parent / "shared" / "data" / "tabular-suite"
DEFAULT_OUT = REPO / "experiments" / "results" / "tabular_suite"
DEFAULT_CACHE = REPO / "experiments" / "results" / "tabular_suite_baselines.json"
QUICK_TABLES = ("birthwt", "chile", "titanic", "kyphosis", "cpus", "housing", "caschool")
QUICK_SEEDS = (0, 1)
# The default before the suite existed (60 epochs, batches of 64, the uniform-noise encoder,
# weight decay 3, a constant learning rate, patience 15, one network of 128 graded-spike neurons
# reading the scaled features alone), kept to show what the suite changed.
OLD_DEFAULT = [
    "model.encoder=uniform_noise",
    "model.hidden=[128]",
    "model.ensemble=1",
    "model.neuron.spike_fn=relu",
    "data.bins=0",
    "data.folds=0",
    "model.optimizer.weight_decay=3.0",
    "model.scheduler=null",
    "callbacks.training_budget=null",
    "trainer.max_epochs=60",
    "data.batch_size=64",
    "callbacks.early_stopping.patience=15",
]
BUILTIN_VARIANTS = {
    "default": [],
    "heaviside": ["model.neuron.spike_fn=heaviside"],
    "old-default": OLD_DEFAULT,
}
# Short names (the --baselines choices and the table columns) -> the library each depends on.
BASELINES = {
    "linear": "scikit-learn",
    "mlp": "scikit-learn",
    "rf": "scikit-learn",
    "hgb": "scikit-learn",
    "xgb": "xgboost",
    "lgbm": "lightgbm",
}
BASELINE_LABELS = {
    "linear": "linear",
    "mlp": "MLP (128)",
    "rf": "RF",
    "hgb": "HGB",
    "xgb": "XGBoost",
    "lgbm": "LightGBM",
}
MAIN_METRIC = {"classification": "acc", "regression": "r2"}
QUIET = ("logger=none", "trainer.enable_progress_bar=false")


# ------------------------------------------------------------------------------ options
def split_overrides(text: str) -> list[str]:
    """``a=1,b=[2,3],c=x`` -> ``["a=1", "b=[2,3]", "c=x"]``: split on top-level commas before ``key=``."""
    parts, depth, start = [], 0, 0
    for i, char in enumerate(text):
        if char in "[{(":
            depth += 1
        elif char in "]})":
            depth -= 1
        if char == "," and depth == 0 and re.match(r"[+~]*[\w.@/-]+=", text[i + 1 :]):
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return [p.strip() for p in parts if p.strip()]


def parse_variant(text: str) -> tuple[str, list[str]]:
    """``NAME=override1,override2`` -> ``(NAME, [override1, override2])``."""
    name, _, overrides = text.partition("=")
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise argparse.ArgumentTypeError(f"bad variant name {name!r} in {text!r}: use letters, digits, _.-")
    return name, split_overrides(overrides)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add = parser.add_argument
    add("--seeds", type=int, nargs="+", help="seeds (default 0 1 2 3 4; --quick: 0 1)")
    add("--tables", nargs="+", help="tables of suite.json (default: all, in its order)")
    add("--quick", action="store_true", help=f"seeds 0 1 on {', '.join(QUICK_TABLES)}")
    add(
        "--variant",
        action="append",
        type=parse_variant,
        default=[],
        metavar="NAME=OVERRIDES",
        help="define a variant: nmsnn-train overrides separated by commas (repeatable)",
    )
    add(
        "--variants",
        action="append",
        metavar="A,B",
        help="variants to run (repeatable; default: default, heaviside, old-default and every --variant)",
    )
    add(
        "--sweep",
        action="append",
        type=parse_variant,
        default=[],
        metavar="NAME=OVERRIDES",
        help="a sweep run as a variant: one `nmsnn-train --multirun hydra/launcher=population` of "
        "these overrides (comma lists sweep) per table and seed; the job with the lowest val/loss "
        "is its result (repeatable)",
    )
    add("--baselines", default=",".join(BASELINES), help=f"baselines to fit (default: {','.join(BASELINES)})")
    add("--only-nmsnn", action="store_true", help="run no baselines")
    add("--only-baselines", action="store_true", help="run no nmsnn variants")
    add("--refresh-baselines", action="store_true", help="refit baselines even when cached")
    add("--out", type=Path, default=DEFAULT_OUT, help="writes <out>.json and <out>.md")
    add("--cache", type=Path, default=DEFAULT_CACHE, help="baseline cache JSON")
    add("--suite-dir", type=Path, default=DEFAULT_SUITE, help="folder with suite.json and the CSVs")
    add("--work-dir", type=Path, default=Path("/tmp/nmsnn-suite"), help="NMSNN_LOG_DIR of the runs")
    add("--jobs", type=int, default=1, help="nmsnn-train processes at once (wall times then overlap)")
    add("--timeout-min", type=float, default=120.0, help="kill an nmsnn-train run after this long")
    add("--fresh", action="store_true", help="drop the records already in <out>.json")
    add("--report-only", action="store_true", help="only rebuild <out>.md from <out>.json")
    add(
        "--sweep-results",
        type=Path,
        metavar="JSON",
        help="the JSON of a --sweep run to show as a second table in <out>.md, beside this JSON's "
        "default on the same seeds (remembered in <out>.json)",
    )
    args = parser.parse_args(argv)
    args.suite_dir = (REPO / args.suite_dir).resolve()  # relative to the repo root, not the cwd
    args.out, args.cache, args.work_dir = (Path(p).absolute() for p in (args.out, args.cache, args.work_dir))
    return args


def chosen_variants(args: argparse.Namespace) -> dict[str, list[str]]:
    """The variants to run, in order, with their overrides."""
    known = {**BUILTIN_VARIANTS, **dict(args.variant)}
    if args.variants:
        names = [n.strip() for group in args.variants for n in group.split(",") if n.strip()]
    else:
        names = [*BUILTIN_VARIANTS, *(n for n, _ in args.variant if n not in BUILTIN_VARIANTS)]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise SystemExit(f"unknown variant(s) {unknown}: define them with --variant NAME=overrides")
    return {n: known[n] for n in dict.fromkeys(names)}


def chosen_baselines(text: str) -> list[str]:
    """The requested baselines that can run here (XGBoost and LightGBM only when importable)."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in BASELINES]
    if unknown:
        raise SystemExit(f"unknown baseline(s) {unknown}; choose from {', '.join(BASELINES)}")
    missing = [n for n in names if library_version(BASELINES[n]) is None]
    if missing:
        print(f"skipping {', '.join(missing)}: not installed (pip install 'nmsnn[bench]')")
    return [n for n in names if n not in missing]


def library_version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def all_versions() -> dict[str, str]:
    from nmsnn.tools.compare import versions

    found = versions()
    for package in ("xgboost", "lightgbm"):
        found.setdefault(package, library_version(package) or "not installed")
    return found


# ------------------------------------------------------------------------------ the data
def load_split(path: Path, target: str, seed: int) -> tuple[Any, Any]:
    """The test rows nmsnn-train's split gives for ``seed``: (``Rows``, the fitted preprocessor)."""
    from nmsnn.data.datamodule import TabularDataModule
    from nmsnn.tools.compare import split_rows

    datamodule = TabularDataModule(
        path=str(path),
        target=target,
        split_seed=seed,
        shuffle_seed=seed,
        scaler="standard",
        target_scaler="standard",
        bins=0,  # the baselines get the scaled columns, not the spiking model's input encoding
    )
    datamodule.setup("fit")
    return split_rows(datamodule), datamodule.preprocessor


def file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def make_baseline(name: str, task: str, seed: int) -> Any:
    """One unfitted baseline estimator."""
    from sklearn import ensemble, linear_model, neural_network

    classify = task == "classification"
    if name == "linear":
        return linear_model.LogisticRegression(max_iter=5000) if classify else linear_model.Ridge()
    if name == "mlp":
        mlp = neural_network.MLPClassifier if classify else neural_network.MLPRegressor
        return mlp(hidden_layer_sizes=(128,), early_stopping=True, max_iter=500, random_state=seed)
    if name == "rf":
        forest = ensemble.RandomForestClassifier if classify else ensemble.RandomForestRegressor
        return forest(n_estimators=300, random_state=seed, n_jobs=-1)
    if name == "hgb":
        hgb = ensemble.HistGradientBoostingClassifier if classify else ensemble.HistGradientBoostingRegressor
        return hgb(random_state=seed)
    if name == "xgb":
        import xgboost

        return (xgboost.XGBClassifier if classify else xgboost.XGBRegressor)(random_state=seed)
    import lightgbm

    return (lightgbm.LGBMClassifier if classify else lightgbm.LGBMRegressor)(random_state=seed, verbose=-1)


def fit_baseline(name: str, rows: Any, pre: Any, seed: int) -> dict[str, Any]:
    """Fit one baseline on the train + val rows; its test metrics and fit time."""
    from sklearn.exceptions import ConvergenceWarning

    from nmsnn.tools.compare import score, unscale

    model = make_baseline(name, pre.task, seed)
    y_fit = rows.y_fit.reshape(-1)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.filterwarnings("ignore", message=".*feature names.*")
        model.fit(rows.x_fit, y_fit.astype(np.int64) if pre.task == "classification" else y_fit)
    fit_s = time.perf_counter() - start
    if pre.task == "classification":
        proba = np.zeros((len(rows.x_test), pre.num_outputs))
        proba[:, np.asarray(model.classes_, dtype=np.int64)] = model.predict_proba(rows.x_test)
        metrics = score(pre, rows.y_test.reshape(-1), proba)
        metrics["acc"] = metrics.pop("accuracy")  # the name nmsnn's metrics.json uses
    else:
        metrics = score(pre, rows.y_test, unscale(pre, model.predict(rows.x_test)))
    return {"metrics": metrics, "fit_s": round(fit_s, 4)}


# ------------------------------------------------------------------------------ running
def run_baselines(job: dict[str, Any], names: list[str], cache: dict[str, Any], refresh: bool) -> list[dict]:
    """Baseline records for one (table, seed), from the cache where it holds a valid entry."""
    records = []
    for name in names:
        key = f"{job['table']}|{job['seed']}|{name}"
        stamp = {"library": f"{BASELINES[name]} {library_version(BASELINES[name])}", "file": job["digest"]}
        entry = cache.get(key)
        cached = not refresh and entry is not None and entry.get("stamp") == stamp
        cached = cached and entry.get("split") == job["split"]
        if not cached:
            entry = {
                "stamp": stamp,
                "split": job["split"],
                **fit_baseline(name, job["rows"], job["pre"], job["seed"]),
            }
            cache[key] = entry
        record = {**job["base"], "kind": "baseline", "name": name, "status": "ok", "split": job["split"]}
        records.append({**record, "metrics": entry["metrics"], "fit_s": entry["fit_s"], "cached": cached})
        progress(records[-1], entry["fit_s"], " (cached)" if cached else "")
    return records


def train_program() -> str:
    """``nmsnn-train`` of this Python's environment (else the one on PATH)."""
    exe = Path(sys.executable).parent / "nmsnn-train"
    return str(exe) if exe.exists() else (shutil.which("nmsnn-train") or "nmsnn-train")


def nmsnn_command(job: dict[str, Any], variant: str, overrides: list[str], run_name: str) -> list[str]:
    program = train_program()
    return [
        program,
        "data=csv",
        f"data.path={job['path']}",
        f"data.target={job['target']}",
        f"seed={job['seed']}",
        f"run_name={run_name}",
        *QUIET,
        *overrides,
    ]


def timed_run(command: list[str], work: Path, timeout_s: float, record: dict[str, Any]) -> str | None:
    """Run ``command`` in ``work`` (its ``NMSNN_LOG_DIR``); put its wall time and command line in
    ``record``; return why it failed (``None``: exit 0)."""
    env = {**os.environ, "NMSNN_LOG_DIR": str(work)}
    work.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    try:
        done = subprocess.run(command, env=env, cwd=work, capture_output=True, text=True, timeout=timeout_s)
        failure = (
            None if done.returncode == 0 else f"exit {done.returncode}: " + tail(done.stderr or done.stdout)
        )
    except subprocess.TimeoutExpired:
        failure = f"killed after {timeout_s:.0f} s"
    record["wall_s"] = round(time.perf_counter() - start, 2)
    record["command"] = shlex.join(["nmsnn-train", *command[1:]])
    return failure


def run_sweep(
    job: dict[str, Any], name: str, overrides: list[str], work: Path, timeout_s: float
) -> list[dict]:
    """One ``nmsnn-train --multirun`` over ``overrides`` with the population launcher: two
    records, ``name`` for the job its summary picks (``sweep_pick``, the one-standard-error rule)
    and ``<name>-lowest`` for the job with the lowest ``val/loss``, both picked on validation rows
    only; each holds that job's test metrics, the number of jobs, its overrides and the wall time
    of the whole sweep."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S-%f")
    sweep_dir = work / "sweeps" / f"{job['table']}-s{job['seed']}-{name}-{stamp}"
    command = nmsnn_command(
        job, name, ["hydra/launcher=population", f"hydra.sweep.dir={sweep_dir}", *overrides], "sweep"
    )
    command = [command[0], "--multirun", *(c for c in command[1:] if not c.startswith("run_name="))]
    record = {**job["base"], "kind": "nmsnn", "name": name, "overrides": overrides, "split": job["split"]}
    record["sweep"] = True
    failure = timed_run(command, work, timeout_s, record)
    lowest = {**record, "name": f"{name}-lowest", "pick_rule": "lowest val/loss"}
    record["pick_rule"] = "the summary's pick (one-standard-error rule)"
    summary = sweep_dir / "summary.csv"
    if failure or not summary.is_file():
        error = failure or f"no {summary}"
        return [{**r, "status": "failed", "error": error} for r in (record, lowest)]
    import pandas as pd

    frame = pd.read_csv(summary)
    ok = frame[frame["status"] == "ok"]
    if ok.empty or "val/loss" not in ok or not frame["pick"].any():
        error = "no finished job with a val/loss"
        return [{**r, "status": "failed", "error": error} for r in (record, lowest)]
    for out, pick in ((record, frame[frame["pick"]].iloc[0]), (lowest, ok.loc[ok["val/loss"].idxmin()])):
        metrics = {k.removeprefix("test/"): float(v) for k, v in pick.items() if str(k).startswith("test/")}
        out.update(
            status="ok",
            metrics=metrics,
            epochs=int(pick.get("epochs", 0)),
            synops_per_row=metrics.get("synops_per_row"),
            jobs=len(frame),
            picked=str(pick["overrides"]),
            picked_job=int(pick["job"]),
        )
    return [record, lowest]


def run_nmsnn(job: dict[str, Any], variant: str, overrides: list[str], work: Path, timeout_s: float) -> dict:
    """One ``nmsnn-train`` subprocess: its record (test metrics, wall time, epochs, synops/row)."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S-%f")
    run_name = f"{job['table']}-s{job['seed']}-{variant}-{stamp}"
    command = nmsnn_command(job, variant, overrides, run_name)
    record = {**job["base"], "kind": "nmsnn", "name": variant, "overrides": overrides, "split": job["split"]}
    record["run_name"] = run_name
    failure = timed_run(command, work, timeout_s, record)
    if failure:
        return {**record, "status": "failed", "error": failure}
    run_dir = work / "train" / "runs" / run_name
    metrics = json.loads((run_dir / "metrics.json").read_text())["metrics"]
    record.update(
        status="ok",
        metrics={k.removeprefix("test/"): v for k, v in metrics.items() if k.startswith("test/")},
        epochs=int(metrics.get("epochs", 0)),
        synops_per_row=metrics.get("test/synops_per_row"),
        test_rows=sum(1 for _ in (run_dir / "test_predictions.csv").open()) - 1,
    )
    expected = (job.get("split") or {}).get("test")
    if expected is not None and record["test_rows"] != expected:
        record.update(
            status="mismatch", error=f"nmsnn tested {record['test_rows']} rows, baselines {expected}"
        )
    return record


def tail(text: str, lines: int = 8) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def progress(record: dict[str, Any], seconds: float, note: str = "") -> None:
    """One line per finished run."""
    metric = MAIN_METRIC[record["task"]]
    value = record.get("metrics", {}).get(metric)
    shown = f"{metric}={value:.3f}" if value is not None else record.get("status", "failed").upper()
    kind = "nmsnn" if record["kind"] == "nmsnn" else "baseline"
    print(
        f"{record['table']:<13} seed {record['seed']}  {kind} {record['name']:<12} {shown:<11} "
        f"{seconds:7.1f} s{note}",
        flush=True,
    )
    if record.get("error"):
        print("    " + record["error"].replace("\n", "\n    "), flush=True)


def prepare(table: str, spec: dict[str, Any], suite_dir: Path, seed: int) -> dict[str, Any]:
    """What every run of (table, seed) shares: the file, the split and the record fields."""
    path = (suite_dir / spec["file"]).resolve()
    job = {"table": table, "seed": seed, "path": path, "target": spec["target"], "split": None}
    job["base"] = {"table": table, "task": spec["task"], "seed": seed}
    try:
        job["digest"] = file_digest(path)
        job["rows"], job["pre"] = load_split(path, spec["target"], seed)
        job["split"] = job["rows"].sizes
    except Exception as err:  # the data module refuses the table: recorded, not fatal
        job["error"] = f"{type(err).__name__}: {err}"
    return job


def run_suite(args: argparse.Namespace, suite: dict, store: dict, save) -> None:
    """Baselines first (table by table), then every nmsnn run; each finished record is stored."""
    variants = {} if args.only_baselines else chosen_variants(args)
    names = [] if args.only_nmsnn else chosen_baselines(args.baselines)
    cache = load_json(args.cache, {})
    jobs = [prepare(t, suite[t], args.suite_dir, s) for t in args.tables for s in args.seeds]
    for job in jobs:
        if names and "error" in job:
            failed = {**job["base"], "kind": "baseline", "status": "failed", "error": job["error"]}
            for name in names:
                put(store, {**failed, "name": name})
            progress({**failed, "name": ",".join(names)}, 0.0)
        elif names:
            for record in run_baselines(job, names, cache, args.refresh_baselines):
                put(store, record)
            write_json(args.cache, cache)
    save()
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        futures = [
            pool.submit(run_nmsnn, job, name, overrides, args.work_dir, args.timeout_min * 60)
            for job in jobs
            for name, overrides in variants.items()
        ]
        futures += [
            pool.submit(run_sweep, job, name, overrides, args.work_dir, args.timeout_min * 60)
            for job in jobs
            for name, overrides in ({} if args.only_baselines else dict(args.sweep)).items()
        ]
        for future in as_completed(futures):
            result = future.result()
            for record in result if isinstance(result, list) else [result]:
                progress(record, record["wall_s"])
                put(store, record)
            save()


# ------------------------------------------------------------------------------ records
def load_json(path: Path, default: Any) -> Any:
    return json.loads(path.read_text()) if path.is_file() else default


def write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=False) + "\n")
    tmp.replace(path)


def write_results(out: Path, records: Any, markdown: str) -> None:
    """``<out>.json`` (the records) and ``<out>.md`` (their report), for the scripts that read
    this suite's runs back."""
    write_json(out.with_suffix(".json"), records)
    out.with_suffix(".md").write_text(markdown)
    print(f"wrote {out.with_suffix('.md')}")


def this_command() -> str:
    """The command line that ran this script, its path relative to the repository (for a report)."""
    script = repo_relative(Path(sys.argv[0])) if Path(sys.argv[0]).is_absolute() else sys.argv[0]
    return "python " + " ".join([script, *sys.argv[1:]])


def repo_relative(path: Path) -> str:
    """``path`` relative to the repository root when it lies inside it (stored in the JSON)."""
    path = Path(path).absolute()
    try:
        return str(path.relative_to(REPO))
    except ValueError:
        return str(path)


def record_key(record: dict[str, Any]) -> tuple:
    return record["table"], record["seed"], record["kind"], record["name"]


def put(store: dict[str, Any], record: dict[str, Any]) -> None:
    """Add ``record``, replacing the stored one with the same (table, seed, variant/baseline)."""
    key = record_key(record)
    store["records"] = [r for r in store["records"] if record_key(r) != key] + [record]


def now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


# ------------------------------------------------------------------------------ the report
def mean_std(values: list[float]) -> tuple[float, float]:
    if not values:
        return math.nan, math.nan
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else math.nan


def pm(values: list[float]) -> str:
    mean, std = mean_std(values)
    if math.isnan(mean):
        return "–"
    return f"{mean:.3f}" if math.isnan(std) else f"{mean:.3f} ± {std:.3f}"


def group(records: list[dict[str, Any]], suite_order: list[str]) -> dict[str, dict[str, Any]]:
    """``{table: {"task", "split", "models": {(kind, name): [records]}}}``, tables in suite order."""
    tables: dict[str, dict[str, Any]] = {}
    for r in records:
        entry = tables.setdefault(r["table"], {"task": r["task"], "split": None, "models": {}})
        entry["models"].setdefault((r["kind"], r["name"]), []).append(r)
        entry["split"] = entry["split"] or r.get("split")
    order = {t: i for i, t in enumerate(suite_order)}
    return dict(sorted(tables.items(), key=lambda kv: order.get(kv[0], len(order))))


def column_names(records: list[dict[str, Any]]) -> tuple[list[str], list[str]]:
    """Variants in the order first seen (``default`` first) and baselines in BASELINES order."""
    variants = list(dict.fromkeys(r["name"] for r in records if r["kind"] == "nmsnn"))
    variants.sort(key=lambda v: v != "default")
    seen = {r["name"] for r in records if r["kind"] == "baseline"}
    return variants, [b for b in BASELINES if b in seen]


def values(runs: list[dict[str, Any]], key: str, metric: str | None = None) -> list[float]:
    """One value per successful run: a test metric, or a record field such as ``wall_s``."""
    ok = [r for r in runs if r.get("status") == "ok"]
    picked = [r["metrics"].get(metric) for r in ok] if key == "metrics" else [r.get(key) for r in ok]
    return [float(v) for v in picked if v is not None]


def cell(runs: list[dict[str, Any]] | None, metric: str) -> str:
    """``mean ± std``, with the failed runs counted, e.g. ``0.71 ± 0.02, failed (1/5)``."""
    if not runs:
        return ""
    text = pm(values(runs, "metrics", metric))
    bad = [r for r in runs if r.get("status") != "ok"]
    if bad:
        word = "mismatch" if all(r["status"] == "mismatch" for r in bad) else "failed"
        note = f"{word} ({len(bad)}/{len(runs)})"
        text = note if text == "–" else f"{text}, {note}"
    return text


# nmsnn's metrics are float32 (torchmetrics), the baselines' float64: the same 28 of 38 rows
# right is 0.73684210 against 0.736842105, so differences below TIE are ties, not losses (one
# row of the largest test split is 2e-4)
TIE = 1e-6


def gap(mine: float, theirs: float) -> float:
    """``mine - theirs``, 0 within :data:`TIE`."""
    return 0.0 if abs(mine - theirs) < TIE else mine - theirs


def table_stats(entry: dict[str, Any], variant: str, baselines: list[str]) -> dict[str, Any]:
    """A variant's mean against the baselines' on one table: rank, gaps, best, linear, times."""
    metric = MAIN_METRIC[entry["task"]]
    models = entry["models"]
    means = {
        b: mean_std(values(models[("baseline", b)], "metrics", metric))[0]
        for b in baselines
        if ("baseline", b) in models
    }
    means = {b: m for b, m in means.items() if not math.isnan(m)}
    mine = mean_std(values(models.get(("nmsnn", variant), []), "metrics", metric))[0]
    best = max(means, key=means.get) if means else None
    fits = {b: mean_std(values(models[("baseline", b)], "fit_s"))[0] for b in means}
    slowest = max(fits, key=fits.get) if fits else None
    walls = values(models.get(("nmsnn", variant), []), "wall_s")
    return {
        "mean": mine,
        "rank": 1 + sum(m > mine + TIE for m in means.values()) if not math.isnan(mine) else None,
        "best": best,
        "gap_best": gap(mine, means[best]) if best else math.nan,
        "gap_linear": gap(mine, means["linear"]) if "linear" in means else math.nan,
        "wall": mean_std(walls)[0],
        "wall_max": max(walls) if walls else math.nan,
        "slowest": slowest,
        "slowest_s": fits[slowest] if slowest else math.nan,
        "synops": mean_std(values(models.get(("nmsnn", variant), []), "synops_per_row"))[0],
        "epochs": mean_std(values(models.get(("nmsnn", variant), []), "epochs"))[0],
    }


def signed(x: float) -> str:
    return "–" if math.isnan(x) else f"{x:+.3f}"


def seconds(x: float) -> str:
    return "–" if math.isnan(x) else f"{x:.1f}"


def rows_text(split: dict[str, int] | None, listed: Any) -> str:
    """Rows used (and test rows), or the row count suite.json lists when no split was made."""
    return f"{sum(split.values())} ({split['test']} test)" if split else f"{listed or '?'} (file)"


def comparison_cells(entry: dict[str, Any], ref: str | None, baselines: list[str]) -> list[str]:
    """Rank, gap to the best baseline, gap to linear, wall time (with ``ref``), slowest baseline fit."""
    s = table_stats(entry, ref, baselines)
    slow = f"{seconds(s['slowest_s'])} ({BASELINE_LABELS[s['slowest']]})" if s["slowest"] else "–"
    if ref is None:
        return [slow]
    if math.isnan(s["mean"]):
        return ["–"] * 4 + [slow]
    fitted = sum(("baseline", b) in entry["models"] for b in baselines)
    best = f"{signed(s['gap_best'])} ({BASELINE_LABELS[s['best']]})" if s["best"] else "–"
    return [f"{s['rank']} / {1 + fitted}", best, signed(s["gap_linear"]), seconds(s["wall"]), slow]


def main_table(
    store: dict, tables: dict, variants: list[str], baselines: list[str], ref: str | None
) -> list[str]:
    """Table 1: per table the main metric of every variant and baseline, and the reference's gaps."""
    head = ["table", "task", "rows", *(f"nmsnn {v}" for v in variants)]
    head += [BASELINE_LABELS[b] for b in baselines]
    if ref is not None:
        head += [f"rank ({ref})", "nmsnn − best", "nmsnn − linear", "nmsnn-train s"]
    head.append("slowest baseline fit s")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for table, entry in tables.items():
        metric = MAIN_METRIC[entry["task"]]
        models = entry["models"]
        listed = store.get("suite", {}).get(table, {}).get("rows")
        cells = [table, entry["task"], rows_text(entry["split"], listed)]
        cells += [cell(models.get(("nmsnn", v)), metric) for v in variants]
        cells += [cell(models.get(("baseline", b)), metric) for b in baselines]
        lines.append("| " + " | ".join(cells + comparison_cells(entry, ref, baselines)) + " |")
    return lines


def summary_lines(tables: dict, variants: list[str], baselines: list[str]) -> list[str]:
    """Per variant: mean gap to the best baseline per task, wins, worst gap to linear, time, synops."""
    lines = []
    for v in variants:
        stats = {t: table_stats(e, v, baselines) for t, e in tables.items()}
        stats = {t: s for t, s in stats.items() if not math.isnan(s["mean"])}
        parts = []
        for task in ("classification", "regression"):
            gaps = [s["gap_best"] for t, s in stats.items() if tables[t]["task"] == task]
            gaps = [g for g in gaps if not math.isnan(g)]
            if gaps:
                parts.append(
                    f"mean nmsnn − best over {len(gaps)} {task} tables {statistics.fmean(gaps):+.3f}"
                )
            lin = [(s["gap_linear"], t) for t, s in stats.items() if tables[t]["task"] == task]
            lin = [x for x in lin if not math.isnan(x[0])]
            if lin:
                parts.append(f"worst nmsnn − linear ({task}) {min(lin)[0]:+.3f} on {min(lin)[1]}")
        wins = sum(s["gap_best"] >= 0 for s in stats.values())
        parts.append(f"≥ the best baseline on {wins} of {len(stats)} tables")
        walls = [(s["wall_max"], t) for t, s in stats.items() if not math.isnan(s["wall_max"])]
        if walls:
            parts.append(f"longest nmsnn-train run {max(walls)[0]:.1f} s ({max(walls)[1]})")
        synops = [s["synops"] for s in stats.values() if not math.isnan(s["synops"])]
        if synops:
            parts.append(f"synaptic ops per test row {statistics.fmean(synops):,.0f} (mean over tables)")
        lines.append(f"- **{v}**: " + "; ".join(parts) + ".")
    return lines


def variant_table(tables: dict, variants: list[str]) -> list[str]:
    """Table 2: per table and variant, epochs, nmsnn-train wall time and synaptic ops per row."""
    head = ["table", *(f"{v}: {what}" for v in variants for what in ("epochs", "wall s", "synops/row"))]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for table, entry in tables.items():
        if not any(("nmsnn", v) in entry["models"] for v in variants):
            continue
        cells = [table]
        for v in variants:
            s = table_stats(entry, v, [])
            cells += [seconds(s["epochs"]), seconds(s["wall"])]
            cells.append("–" if math.isnan(s["synops"]) else f"{s['synops']:,.0f}")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def variant_lines(records: list[dict[str, Any]], variants: list[str]) -> list[str]:
    lines = []
    for v in variants:
        seen = {tuple(r.get("overrides", [])) for r in records if r["kind"] == "nmsnn" and r["name"] == v}
        shown = " / ".join(" ".join(o) or "(none)" for o in sorted(seen))
        note = " (the records mix these override sets)" if len(seen) > 1 else ""
        sweeps = [r for r in records if r["kind"] == "nmsnn" and r["name"] == v and r.get("sweep")]
        if sweeps:
            jobs = sorted({r.get("jobs") for r in sweeps if r.get("jobs")})
            rules = sorted({r.get("pick_rule", "lowest val/loss") for r in sweeps})
            rules = [f"the job with the {x}" if x.startswith("lowest") else x for x in rules]
            lines.append(
                f"- `{v}`: a sweep, `nmsnn-train --multirun hydra/launcher=population ... {shown}`"
                f" ({', '.join(map(str, jobs))} jobs per table and seed){note}; its result is "
                f"{rules[0] if len(rules) == 1 else ' / '.join(rules)}, picked on validation rows "
                "only; its time the whole sweep's"
            )
            continue
        lines.append(
            f"- `{v}`: `nmsnn-train ... {shown}`{note}" if shown != "(none)" else f"- `{v}`: no overrides"
        )
    return lines


def failure_lines(records: list[dict[str, Any]]) -> list[str]:
    """One line per (table, kind, error): the runs that failed with it."""
    failed: dict[tuple[str, str, str], dict[str, set]] = {}
    for r in records:
        if r.get("status") != "ok":
            error = (r.get("error") or r["status"]).strip().splitlines()[-1]
            entry = failed.setdefault((r["table"], r["kind"], error), {"names": set(), "seeds": set()})
            entry["names"].add(r["name"])
            entry["seeds"].add(r["seed"])
    return [
        f"- {table}, {kind} {', '.join(sorted(e['names']))}, seeds "
        f"{', '.join(map(str, sorted(e['seeds'])))}: {error}"
        for (table, kind, error), e in failed.items()
    ] or ["None."]


def header_lines(store: dict[str, Any], variants: list[str]) -> list[str]:
    """The commands, date, machine, versions, the split and what the cells are."""
    records = store["records"]
    seeds = sorted({r["seed"] for r in records})
    return [
        "# nmsnn on the tabular suite against tabular baselines",
        "",
        "Generated by `experiments/tabular_suite.py` from its JSON; do not edit by hand.",
        "",
        "Made with (latest last):",
        "",
        "```bash",
        *(c["command"] + f"   # {c['date']}" for c in store.get("commands", [])),
        "```",
        "",
        f"Date: {store.get('date')}. Machine: {store.get('machine')}. Versions: "
        + ", ".join(f"{k} {v}" for k, v in store.get("versions", {}).items())
        + ".",
        "",
        f"Seeds: {', '.join(map(str, seeds))}. Every cell is the mean ± std (n−1) over seeds of **test "
        "accuracy** (classification) or **test R²** on the original target scale (regression). For "
        "each seed the rows are split as `nmsnn-train data=csv ... seed=S` splits them (test 20 %, "
        "then validation 20 % of the rest, stratified for classification). nmsnn trains on the "
        "training rows and uses the validation rows for early stopping and checkpoint selection; "
        "the baselines get the same one-hot encoded, standardized rows and fit on train + "
        "validation together; all are scored on the same test rows (checked against the rows of "
        "nmsnn's `test_predictions.csv`). nmsnn-train s is the wall time of the whole "
        "`nmsnn-train` process (start-up, fit, test, writing outputs), on a shared machine.",
        "",
        "nmsnn variants:",
        "",
        *variant_lines(records, variants),
        "",
    ]


def sweep_section(store: dict[str, Any]) -> list[str]:
    """Table 3: the sweep of ``store["sweep_results"]`` beside the default on the sweep's seeds."""
    path = REPO / store["sweep_results"]
    if not path.exists():
        return ["## Table 3: sweep", "", f"`{store['sweep_results']}` is missing.", ""]
    sweep = load_json(path, {"records": []})
    names = list(dict.fromkeys(r["name"] for r in sweep["records"] if r.get("sweep")))
    seeds = sorted({r["seed"] for r in sweep["records"] if r.get("sweep")})
    # the default's runs of the sweep's own run where it made them (the same code and machine
    # state), else those of Table 1 on the same seeds
    own = [r for r in sweep["records"] if r["kind"] == "nmsnn" and r["name"] == "default"]
    default = own or [
        r for r in store["records"] if r["kind"] == "nmsnn" and r["name"] == "default" and r["seed"] in seeds
    ]
    records = default + [r for r in sweep["records"] if r["kind"] == "baseline" or r.get("sweep")]
    tables = group(records, list(store.get("suite", {})))
    variants, baselines = column_names(records)
    ref = names[0] if names else None
    return [
        "## Table 3: a sweep, the job picked on validation rows"
        + (f" (rank and gaps: nmsnn `{ref}`)" if ref else ""),
        "",
        f"From `{store['sweep_results']}` (its own report: the `.md` beside it), seeds "
        f"{', '.join(map(str, seeds))}; made with:",
        "",
        "```bash",
        *(c["command"] + f"   # {c['date']}" for c in sweep.get("commands", [])),
        "```",
        "",
        *variant_lines(records, [v for v in variants if v != "default"]),
        "- `default`: "
        + (
            "the default's runs made with the sweep"
            if own
            else "the default's runs of Table 1 on the same seeds"
        ),
        "",
        *main_table(store, tables, variants, baselines, ref),
        "",
        *summary_lines(tables, variants, baselines),
        "",
    ]


def report(store: dict[str, Any]) -> str:
    """``<out>.md`` from the stored records."""
    records = store["records"]
    tables = group(records, list(store.get("suite", {})))
    variants, baselines = column_names(records)
    ref = "default" if "default" in variants else (variants[0] if variants else None)
    lines = [
        *header_lines(store, variants),
        "## Table 1: test accuracy / R²" + (f" (rank and gaps: nmsnn `{ref}`)" if ref else ""),
        "",
        *main_table(store, tables, variants, baselines, ref),
        "",
        "`rank`: place of the nmsnn variant among it and the baselines by mean (1 = best). "
        "`nmsnn − best`: its mean minus the best baseline's (named); `nmsnn − linear`: minus "
        "LogisticRegression / Ridge."
        if ref
        else "No nmsnn runs recorded yet.",
        "",
        "## Summary per variant",
        "",
        *summary_lines(tables, variants, baselines),
        "",
        "## Table 2: nmsnn variants: epochs, nmsnn-train wall time (s), synaptic ops per test row",
        "",
        *variant_table(tables, variants),
        "",
        *(sweep_section(store) if store.get("sweep_results") else []),
        "## Failed runs",
        "",
        *failure_lines(records),
        "",
        "## Baselines",
        "",
        "linear: LogisticRegression(max_iter=5000) / Ridge(); MLP (128): MLPClassifier / "
        "MLPRegressor(hidden_layer_sizes=(128,), early_stopping=True, max_iter=500, "
        "random_state=seed); RF: RandomForest(n_estimators=300, random_state=seed, n_jobs=-1); "
        "HGB: HistGradientBoosting(random_state=seed); XGBoost: XGB*(random_state=seed); LightGBM: "
        "LGBM*(random_state=seed, verbose=-1). Everything else at the library's default. "
        "Regression baselines fit the standardized target; classifiers are scored from predict_proba.",
        "",
    ]
    return "\n".join(lines)


# ------------------------------------------------------------------------------ main
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    json_path, md_path = Path(f"{args.out}.json"), Path(f"{args.out}.md")
    if args.report_only:
        store = load_json(json_path, {"records": []})
        if args.sweep_results:
            store["sweep_results"] = repo_relative(args.sweep_results)
            write_json(json_path, store)
        md_path.write_text(report(store))
        print(f"wrote {md_path}")
        return 0
    suite = json.loads((args.suite_dir / "suite.json").read_text())
    args.tables = args.tables or (list(QUICK_TABLES) if args.quick else list(suite))
    args.seeds = args.seeds or (list(QUICK_SEEDS) if args.quick else [0, 1, 2, 3, 4])
    unknown = [t for t in args.tables if t not in suite]
    if unknown:
        raise SystemExit(f"unknown table(s) {unknown}; suite.json has {', '.join(suite)}")
    from nmsnn.tools.compare import machine

    store = (
        {"records": [], "commands": []}
        if args.fresh
        else load_json(json_path, {"records": [], "commands": []})
    )
    given = sys.argv[1:] if argv is None else argv
    command = shlex.join(["python", "experiments/tabular_suite.py", *given])
    store.update(suite={t: {k: suite[t][k] for k in ("file", "target", "task", "rows")} for t in suite})
    store.update(versions=all_versions(), machine=machine(), date=now())
    store["commands"] = [*store.get("commands", []), {"command": command, "date": store["date"]}]
    if args.sweep_results:
        store["sweep_results"] = repo_relative(args.sweep_results)

    def save() -> None:
        write_json(json_path, store)

    start = time.perf_counter()
    run_suite(args, suite, store, save)
    save()
    md_path.write_text(report(store))
    print(f"wrote {json_path} and {md_path} ({time.perf_counter() - start:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
