"""Figures: spike rasters and membrane traces, and evaluation plots after testing.

Evaluation plots use scikit-learn's displays (confusion matrix, ROC, precision-recall,
prediction error). Figures are matplotlib figures (Agg backend, no screen needed).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure
from sklearn.metrics import (
    ConfusionMatrixDisplay,
    PrecisionRecallDisplay,
    PredictionErrorDisplay,
    RocCurveDisplay,
)
from torch import Tensor


def activity_figure(
    spikes: Sequence[Tensor], membranes: Sequence[Tensor], names: Sequence[str], traces: int = 6
) -> Figure:
    """Per sample row: a spike raster per layer (neurons x time) and membrane traces.

    ``spikes[l]`` and ``membranes[l]`` are ``[T, R, H]`` for the R sample rows; the last column
    of the figure plots the membranes of the first ``traces`` neurons of the first layer.
    """
    rows = spikes[0].shape[1]
    fig, axes = plt.subplots(
        rows, len(spikes) + 1, figsize=(3.2 * (len(spikes) + 1), 2.2 * rows), squeeze=False
    )
    for r in range(rows):
        for col, (s, name) in enumerate(zip(spikes, names)):
            ax = axes[r, col]
            ax.imshow((s[:, r] > 0).T.float().numpy(), aspect="auto", cmap="Greys", interpolation="nearest")
            ax.set_title(f"row {r}: {name} spikes", fontsize=8)
            ax.set_xlabel("time step", fontsize=7)
            ax.set_ylabel("neuron", fontsize=7)
        ax = axes[r, -1]
        ax.plot(membranes[0][:, r, :traces].numpy())
        ax.set_title(f"row {r}: {names[0]} membrane", fontsize=8)
        ax.set_xlabel("time step", fontsize=7)
    fig.tight_layout()
    return fig


def classification_figures(y_true: np.ndarray, proba: np.ndarray, classes: Sequence) -> dict[str, Figure]:
    """Confusion matrix, ROC and precision-recall curves from class probabilities.

    ``y_true`` holds class indices; with more than two classes the curves are one-vs-rest.
    """
    labels = [str(c) for c in classes]
    figures = {}
    fig, ax = plt.subplots(figsize=(4.5, 4))
    ConfusionMatrixDisplay.from_predictions(
        y_true, proba.argmax(1), labels=list(range(len(labels))), display_labels=labels, ax=ax, colorbar=False
    )
    ax.set_title("confusion matrix (test)")
    fig.tight_layout()
    figures["confusion_matrix"] = fig
    positives = [1] if len(labels) == 2 else range(len(labels))
    for name, display in (("roc", RocCurveDisplay), ("precision_recall", PrecisionRecallDisplay)):
        fig, ax = plt.subplots(figsize=(4.5, 4))
        for k in positives:
            if (y_true == k).any() and (y_true != k).any():
                display.from_predictions(y_true == k, proba[:, k], name=labels[k], ax=ax)
        ax.set_title(f"{name.replace('_', '-')} (test)")
        fig.tight_layout()
        figures[name] = fig
    return figures


def regression_figures(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, Figure]:
    """Predicted-versus-true and residual plots."""
    figures = {}
    for name, kind in (("predicted_vs_true", "actual_vs_predicted"), ("residuals", "residual_vs_predicted")):
        fig, ax = plt.subplots(figsize=(4.5, 4))
        PredictionErrorDisplay.from_predictions(y_true, y_pred, kind=kind, ax=ax)
        ax.set_title(f"{name.replace('_', ' ')} (test)")
        fig.tight_layout()
        figures[name] = fig
    return figures


def save_figures(figures: dict[str, Figure], directory: Path) -> list[Path]:
    """Save each figure as ``<directory>/<name>.png``."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, fig in figures.items():
        path = directory / f"{name}.png"
        fig.savefig(path, dpi=100)
        paths.append(path)
    return paths


def close_figures(figures: dict[str, Figure]) -> None:
    for fig in figures.values():
        plt.close(fig)
