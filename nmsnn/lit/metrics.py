"""torchmetrics collections for each task.

Classification: accuracy, macro-F1 and AUROC on class probabilities. Regression: RMSE, MAE and
R² on the original target scale.
"""

from __future__ import annotations

from torchmetrics import MetricCollection
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
