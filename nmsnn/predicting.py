"""Predictions for raw rows: the output frame of ``nmsnn-predict``, ``nmsnn-eval`` and the test split."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from nmsnn.data.preprocessing import TabularPreprocessor
from nmsnn.errors import ConfigError
from nmsnn.lit.module import SpikingModule


def predict_frame(
    module: SpikingModule,
    preprocessor: TabularPreprocessor,
    frame: pd.DataFrame,
    where: str = "rows",
    id_column: str | None = None,
    report: bool = True,
) -> pd.DataFrame:
    """One output row per input row: ``prediction`` and, for classes, ``proba_<class>`` columns;
    ``id_column``: a column of ``frame`` copied, as it is, in front of them; ``report``:
    warn about the values imputed and categories unseen (a run's report does not: its set-up did)."""
    if id_column is not None and id_column not in frame.columns:
        raise ConfigError(
            f"{where}: id_column={id_column!r} is not a column; the columns are "
            f"{list(map(str, frame.columns))}."
        )
    features = frame  # an id column that is not a feature is carried, not "ignored"
    if id_column is not None and id_column not in {*preprocessor.numeric, *preprocessor.categorical}:
        features = frame.drop(columns=[id_column])
    x = torch.from_numpy(preprocessor.transform(features, where, report))
    values = module.predict_rows(x).numpy()
    if preprocessor.task == "classification":
        out = pd.DataFrame({"prediction": preprocessor.decode(values.argmax(1))}, index=frame.index)
        for j, label in enumerate(preprocessor.classes or []):
            out[f"proba_{label}"] = values[:, j].astype(np.float64)
    else:
        out = pd.DataFrame({"prediction": values.astype(np.float64)}, index=frame.index)
    if id_column is not None:
        if id_column in out.columns:
            raise ConfigError(f"{where}: id_column={id_column!r} is also an output column; rename it.")
        out.insert(0, id_column, frame[id_column])
    return out


def labelled_predictions(predictions: pd.DataFrame, rows: pd.DataFrame, target: str) -> pd.DataFrame:
    """``predictions`` of labelled ``rows`` with what they are judged against in front: ``row``
    (each row's number among the source file's data rows, from 0) and the target's value (under
    the target's name, or ``target`` where that name is taken)."""
    name = str(target) if str(target) not in {"row", *map(str, predictions.columns)} else "target"
    out = predictions.reset_index(drop=True)
    out.insert(0, name, rows[target].to_numpy())
    out.insert(0, "row", rows.index.to_numpy())
    return out
