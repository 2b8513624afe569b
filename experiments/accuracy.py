"""Accuracy of nmsnn's default spiking model against scikit-learn baselines on five bundled sets.

For each of breast_cancer, iris, wine, digits (classification) and diabetes (regression) and
each seed 0..N-1 this script

* trains the default nmsnn model exactly as ``nmsnn-train data=<set> seed=<seed>`` would
  (in-process, through Hydra's compose API; output under a temporary directory; progress bar,
  model summary and logger turned off, which changes nothing in the training) and records its
  test metrics (best checkpoint by ``val/loss``, as ``nmsnn-train`` tests it);
* builds the identical split and preprocessing (the run's own ``data`` config instantiated and
  set up: the same ``TabularDataModule``, ``split_seed=seed``) and fits three scikit-learn
  baselines on the **train + validation rows** (nmsnn spends its validation rows on early
  stopping and checkpoint selection; the baselines have no such use for them, so every model sees
  the same labelled rows and is scored on the same test rows):

  - LogisticRegression(max_iter=5000), or Ridge() for regression;
  - MLPClassifier / MLPRegressor(hidden_layer_sizes=(128,), early_stopping=False, max_iter=500,
    random_state=seed);
  - HistGradientBoostingClassifier / Regressor(random_state=seed).

Classification is scored by test accuracy and macro-F1, regression by RMSE and R² on the original
target scale. Per-seed records go to ``<out>/accuracy.json``; ``<out>/accuracy.md`` (the summary
table, environment and discussion) is regenerated from that file, never edited by hand.

    .venv/bin/python experiments/accuracy.py                   # 5 seeds, writes experiments/results
    .venv/bin/python experiments/accuracy.py --seeds 2 --datasets iris wine --out /tmp/acc
    .venv/bin/python experiments/accuracy.py --render-only     # rebuild the .md from the .json
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
from environment import cpu_name, now  # experiments/environment.py

HERE = Path(__file__).resolve().parent
DATASETS = ("breast_cancer", "iris", "wine", "digits", "diabetes")
NMSNN = "nmsnn (default)"
BASELINES = {
    "classification": ("LogisticRegression", "MLPClassifier (128)", "HistGradientBoosting"),
    "regression": ("Ridge", "MLPRegressor (128)", "HistGradientBoosting"),
}
METRICS = {"classification": ("acc", "f1_macro"), "regression": ("rmse", "r2")}
HIGHER_IS_BETTER = {"acc": True, "f1_macro": True, "rmse": False, "r2": True}
METRIC_NAMES = {"acc": "accuracy", "f1_macro": "macro-F1", "rmse": "RMSE", "r2": "R²"}
# Extra overrides for every nmsnn run: they change nothing in the training itself.
QUIET = ("trainer.enable_progress_bar=false", "trainer.enable_model_summary=false", "logger=none")

log = logging.getLogger("accuracy")


class FitTimer(L.Callback):
    """Record the wall time of ``trainer.fit`` (all epochs with their validation passes).

    Added to a run as ``+callbacks.fit_timer``; it only reads the clock, so the training is
    unchanged. The last measured time is kept on the class, where :func:`run_nmsnn` reads it.
    """

    last_seconds = math.nan

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.start = time.perf_counter()

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        FitTimer.last_seconds = time.perf_counter() - self.start


# --------------------------------------------------------------------------------------- config
def compose_run(dataset: str, seed: int, work: Path) -> Any:
    """The config of ``nmsnn-train data=<dataset> seed=<seed>``, quiet, writing under ``work``."""
    from hydra import compose, initialize_config_module

    extra = [
        *QUIET,
        f"paths.output_dir={work / dataset / f'seed_{seed}'}",
        f"+callbacks.fit_timer={{_target_: {__name__}.FitTimer}}",
    ]
    with initialize_config_module("nmsnn.conf", version_base="1.3"):
        return compose("train", overrides=[f"data={dataset}", f"seed={seed}", *extra])


def load_split(cfg: Any) -> dict[str, Any]:
    """The split and preprocessed arrays the run configured by ``cfg`` trains and tests on."""
    from hydra.utils import instantiate

    # the same TabularDataModule settings nmsnn-train uses, without data.bins' piecewise-linear
    # columns: an input encoding of the spiking model, not of the data the baselines see
    dm = instantiate(cfg.data, bins=0)
    dm.setup()
    arrays = {split: (rows.x.numpy(), rows.y.numpy()) for split, rows in dm.tensors.items()}
    return {
        "task": dm.task,
        "arrays": arrays,
        "target_mean": float(dm.preprocessor.target_mean),
        "target_std": float(dm.preprocessor.target_std),
        "sizes": {split: len(x) for split, (x, _) in arrays.items()},
    }


# --------------------------------------------------------------------------------------- models
def run_nmsnn(cfg: Any) -> dict[str, Any]:
    """Train, validate and test like ``nmsnn-train``; test metrics and timings."""
    from nmsnn.pipeline import train

    FitTimer.last_seconds = math.nan
    start = time.perf_counter()
    metrics = train(cfg)
    total = time.perf_counter() - start
    return {
        "metrics": {k.removeprefix("test/"): float(v) for k, v in metrics.items() if k.startswith("test/")},
        "fit_s": round(FitTimer.last_seconds, 3),
        "run_s": round(total, 3),
        "epochs": int(metrics["epochs"]),
        "command": f"nmsnn-train data={cfg.data.dataset} seed={cfg.seed}",
    }


def make_baselines(task: str, seed: int) -> dict[str, Any]:
    """The three scikit-learn baselines for ``task``, seeded with ``seed``."""
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.neural_network import MLPClassifier, MLPRegressor

    mlp = {"hidden_layer_sizes": (128,), "early_stopping": False, "max_iter": 500, "random_state": seed}
    linear_name, mlp_name, hgb_name = BASELINES[task]
    if task == "classification":
        return {
            linear_name: LogisticRegression(max_iter=5000),
            mlp_name: MLPClassifier(**mlp),
            hgb_name: HistGradientBoostingClassifier(random_state=seed),
        }
    return {
        linear_name: Ridge(),
        mlp_name: MLPRegressor(**mlp),
        hgb_name: HistGradientBoostingRegressor(random_state=seed),
    }


def score(task: str, y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """Test metrics: accuracy and macro-F1, or RMSE and R² (inputs on the original scale)."""
    from sklearn.metrics import accuracy_score, f1_score, mean_squared_error, r2_score

    if task == "classification":
        return {
            "acc": float(accuracy_score(y_true, y_pred)),
            "f1_macro": float(f1_score(y_true, y_pred, average="macro")),
        }
    return {
        "rmse": float(math.sqrt(mean_squared_error(y_true, y_pred))),
        "r2": float(r2_score(y_true, y_pred)),
    }


def run_baselines(split: dict[str, Any], seed: int) -> dict[str, dict[str, Any]]:
    """Fit every baseline on train + val rows and score it on the test rows."""
    from sklearn.exceptions import ConvergenceWarning

    task, arrays = split["task"], split["arrays"]
    fit_parts = [arrays[s] for s in ("train", "val") if s in arrays]
    x_fit = np.concatenate([x for x, _ in fit_parts])
    y_fit = np.concatenate([y for _, y in fit_parts])
    x_test, y_test = arrays["test"]
    # Regression y is standardized: score on the original scale.
    scale, shift = (split["target_std"], split["target_mean"]) if task == "regression" else (1, 0)

    results = {}
    for name, model in make_baselines(task, seed).items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            start = time.perf_counter()
            model.fit(x_fit, y_fit)
            fit_s = time.perf_counter() - start
        prediction = model.predict(x_test)
        results[name] = {
            "metrics": score(task, y_test * scale + shift, prediction * scale + shift),
            "fit_s": round(fit_s, 3),
        }
    return results


# --------------------------------------------------------------------------------------- running
def environment() -> dict[str, Any]:
    import sklearn
    import torch

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "lightning": L.__version__,
        "sklearn": sklearn.__version__,
        "platform": platform.platform(),
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda_available": torch.cuda.is_available(),
    }


def code_state() -> dict[str, Any]:
    """Git commit and uncommitted changes under nmsnn/ and conf/ (read-only git, no locks)."""

    def git(*args: str) -> str:
        try:
            done = subprocess.run(
                ["git", "--no-optional-locks", *args],
                cwd=HERE.parent,
                capture_output=True,
                text=True,
                timeout=30,
            )
        except (OSError, subprocess.TimeoutExpired) as err:
            return f"unavailable ({err})"
        return done.stdout.rstrip() if done.returncode == 0 else "unavailable"

    return {
        "git_head": git("rev-parse", "HEAD"),
        "uncommitted": git("status", "--porcelain", "--", "nmsnn", "conf").splitlines(),
    }


def default_config() -> dict[str, Any]:
    """The defaults every nmsnn run uses: the model config and the training-loop settings."""
    from hydra import compose, initialize_config_module
    from omegaconf import OmegaConf

    with initialize_config_module("nmsnn.conf", version_base="1.3"):
        cfg = compose("train")
    early = cfg.callbacks.get("early_stopping")
    return {
        "model": OmegaConf.to_container(cfg.model, resolve=True),
        "max_epochs": cfg.trainer.max_epochs,
        "early_stopping_patience": None if early is None else early.patience,
        "batch_size": cfg.data.batch_size,
        "monitor": cfg.monitor,
        "test_ckpt": cfg.get("test_ckpt", "best"),
    }


def backend_used() -> str:
    """The recurrence backend ``model.backend=auto`` picked for CPU tensors in this process."""
    backends = sys.modules.get("nmsnn.core.backends")
    choice = getattr(backends, "_AUTO_CHOICE", None)
    if choice is None:
        return "reference" if list(getattr(backends, "BACKENDS", {})) == ["reference"] else "unknown"
    return str(choice.get("cpu", "not resolved"))


def run_all(datasets: list[str], seeds: int, work: Path) -> list[dict[str, Any]]:
    """Every (dataset, seed, model) record: nmsnn first, then the baselines on the same split."""
    records = []
    for dataset in datasets:
        for seed in range(seeds):
            cfg = compose_run(dataset, seed, work)
            split = load_split(cfg)
            load_before = os.getloadavg()[0]
            snn = run_nmsnn(cfg)
            base = {"dataset": dataset, "task": split["task"], "seed": seed, "split_sizes": split["sizes"]}
            records.append({**base, "model": NMSNN, **snn, "loadavg_1min_before": round(load_before, 2)})
            log.info("%s seed %d %s: %s (%.1f s)", dataset, seed, NMSNN, fmt(snn["metrics"]), snn["fit_s"])
            for name, result in run_baselines(split, seed).items():
                records.append({**base, "model": name, **result})
                log.info("%s seed %d %s: %s", dataset, seed, name, fmt(result["metrics"]))
    return records


def fmt(metrics: dict[str, float]) -> str:
    return ", ".join(f"{k}={metrics[k]:.4f}" for k in ("acc", "f1_macro", "rmse", "r2") if k in metrics)


# --------------------------------------------------------------------------------------- report
def mean_std(values: list[float]) -> tuple[float, float]:
    mean = statistics.fmean(values)
    return mean, statistics.stdev(values) if len(values) > 1 else math.nan


def pm(values: list[float], digits: int = 3) -> str:
    mean, std = mean_std(values)
    return f"{mean:.{digits}f}" if math.isnan(std) else f"{mean:.{digits}f} ± {std:.{digits}f}"


def summarize(records: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    """``{dataset: {model: {"task", "n", metric: [values], "fit_s": [values]}}}`` in record order."""
    table: dict[str, dict[str, dict[str, Any]]] = {}
    for r in records:
        entry = table.setdefault(r["dataset"], {}).setdefault(
            r["model"], {"task": r["task"], "n": 0, "fit_s": [], "sizes": r["split_sizes"]}
        )
        entry["n"] += 1
        entry["fit_s"].append(r["fit_s"])
        for metric in METRICS[r["task"]]:
            entry.setdefault(metric, []).append(r["metrics"][metric])
    return table


def table_lines(table: dict[str, dict[str, dict[str, Any]]], task: str) -> list[str]:
    metrics = METRICS[task]
    lines = [
        "| dataset (train/val/test rows) | model | "
        + " | ".join(f"test {METRIC_NAMES[m]}" for m in metrics)
        + " | seeds | mean fit time |",
        "| --- | --- | " + " | ".join("---" for _ in metrics) + " | --- | --- |",
    ]
    for dataset, models in table.items():
        if next(iter(models.values()))["task"] != task:
            continue
        for i, (model, entry) in enumerate(models.items()):
            sizes = entry["sizes"]
            label = f"{dataset} ({sizes.get('train')}/{sizes.get('val', 0)}/{sizes.get('test')})"
            cells = " | ".join(pm(entry[m], 2 if m == "rmse" else 3) for m in metrics)
            name = f"**{model}**" if model == NMSNN else model
            lines.append(
                f"| {label if i == 0 else ''} | {name} | {cells} | {entry['n']} | "
                f"{statistics.fmean(entry['fit_s']):.2f} s |"
            )
    return lines


def activity_lines(records: list[dict[str, Any]]) -> list[str]:
    """Per dataset, each hidden layer's mean test firing rate and dead fraction (if recorded)."""
    rates: dict[str, dict[str, dict[str, list[float]]]] = {}
    for r in records:
        if r["model"] != NMSNN:
            continue
        for key, value in r["metrics"].items():
            parts = key.split("/")  # spikes/<layer>/<statistic>
            if len(parts) == 3 and parts[0] == "spikes" and parts[2] in ("firing_rate", "dead_fraction"):
                layer = rates.setdefault(r["dataset"], {}).setdefault(parts[1], {})
                layer.setdefault(parts[2], []).append(value)
    if not rates:
        return []
    lines = [
        "## Hidden-layer activity of nmsnn (test rows)",
        "",
        "Mean over seeds of each spiking layer's firing rate (fraction of neuron-steps with a spike) "
        "and of its dead fraction (neurons that never fire on the test rows), from the "
        "`test/spikes/...` metrics that `nmsnn-train` reports.",
        "",
        "| dataset | layer | firing rate | dead fraction |",
        "| --- | --- | --- | --- |",
    ]
    for dataset, layers in rates.items():
        for layer, stats in layers.items():
            rate = pm(stats.get("firing_rate", [math.nan]))
            dead = pm(stats.get("dead_fraction", [math.nan]))
            lines.append(f"| {dataset} | {layer} | {rate} | {dead} |")
    return [*lines, ""]


def discussion(table: dict[str, dict[str, dict[str, Any]]]) -> list[str]:
    """One plain sentence per dataset comparing nmsnn with the best baseline, from the numbers."""
    sentences = []
    for dataset, models in table.items():
        if NMSNN not in models:
            continue
        snn = models[NMSNN]
        metric = METRICS[snn["task"]][0] if snn["task"] == "classification" else "r2"
        higher = HIGHER_IS_BETTER[metric]
        baselines = {m: e for m, e in models.items() if m != NMSNN}
        if not baselines:
            continue
        best_name = max(
            baselines, key=lambda m: statistics.fmean(baselines[m][metric]) * (1 if higher else -1)
        )
        snn_mean, snn_std = mean_std(snn[metric])
        best_mean, best_std = mean_std(baselines[best_name][metric])
        gap = snn_mean - best_mean
        beaten_by = [m for m, e in baselines.items() if statistics.fmean(e[metric]) > snn_mean]
        rank = 1 + len(beaten_by)
        spread = max(x for x in (snn_std, best_std) if not math.isnan(x)) if snn["n"] > 1 else math.nan
        test_rows = snn["sizes"].get("test")
        name = METRIC_NAMES[metric]
        if gap >= 0:
            verdict = f"nmsnn's mean test {name} ({snn_mean:.3f}) is the best of the four models"
            verdict += f" ({gap:+.3f} over {best_name}, {best_mean:.3f})"
        else:
            verdict = (
                f"nmsnn ranks {rank} of 4 on test {name}: {snn_mean:.3f} against {best_mean:.3f} for "
                f"{best_name} ({gap:+.3f}"
            )
            if not math.isnan(spread):
                within = abs(gap) <= spread
                verdict += ", within" if within else ", larger than"
                verdict += f" the seed-to-seed standard deviation of {spread:.3f})"
            else:
                verdict += ")"
            if len(beaten_by) > 1:
                verdict += f"; also behind {', '.join(m for m in beaten_by if m != best_name)}"
        if snn["task"] == "classification" and test_rows:
            verdict += f". One test row is {1 / test_rows:.3f} of accuracy here"
        fit_ratio = statistics.fmean(snn["fit_s"]) / max(
            statistics.fmean(baselines[best_name]["fit_s"]), 1e-9
        )
        verdict += f"; nmsnn's fit takes {fit_ratio:.0f}× as long as {best_name}'s."
        sentences.append(f"**{dataset}**: {verdict}")
    return sentences


def config_lines(store: dict[str, Any]) -> list[str]:
    """The nmsnn defaults, recurrence backend and code version the runs used."""
    defaults, code = store.get("defaults", {}), store.get("code", {})
    model = {k: v for k, v in defaults.get("model", {}).items() if not k.startswith("_")}
    uncommitted = code.get("uncommitted") or []
    return [
        "## nmsnn configuration and code",
        "",
        f"Defaults used (`conf/model/default.yaml` and the training loop): max_epochs "
        f"{defaults.get('max_epochs')}, early-stopping patience {defaults.get('early_stopping_patience')}, "
        f"batch size {defaults.get('batch_size')}, monitor `{defaults.get('monitor')}`, tested "
        f"checkpoint `{defaults.get('test_ckpt')}`; recurrence backend `{store.get('backend')}` "
        "(`model.backend=auto`); model:",
        "",
        "```json",
        json.dumps(model, sort_keys=True),
        "```",
        "",
        f"git HEAD `{str(code.get('git_head', '?'))[:12]}`; uncommitted changes under nmsnn/ and "
        f"conf/ when the run started: {', '.join(f'`{u.strip()}`' for u in uncommitted) or 'none'}.",
    ]


def render(store: dict[str, Any], md_path: Path) -> None:
    """Write the Markdown report from the stored records."""
    table = summarize(store["records"])
    env = store["environment"]
    lines = [
        "# nmsnn's default model against scikit-learn baselines",
        "",
        f"Generated {store['finished']} by `experiments/accuracy.py` from `accuracy.json` "
        "(per-seed records); rerun the script to regenerate. Do not edit by hand.",
        "",
        f"Command: `{store['command']}` (started {store['started']}, finished {store['finished']}).",
        "",
        f"Environment: torch {env['torch']}, lightning {env['lightning']}, scikit-learn "
        f"{env['sklearn']}, Python {env['python']}; {env['cpu_count']}-core CPU ({env['cpu']}), "
        f"{env['torch_threads']} torch threads, GPU: {'yes' if env['cuda_available'] else 'none'}; "
        f"{env['platform']}.",
        "",
        "Each cell is the mean ± sample standard deviation (n−1) over seeds 0..N−1 of the test "
        "metric. For every seed, all four models use the same split (test 20 %, then validation "
        "20 % of the rest, stratified for classification; `seed` is the split seed) and the same "
        "preprocessing (StandardScaler fit on the training rows; regression target standardized "
        "for fitting, metrics on the original scale). nmsnn is `nmsnn-train data=<set> "
        "seed=<seed>` with every default: it trains on the training rows, uses the validation rows "
        "for early stopping and to pick its best checkpoint, and is tested on that checkpoint "
        "(for regression, `data.folds=auto` deals the non-test rows into 4 folds instead: every "
        "one trains 3 of the 4 ensemble members and validates the fourth, so its train/val rows "
        "are the same rows, and its preprocessing is fit on all of them). The baselines are fit "
        "on the training and validation rows together. Fit time is the "
        "wall time of `trainer.fit` for nmsnn (all epochs, with their validation passes) and of "
        "`.fit` for the baselines; the machine was shared with other work, so times are rough.",
        "",
        "## Classification",
        "",
        *table_lines(table, "classification"),
        "",
        "## Regression",
        "",
        *table_lines(table, "regression"),
        "",
        "## Where the spiking model still loses",
        "",
    ]
    for sentence in discussion(table):
        lines += [sentence, ""]
    lines += activity_lines(store["records"])
    lines += [*config_lines(store), ""]
    lines += [
        "## Baseline settings",
        "",
        "LogisticRegression(max_iter=5000) or Ridge(); MLPClassifier / MLPRegressor("
        "hidden_layer_sizes=(128,), early_stopping=False, max_iter=500, random_state=seed); "
        "HistGradientBoostingClassifier / Regressor(random_state=seed). Everything else is "
        "scikit-learn's default.",
        "",
    ]
    md_path.write_text("\n".join(lines))


# --------------------------------------------------------------------------------------- main
def quiet_logs() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    for name in ("lightning", "lightning.pytorch", "lightning.fabric", "nmsnn"):
        logging.getLogger(name).setLevel(logging.WARNING)
    for message in (
        ".*does not have many workers.*",
        ".*LeafSpec.*",
        ".*smaller than the logging interval.*",
    ):
        warnings.filterwarnings("ignore", message=message)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, default=5, help="seeds 0..N-1 (default 5)")
    parser.add_argument("--datasets", nargs="+", choices=DATASETS, default=list(DATASETS))
    parser.add_argument("--out", type=Path, default=HERE / "results", help="output folder")
    parser.add_argument(
        "--render-only", action="store_true", help="only rebuild accuracy.md from accuracy.json"
    )
    args = parser.parse_args(argv)
    json_path, md_path = args.out / "accuracy.json", args.out / "accuracy.md"

    if args.render_only:
        render(json.loads(json_path.read_text()), md_path)
        print(f"wrote {md_path}")
        return

    quiet_logs()
    given = sys.argv[1:] if argv is None else argv
    store: dict[str, Any] = {
        "schema": 1,
        "command": " ".join([".venv/bin/python", "experiments/accuracy.py", *map(shlex.quote, given)]),
        "started": now(),
        "environment": environment(),
        "code": code_state(),
        "defaults": default_config(),
        "baseline_fit_rows": "train+val",
    }
    with tempfile.TemporaryDirectory(prefix="nmsnn_accuracy_") as work:
        store["records"] = run_all(args.datasets, args.seeds, Path(work))
    store["finished"] = now()
    store["backend"] = backend_used()
    args.out.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(store, indent=2) + "\n")
    render(store, md_path)
    print(f"wrote {json_path} and {md_path}")


if __name__ == "__main__":
    main()
