"""Column typing, validation, and the preprocessing fitted on the training split.

scikit-learn fits the statistics (:class:`~sklearn.impute.SimpleImputer`,
:class:`~sklearn.preprocessing.StandardScaler` / :class:`~sklearn.preprocessing.MinMaxScaler`,
:class:`~sklearn.preprocessing.OneHotEncoder`, :class:`~sklearn.preprocessing.LabelEncoder`);
:class:`TabularPreprocessor` keeps only what they learned, as plain values, so a checkpoint
holds it without pickled objects, and applies it as ``(x - center) / scale`` and one-hot columns.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from pandas.api import types as ptypes
from sklearn.impute import SimpleImputer
from sklearn.preprocessing import LabelEncoder, MinMaxScaler, OneHotEncoder, StandardScaler

from nmsnn.errors import DataError

log = logging.getLogger(__name__)

TASKS = ("auto", "classification", "regression")
SCALERS = ("standard", "minmax", "none")
MAX_INFERRED_CLASSES = 20


def _rows(index: pd.Index, limit: int = 5) -> str:
    shown = ", ".join(str(i) for i in index[:limit])
    return shown + (", ..." if len(index) > limit else "")


def _native(values: Any) -> list:
    """Plain Python values (no numpy scalars) for checkpoints."""
    return [v.item() if isinstance(v, np.generic) else v for v in list(values)]


def _check_finite(values: pd.Series, column: str, where: str) -> None:
    bad = values.index[np.isinf(values.to_numpy(dtype=float, na_value=np.nan))]
    if len(bad):
        raise DataError(
            f"{where}: column {column!r} has infinite values (rows {_rows(bad)}); "
            "replace them with finite numbers or leave the cells empty to impute them."
        )


def _as_number_column(values: pd.Series, column: str, where: str) -> pd.Series | None:
    """The column as floats if it holds numbers (possibly stored as text), else ``None``.

    Dates and times become seconds since 1970-01-01 (UTC for dates without a time zone) and
    durations become seconds, whatever resolution the file stores them in.
    """
    if ptypes.is_datetime64_any_dtype(values):
        stamps = pd.to_datetime(values, utc=True)
        return (stamps - pd.Timestamp(0, tz="UTC")) / pd.Timedelta(seconds=1)
    if ptypes.is_timedelta64_dtype(values):
        return values / pd.Timedelta(seconds=1)
    if ptypes.is_bool_dtype(values):
        return values.astype(float)
    if ptypes.is_numeric_dtype(values):
        return values.astype(float)
    present, strays = _present_and_strays(values)
    if len(present) and not len(strays):
        return pd.to_numeric(values.replace(r"^\s*$", np.nan, regex=True), errors="coerce")
    if len(present) and len(strays) <= 0.05 * len(present):
        raise DataError(
            f"{where}: column {column!r} holds numbers, but {len(strays)} value(s) are not "
            f"numbers, {_first(strays)}; fix or empty them."
        )
    return None


def _present_and_strays(values: pd.Series) -> tuple[pd.Series, pd.Series]:
    """A column's present values (neither missing nor blank), and those among them that are not
    numbers."""
    present = values.dropna()
    present = present[present.astype(str).str.strip() != ""]
    return present, present[pd.to_numeric(present, errors="coerce").isna()]


def _first(values: pd.Series) -> str:
    """The first of ``values`` and its row, for an error message."""
    return f"e.g. {values.iloc[0]!r} in row {values.index[0]}"


def _numbers(values: pd.Series, column: str, where: str) -> pd.Series:
    """A column the model was trained on as numbers, as floats; an error naming the column and
    an offending value if it does not hold numbers here."""
    as_number = _as_number_column(values, column, where)
    if as_number is None:
        _, strays = _present_and_strays(values)
        raise DataError(
            f"{where}: column {column!r} was numeric in training, but {len(strays)} of its "
            f"{len(values)} values here are not numbers, {_first(strays)}; fix or empty them."
        )
    return as_number


def infer_task(target: pd.Series, task: str, column: str) -> str:
    """``classification`` for text labels or few distinct integers, else ``regression``."""
    if task not in TASKS:
        raise DataError(f"task={task!r} is not a task; use one of {TASKS}.")
    values = target.dropna()
    numeric = ptypes.is_numeric_dtype(values) and not ptypes.is_bool_dtype(values)
    integral = numeric and bool(np.all(np.mod(values.to_numpy(dtype=float), 1) == 0))
    if not numeric and not ptypes.is_bool_dtype(values):
        numbers = pd.to_numeric(values, errors="coerce")
        strays = values[numbers.isna()]
        if not len(strays):  # numbers stored as text
            values, numeric = numbers, True
            integral = bool(np.all(np.mod(numbers.to_numpy(dtype=float), 1) == 0))
        elif len(strays) <= 0.05 * len(values) and (
            task == "regression" or numbers.nunique() > MAX_INFERRED_CLASSES
        ):
            raise DataError(
                f"target column {column!r} holds numbers, but {len(strays)} value(s) are not numbers, "
                f"{_first(strays)}; fix or drop those rows"
                + ("." if task == "regression" else " (or set data.task=classification if they are labels).")
            )
        elif task == "regression":
            raise DataError(
                f"task=regression needs a numeric target, but column {column!r} holds text, {_first(strays)}."
            )
    if task == "auto":
        if not numeric:
            task, why = "classification", "it holds text or boolean labels"
        elif integral and values.nunique() <= MAX_INFERRED_CLASSES:
            task, why = "classification", f"it holds {values.nunique()} distinct integers"
        else:
            task, why = "regression", "it holds continuous numbers"
        log.info(
            "task: %s (inferred from target column %r: %s; set data.task to override)", task, column, why
        )
    elif task == "classification" and numeric and not integral:
        raise DataError(
            f"task=classification needs class labels, but column {column!r} holds non-integer "
            "numbers; use task=regression or convert the column to labels."
        )
    return task


def validate_target(frame: pd.DataFrame, target: str, where: str, training: bool = True) -> pd.Series:
    """The target column, checked for presence, missing values and (``training``) more than one
    value."""
    if target is None:
        raise DataError(f"{where}: no target column given; set data.target to one of {list(frame.columns)}.")
    if target not in frame.columns:
        raise DataError(
            f"{where}: target column {target!r} not found; the columns are {list(map(str, frame.columns))}."
        )
    values = frame[target]
    missing = values.index[values.isna()]
    if len(missing) == len(values):
        raise DataError(f"{where}: target column {target!r} is entirely empty.")
    if len(missing):
        raise DataError(
            f"{where}: target column {target!r} has {len(missing)} missing value(s) (rows "
            f"{_rows(missing)}); drop those rows or fill them in."
        )
    if training and values.nunique() < 2:
        raise DataError(
            f"{where}: target column {target!r} has a single value ({_native([values.iloc[0]])[0]!r}): "
            "only one class (or value), nothing to learn."
        )
    if ptypes.is_numeric_dtype(values) and not ptypes.is_bool_dtype(values):
        _check_finite(values, target, where)
    return values


def split_columns(
    frame: pd.DataFrame, target: str, drop: list[str], max_categories: int, where: str
) -> tuple[list[str], list[str]]:
    """Sort feature columns into numeric and categorical (text), rejecting unusable ones."""
    unknown = [c for c in drop if c not in frame.columns]
    if unknown:
        raise DataError(f"{where}: data.drop names column(s) {unknown} that do not exist.")
    numeric, categorical = [], []
    for column in frame.columns:
        if column == target or column in drop:
            continue
        values = frame[column]
        if values.isna().all():
            log.warning("%s: column %r is entirely empty and is ignored.", where, column)
            continue
        if str(column).startswith("Unnamed: "):
            log.warning(
                "%s: column %r has no name in the file's header; if it is a saved row index "
                "(pandas' to_csv writes one unless index=False), drop it with data.drop=[%r].",
                where,
                column,
                column,
            )
        if values.map(lambda v: isinstance(v, (list, dict, np.ndarray))).any():
            raise DataError(
                f"{where}: column {column!r} holds nested values (lists or structs); "
                "flatten it or drop it with data.drop=[...]."
            )
        as_number = _as_number_column(values, column, where)
        if as_number is not None:
            _check_finite(as_number, column, where)
            numeric.append(column)
            continue
        distinct = values.dropna().astype(str).nunique()
        present, strays = _present_and_strays(values)
        if distinct > max_categories and len(strays) <= 0.5 * len(present):
            raise DataError(
                f"{where}: column {column!r} mostly holds numbers, but {len(strays)} value(s) are not "
                f"numbers, {_first(strays)}; fix or empty them (or drop the column with "
                f"data.drop=[{column}])."
            )
        if distinct > max_categories:
            raise DataError(
                f"{where}: text column {column!r} has {distinct} distinct values, more than "
                f"data.max_categories={max_categories}; it cannot be one-hot encoded. Drop it "
                f"(data.drop=[{column}]) or raise data.max_categories."
            )
        categorical.append(column)
    if not numeric and not categorical:
        raise DataError(f"{where}: no usable feature columns besides the target {target!r}.")
    return numeric, categorical


@dataclass
class TabularPreprocessor:
    """Fitted preprocessing as plain values: ``x' = (impute(x) - center) / scale`` + one-hot."""

    target: str
    task: str
    numeric: list[str] = field(default_factory=list)
    impute: list[float] = field(default_factory=list)
    center: list[float] = field(default_factory=list)
    scale: list[float] = field(default_factory=list)
    categorical: list[str] = field(default_factory=list)
    categories: list[list[str]] = field(default_factory=list)
    category_fill: list[str] = field(default_factory=list)
    classes: list[Any] | None = None
    target_mean: float = 0.0
    target_std: float = 1.0

    # ------------------------------------------------------------------------ fitting
    @classmethod
    def fit(
        cls,
        train: pd.DataFrame,
        target: str,
        task: str,
        numeric: list[str],
        categorical: list[str],
        scaler: str = "standard",
        target_scaler: str = "standard",
        labels: pd.Series | None = None,
    ) -> TabularPreprocessor:
        """Fit imputation, scaling, one-hot categories and target encoding on ``train`` only.

        ``labels``: every row's target (classification): the class list comes from it, so that a
        class whose few rows all fell outside ``train`` is still a class of the model (default:
        the classes in ``train``)."""
        for name, value in (("scaler", scaler), ("target_scaler", target_scaler)):
            if value not in SCALERS:
                raise DataError(f"{name}={value!r} is not a scaler; use one of {SCALERS}.")
        pre = cls(target=target, task=task, numeric=list(numeric), categorical=list(categorical))
        if numeric:
            x = np.column_stack([_numbers(train[c], c, "training rows") for c in numeric])
            imputer = SimpleImputer(strategy="median", keep_empty_features=True).fit(x)
            imputed = imputer.transform(x)
            pre.impute = _native(imputer.statistics_)
            if scaler == "standard":
                fitted = StandardScaler().fit(imputed)
                pre.center, pre.scale = _native(fitted.mean_), _native(fitted.scale_)
            elif scaler == "minmax":
                fitted = MinMaxScaler().fit(imputed)
                span = np.where(fitted.data_range_ > 0, fitted.data_range_, 1.0)
                pre.center, pre.scale = _native(fitted.data_min_), _native(span)
            else:
                pre.center, pre.scale = [0.0] * len(numeric), [1.0] * len(numeric)
        if categorical:
            text = np.array(
                [[None if pd.isna(v) else str(v) for v in train[c]] for c in categorical], dtype=object
            ).T
            fill = SimpleImputer(strategy="most_frequent", missing_values=None).fit(text)
            pre.category_fill = [str(v) for v in fill.statistics_]
            encoder = OneHotEncoder(handle_unknown="ignore").fit(fill.transform(text))
            pre.categories = [[str(v) for v in cats] for cats in encoder.categories_]
        y = train[target]
        if task == "classification":
            pre.classes = _native(LabelEncoder().fit(_labels(y if labels is None else labels)).classes_)
        elif target_scaler == "standard":
            fitted = StandardScaler().fit(y.to_numpy(dtype=float).reshape(-1, 1))
            pre.target_mean, pre.target_std = float(fitted.mean_[0]), float(fitted.scale_[0])
        elif target_scaler == "minmax":
            fitted = MinMaxScaler().fit(y.to_numpy(dtype=float).reshape(-1, 1))
            pre.target_mean = float(fitted.data_min_[0])
            pre.target_std = float(fitted.data_range_[0]) or 1.0
        return pre

    # ------------------------------------------------------------------------ applying
    @property
    def feature_names(self) -> list[str]:
        """Names of the model's input columns, one-hot columns as ``column=value``."""
        onehot = [f"{c}={v}" for c, cats in zip(self.categorical, self.categories) for v in cats]
        return [*self.numeric, *onehot]

    @property
    def num_outputs(self) -> int:
        return len(self.classes) if self.task == "classification" else 1

    def transform(self, frame: pd.DataFrame, where: str = "rows") -> np.ndarray:
        """Preprocessed features ``[N, F]`` (float32) for raw rows with the training columns."""
        expected = [*self.numeric, *self.categorical]
        missing = [c for c in expected if c not in frame.columns]
        if missing:
            raise DataError(
                f"{where}: missing column(s) {missing} that the model was trained on; it expects {expected}."
            )
        extra = [c for c in frame.columns if c not in expected and c != self.target]
        if extra:
            log.info("%s: ignoring column(s) not used in training: %s", where, extra)
        parts = []
        if self.numeric:
            x = np.column_stack([_numbers(frame[c], c, where) for c in self.numeric])
            for j, column in enumerate(self.numeric):
                _check_finite(pd.Series(x[:, j], index=frame.index), column, where)
            holes = np.isnan(x)
            if holes.any():
                counts = {c: int(n) for c, n in zip(self.numeric, holes.sum(0)) if n}
                log.warning("%s: imputing missing values with training medians: %s", where, counts)
                x = np.where(holes, np.asarray(self.impute), x)
            parts.append((x - np.asarray(self.center)) / np.asarray(self.scale))
        for column, cats, fill in zip(self.categorical, self.categories, self.category_fill):
            values = frame[column].astype("object")
            if values.isna().any():
                log.warning(
                    "%s: column %r: %d missing value(s) filled with %r",
                    where,
                    column,
                    int(values.isna().sum()),
                    fill,
                )
            known = set(cats)
            text = values.where(values.notna(), fill).map(lambda v, known=known: _category_text(v, known))
            unseen = sorted(set(text) - set(cats))
            if unseen:
                log.warning(
                    "%s: column %r has categories not seen in training, encoded as all zeros: %s",
                    where,
                    column,
                    unseen[:10],
                )
            parts.append((text.to_numpy()[:, None] == np.asarray(cats, dtype=object)[None, :]).astype(float))
        return np.concatenate(parts, axis=1).astype(np.float32)

    def transform_target(self, values: pd.Series, where: str = "rows") -> np.ndarray:
        """Class indices (int64) or standardized values (float32)."""
        if self.task == "classification":
            labels = _labels(values)
            index = {c: i for i, c in enumerate(self.classes or [])}
            unknown = sorted({str(v) for v in labels if v not in index})
            if unknown:
                raise DataError(
                    f"{where}: target column {self.target!r} has label(s) {unknown[:10]} "
                    f"not seen in training (known: {self.classes})."
                )
            return np.asarray([index[v] for v in labels], dtype=np.int64)
        y = values.to_numpy(dtype=float)
        return ((y - self.target_mean) / self.target_std).astype(np.float32)

    def decode(self, prediction: np.ndarray) -> list[Any]:
        """Class labels for class indices (classification) or the values themselves."""
        if self.task == "classification":
            return [self.classes[i] for i in prediction]
        return list(prediction)

    # ------------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """Plain values only (loadable with ``torch.load(weights_only=True)``)."""
        return asdict(self)

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> TabularPreprocessor:
        """Rebuild from :meth:`state_dict` (or an exported ``preprocessing.json``)."""
        return cls(**{k: v for k, v in state.items() if k in cls.__dataclass_fields__})


def _category_text(value: Any, known: set[str]) -> str:
    """A cell of a text column as the category text it was trained as: a column of codes read as
    numbers here (``1.0``) matches the training text ``"1"``."""
    text = str(value)
    if text not in known and isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    return text


def _labels(values: pd.Series) -> list[Any]:
    """Class labels as plain values: booleans stay booleans, integers (and integral numbers)
    become ints, anything else strings."""
    if ptypes.is_bool_dtype(values):
        return [bool(v) for v in values]
    if ptypes.is_integer_dtype(values):
        return [int(v) for v in values]
    if ptypes.is_numeric_dtype(values):
        return [int(v) for v in values.to_numpy(dtype=float)]
    return [str(v) for v in values]
