"""torchmetrics collections for each task.

Classification: accuracy, macro-F1 and AUROC on class probabilities. Regression: RMSE, MAE and
R² on the original target scale. :class:`MeanStandardError`: the standard error of a mean loss
(``val/loss_se``, what a sweep's one-standard-error pick reads).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torchmetrics import Metric, MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassAUROC, MulticlassF1Score
from torchmetrics.regression import MeanAbsoluteError, MeanSquaredError, R2Score


def build_metrics(task: str, num_outputs: int, prefix: str = "") -> MetricCollection:
    """The metric collection for ``task`` with keys such as ``val/acc`` or ``test/rmse``."""
    if task == "classification":
        metrics = {
            "acc": MulticlassAccuracy(num_classes=num_outputs, average="micro"),
            "f1_macro": MulticlassF1Score(num_classes=num_outputs, average="macro"),
            "auroc": MulticlassAUROC(num_classes=num_outputs, average="macro"),
        }
    else:
        metrics = {
            "rmse": MeanSquaredError(squared=False),
            "mae": MeanAbsoluteError(),
            "r2": R2Score(),
        }
    return MetricCollection(metrics, prefix=prefix)


class MeanStandardError(Metric):
    """The standard error of the mean of per-row values (``std / sqrt(n)``, with the n − 1
    variance): how far a validation loss could move on another sample of as many rows. Its sums
    sync across DDP ranks. Fewer than two rows: NaN."""

    full_state_update = False

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        for name in ("total", "squares", "count"):
            self.add_state(name, default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, values: Tensor) -> None:
        values = values.detach().double().flatten()
        self.total += values.sum()
        self.squares += values.square().sum()
        self.count += values.numel()

    def compute(self) -> Tensor:
        n = self.count
        if n < 2:
            return torch.tensor(float("nan"))
        variance = ((self.squares - self.total.square() / n) / (n - 1)).clamp_min(0.0)
        return (variance / n).sqrt().float()
