"""The spiking model against non-spiking baselines on the same split of the same data.

:func:`compare` trains the configured spiking model exactly as ``nmsnn-train`` does (into
``<run dir>/spiking/``), then fits a non-spiking MLP of the same shape, a linear model,
scikit-learn's HistGradientBoosting and, when installed, XGBoost on the same preprocessed rows
(less the spiking model's piecewise-linear bins, see :func:`classical_rows`), scores every model
on the same test rows with the same metric code, and writes ``comparison.csv``,
``comparison.md`` and ``comparison.png`` to the run directory.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.metadata
import platform
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from omegaconf import DictConfig, open_dict

from nmsnn.analysis.plots import close_figures, save_figures
from nmsnn.checkpoint import load_checkpoint
from nmsnn.data.preprocessing import TabularPreprocessor
from nmsnn.errors import ConfigError
from nmsnn.files import write_csv, write_text
from nmsnn.lit.module import hidden_sizes, target_values
from nmsnn.quiet import quiet_loggers
from nmsnn.sweeps import markdown_table

CLASSIFICATION_METRICS = ("accuracy", "f1_macro", "auroc")
REGRESSION_METRICS = ("rmse", "mae", "r2")
SYNOPS = "synaptic ops"
MACS = "MACs"


@dataclass
class Rows:
    """The preprocessed rows every model sees: fit rows (train + val) and test rows, as NumPy."""

    x_fit: np.ndarray
    y_fit: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    sizes: dict[str, int]


@dataclass
class Baseline:
    """A scikit-learn-style model, its table name, and how its operations per row are counted."""

    name: str
    estimator: Any
    ops: Callable[[Any], float] | None = None
    op_kind: str = ""


# ------------------------------------------------------------------------------ building blocks
def spiking_config(cfg: DictConfig, out_dir: Path) -> DictConfig:
    """A copy of the train config ``cfg`` whose run writes to ``out_dir``."""
    spiking = cfg.copy()
    with open_dict(spiking):
        spiking.paths.output_dir = str(out_dir)
        spiking.pop("hydra", None)
    return spiking


def checkpoint_path(cfg: DictConfig, out_dir: Path) -> Path:
    """The checkpoint ``nmsnn-train`` tested (``best.ckpt``, or ``last.ckpt`` with ``test_ckpt=last``)."""
    name = "last.ckpt" if cfg.get("test_ckpt", "best") == "last" else "best.ckpt"
    for path in (out_dir / "checkpoints" / name, out_dir / "checkpoints" / "last.ckpt"):
        if path.is_file():
            return path
    raise ConfigError(
        f"no checkpoint under {out_dir / 'checkpoints'}: nmsnn-compare needs the checkpoint callback "
        "(do not set callbacks=none or callbacks.model_checkpoint=null)."
    )


def split_rows(datamodule: Any) -> Rows:
    """Fit rows (train, plus val when there is one) and test rows of a set-up DataModule."""
    tensors = datamodule.tensors
    if "test" not in tensors:
        raise ConfigError("data.test_size must be > 0: the comparison scores every model on the test rows.")
    fit = [tensors[s] for s in ("train", "val") if s in tensors]
    return Rows(
        x_fit=torch.cat([p.x for p in fit]).numpy(),
        y_fit=torch.cat([p.y for p in fit]).numpy(),
        x_test=tensors["test"].x.numpy(),
        y_test=tensors["test"].y.numpy(),
        sizes={s: len(tensors[s].y) if s in tensors else 0 for s in ("train", "val", "test")},
    )


def classical_rows(datamodule: Any) -> tuple[Rows, TabularPreprocessor]:
    """The rows of ``datamodule``'s split as the classical models get them: the same split and
    scaling, without ``data.bins``' piecewise-linear columns (an input encoding of the spiking
    model: Ridge or an MLP given them would be other models), and the preprocessor that makes
    them."""
    rows, pre = split_rows(datamodule), datamodule.preprocessor
    binned = sum(max(len(edges) - 1, 0) for edges in pre.bin_edges)
    if not binned:
        return rows, pre
    # the bin columns follow the scaled numeric ones (TabularPreprocessor.feature_names)
    keep = np.r_[0 : len(pre.numeric), len(pre.numeric) + binned : rows.x_fit.shape[1]]
    plain = dataclasses.replace(rows, x_fit=rows.x_fit[:, keep], x_test=rows.x_test[:, keep])
    return plain, dataclasses.replace(pre, bin_edges=[])


def score(pre: TabularPreprocessor, y_true: np.ndarray, values: np.ndarray) -> dict[str, float]:
    """Test metrics from class probabilities ``[N, C]`` or original-scale predictions ``[N]``.

    ``y_true`` holds class indices, or the target scaled as the preprocessing scales it.
    """
    from sklearn.metrics import (
        accuracy_score,
        f1_score,
        mean_absolute_error,
        mean_squared_error,
        r2_score,
        roc_auc_score,
    )

    if pre.task == "classification":
        proba = np.asarray(values, dtype=np.float64)
        proba = proba / proba.sum(axis=1, keepdims=True)
        labels = np.arange(proba.shape[1])
        predicted = proba.argmax(axis=1)
        try:
            if proba.shape[1] == 2:
                auroc = roc_auc_score(y_true, proba[:, 1])
            else:
                auroc = roc_auc_score(y_true, proba, multi_class="ovr", average="macro", labels=labels)
        except ValueError:  # a class missing from the test rows
            auroc = float("nan")
        return {
            "accuracy": float(accuracy_score(y_true, predicted)),
            "f1_macro": float(f1_score(y_true, predicted, average="macro", labels=labels, zero_division=0)),
            "auroc": float(auroc),
        }
    truth = unscale(pre, y_true)
    predicted = np.asarray(values, dtype=np.float64).reshape(-1)
    return {
        "rmse": float(np.sqrt(mean_squared_error(truth, predicted))),
        "mae": float(mean_absolute_error(truth, predicted)),
        "r2": float(r2_score(truth, predicted)),
    }


def unscale(pre: TabularPreprocessor, y: np.ndarray) -> np.ndarray:
    """A scaled regression target back on the original scale."""
    scaled = torch.from_numpy(np.asarray(y, dtype=np.float64).reshape(-1))
    return target_values(scaled, pre.target_mean, pre.target_std, pre.target_transform).numpy()


def best_time(fn: Callable[[], Any], repeats: int) -> tuple[Any, float]:
    """``fn()``'s result (after one warm-up call) and the fastest of ``repeats`` timings, in seconds."""
    result = fn()
    times = []
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return result, min(times)


def dense_macs(coefs: list[np.ndarray]) -> float:
    """Multiply-accumulates per row of dense layers with these weight matrices (sum of in*out)."""
    return float(sum(np.asarray(c).size for c in coefs))


def baselines(task: str, hidden: list[int], seed: int | None) -> list[Baseline]:
    """The non-spiking models to compare with (XGBoost only when it is installed)."""
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.neural_network import MLPClassifier, MLPRegressor

    classify = task == "classification"
    mlp = (MLPClassifier if classify else MLPRegressor)(
        hidden_layer_sizes=tuple(int(h) for h in hidden),
        max_iter=500,
        early_stopping=True,
        random_state=seed,
    )
    linear = LogisticRegression(max_iter=5000) if classify else Ridge()
    gbdt = (HistGradientBoostingClassifier if classify else HistGradientBoostingRegressor)(random_state=seed)
    models = [
        Baseline(f"MLP {list(hidden)} (non-spiking)", mlp, lambda m: dense_macs(m.coefs_), MACS),
        Baseline(
            "LogisticRegression" if classify else "Ridge", linear, lambda m: dense_macs([m.coef_]), MACS
        ),
        Baseline(type(gbdt).__name__, gbdt),
    ]
    try:
        import xgboost
    except ImportError:
        return models
    xgb = xgboost.XGBClassifier() if classify else xgboost.XGBRegressor()
    return [*models, Baseline(type(xgb).__name__, xgb)]


def run_baseline(model: Baseline, rows: Rows, pre: TabularPreprocessor, repeats: int) -> dict[str, Any]:
    """Fit one baseline on the fit rows and score and time it on the test rows."""
    from sklearn.exceptions import ConvergenceWarning

    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.estimator.fit(rows.x_fit, rows.y_fit)
    fit_s = time.perf_counter() - start
    if pre.task == "classification":
        values, infer_s = best_time(lambda: model.estimator.predict_proba(rows.x_test), repeats)
    else:
        scaled, infer_s = best_time(lambda: model.estimator.predict(rows.x_test), repeats)
        values = unscale(pre, scaled)
    return {
        "model": model.name,
        **score(pre, rows.y_test, values),
        "fit_s": fit_s,
        "infer_ms": infer_s * 1000.0,
        "ops_per_row": model.ops(model.estimator) if model.ops else float("nan"),
        "op_kind": model.op_kind,
    }


def run_spiking(cfg: DictConfig, out_dir: Path, repeats: int) -> tuple[dict[str, Any], dict[str, float], Any]:
    """Train the spiking model as ``nmsnn-train`` does; its table row, train metrics and DataModule."""
    from nmsnn.pipeline import train

    start = time.perf_counter()
    metrics = train(spiking_config(cfg, out_dir))
    fit_s = time.perf_counter() - start
    loaded = load_checkpoint(checkpoint_path(cfg, out_dir))
    datamodule = loaded.datamodule()
    with quiet_loggers(["nmsnn.data"]):  # the training run has logged this split already
        datamodule.setup("fit")
    rows = split_rows(datamodule)
    x_test = torch.from_numpy(rows.x_test)
    with torch.inference_mode():
        values, infer_s = best_time(lambda: loaded.module.predict_rows(x_test).numpy(), repeats)
    hidden = hidden_sizes(cfg.model.hidden, loaded.preprocessor.task)
    row = {
        "model": f"spiking {hidden} (T={cfg.model.time_steps})",
        **score(loaded.preprocessor, rows.y_test, values),
        "fit_s": fit_s,
        "infer_ms": infer_s * 1000.0,
        "ops_per_row": metrics.get("test/synops_per_row", float("nan")),
        "op_kind": SYNOPS if "test/synops_per_row" in metrics else "",
    }
    return row, metrics, datamodule


@contextlib.contextmanager
def openmp_threads(limit: int | None) -> Iterator[None]:
    """Limit OpenMP threads (HistGradientBoosting, XGBoost) to ``limit`` inside the block.

    With torch loaded, two OpenMP runtimes share the cores and their waiting threads slow
    scikit-learn's gradient boosting many times over on a small machine; one thread avoids it.
    ``None``: no limit.
    """
    if limit is None:
        yield
        return
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limit, user_api="openmp"):
        yield


def versions() -> dict[str, str]:
    """Versions of the software the numbers depend on."""
    found = {"python": platform.python_version()}
    for package in ("nmsnn", "torch", "lightning", "scikit-learn", "xgboost"):
        try:
            found[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            continue
    return found


def machine() -> str:
    """The processor, core count and torch threads, and the GPU when there is one."""
    import os

    text = f"{platform.machine()} {platform.system()}, {os.cpu_count()} CPU cores, torch threads {torch.get_num_threads()}"
    if torch.cuda.is_available():
        text += f", GPU {torch.cuda.get_device_name(0)}"
    return text


# ------------------------------------------------------------------------------ outputs
def comparison_markdown(
    table: pd.DataFrame,
    task: str,
    source: str,
    sizes: dict[str, int],
    spiking_metrics: dict[str, float],
    command: str | None,
    omp_threads: int | None = None,
) -> str:
    """``comparison.md``: the command, the data, the table and what its columns mean."""
    lines = ["# Spiking model vs non-spiking baselines", ""]
    if command:
        lines += ["Made with:", "", "```bash", command, "```", ""]
    lines += [
        f"Data: {source} ({task}); rows: train {sizes['train']}, val {sizes['val']}, test {sizes['test']}. "
        f"The spiking model trains on the train rows and uses the val rows for checkpoint selection "
        f"and early stopping; the baselines fit on train + val ({sizes['train'] + sizes['val']} rows; "
        f"the MLP holds out 10% of them for its own early stopping). Every model is scored on the "
        f"same {sizes['test']} test rows with the same preprocessing (the baselines get the scaled "
        f"columns, without the spiking model's piecewise-linear bins, data.bins)"
        + ("; regression metrics are on the original target scale." if task == "regression" else "."),
        "",
        markdown_table(table),
        "",
        "Columns:",
        "",
        "- `fit_s`: wall time of fitting, in seconds. For the spiking model it is the whole "
        "`nmsnn-train` run (fit with per-epoch validation, testing, writing plots and predictions).",
        "- `infer_ms`: the fastest of several timings of predicting the whole test split "
        "(after a warm-up call), in milliseconds, on this machine's CPU/GPU as configured.",
        "- `ops_per_row`: the spiking model's measured synaptic operations per test row "
        "(`test/synops_per_row`); MACs per row (sum of inputs x outputs over the dense layers) for "
        "the MLP and the linear model; blank for tree ensembles, which do comparisons, not MACs.",
        "- The synaptic-operation count follows each emitted spike through its outgoing synapses over "
        "all time steps. With graded spikes (`spike_fn: relu`) a spike carries a value, so each "
        "synaptic op is a multiply-accumulate, not a cheaper accumulate-only event as with binary spikes.",
    ]
    lines += _operation_notes(task, spiking_metrics)
    lines += [
        "",
        f"Machine: {machine()}. Timings are single runs on this machine (noisy when it is shared)"
        + (
            f"; the baselines ran with {omp_threads} OpenMP thread(s) (`baseline_omp_threads`)."
            if omp_threads is not None
            else "."
        ),
        "",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in versions().items()),
        "",
    ]
    return "\n".join(lines)


def _operation_notes(task: str, spiking_metrics: dict[str, float]) -> list[str]:
    """The spiking model's synaptic operations against the same-shaped network's MACs."""
    notes = []
    macs = spiking_metrics.get("test/ann_macs_per_row")
    if macs:
        ratio = spiking_metrics.get("test/synops_per_mac", float("nan"))
        outputs = "one output per class" if task == "classification" else "one output"
        notes.append(
            f"- The same-shaped non-spiking network needs {macs:.6g} MACs per row (as counted by "
            f"nmsnn, with {outputs}); the spiking model's synaptic ops are {ratio:.3g}x that."
        )
    from_spikes = spiking_metrics.get("test/synops_from_spikes_per_row")
    if from_spikes is not None and "test/synops_per_row" in spiking_metrics:
        notes.append(
            f"- Of the spiking model's {spiking_metrics['test/synops_per_row']:.6g} synaptic ops per row, "
            f"{from_spikes:.6g} are driven by spikes of hidden layers; the rest carry the encoded input "
            "into the first layer at every time step."
        )
    return notes


def comparison_figure(table: pd.DataFrame, task: str):
    """Bar charts of the main test metric and of the fit time per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metric, label = ("accuracy", "test accuracy") if task == "classification" else ("r2", "test R²")
    fig, (ax_metric, ax_time) = plt.subplots(1, 2, figsize=(11, 0.6 * len(table) + 2.2))
    names = list(table["model"])
    positions = np.arange(len(names))
    ax_metric.barh(positions, table[metric], color="tab:blue")
    ax_metric.set_yticks(positions, names)
    ax_metric.invert_yaxis()
    ax_metric.set_xlabel(label)
    low = float(np.nanmin(table[metric]))
    ax_metric.set_xlim(min(0.0, low - 0.05) if task == "regression" else max(0.0, low - 0.1), 1.0)
    for y, value in zip(positions, table[metric], strict=True):
        ax_metric.annotate(f"{value:.3f}", (value, y), xytext=(-3, 0), textcoords="offset points",
                           ha="right", va="center", color="white", fontsize=8)  # fmt: skip
    ax_time.barh(positions, table["fit_s"], color="tab:orange")
    ax_time.set_yticks(positions, [])
    ax_time.invert_yaxis()
    ax_time.set_xscale("log")
    ax_time.set_xlabel("fit time (s, log scale)")
    fig.tight_layout()
    return fig


def write_outputs(out_dir: Path, table: pd.DataFrame, markdown: str, task: str) -> list[Path]:
    """Write ``comparison.csv``, ``comparison.md`` and ``comparison.png`` to ``out_dir``."""
    csv = write_csv(table, out_dir / "comparison.csv", True)
    md = write_text(markdown, out_dir / "comparison.md", True)
    figures = {"comparison": comparison_figure(table, task)}
    try:
        png = save_figures(figures, out_dir)
    finally:
        close_figures(figures)
    return [csv, md, *png]


# ------------------------------------------------------------------------------ the experiment
def compare(cfg: DictConfig, command: str | None = None) -> pd.DataFrame:
    """Run the comparison for the composed config ``cfg`` (an ``nmsnn-compare``/``nmsnn-train``
    config) and write its outputs to ``cfg.paths.output_dir``; return the table.

    ``command`` is recorded at the top of ``comparison.md``.
    """
    out_dir = Path(cfg.paths.output_dir)
    repeats = int(cfg.get("timing_repeats", 5))
    spiking_row, spiking_metrics, datamodule = run_spiking(cfg, out_dir / "spiking", repeats)
    rows, pre = classical_rows(datamodule)
    seed = cfg.get("seed")
    records = [spiking_row]
    threads = cfg.get("baseline_omp_threads")
    with openmp_threads(None if threads is None else int(threads)):
        for model in baselines(
            pre.task, hidden_sizes(cfg.model.hidden, pre.task), None if seed is None else int(seed)
        ):
            records.append(run_baseline(model, rows, pre, repeats))
    metrics = CLASSIFICATION_METRICS if pre.task == "classification" else REGRESSION_METRICS
    table = pd.DataFrame(records, columns=["model", *metrics, "fit_s", "infer_ms", "ops_per_row", "op_kind"])
    markdown = comparison_markdown(
        table, pre.task, datamodule.source_name, rows.sizes, spiking_metrics, command, threads
    )
    write_outputs(out_dir, table, markdown, pre.task)
    return table


def command_line(overrides: list[str]) -> str:
    """The shell command that reproduces a run: ``nmsnn-compare`` and its overrides, quoted."""
    import shlex

    return " ".join(["nmsnn-compare", *(shlex.quote(o) for o in overrides)])
