"""Column typing, validation, and the preprocessing fitted on the training split.

scikit-learn fits the statistics (:class:`~sklearn.impute.SimpleImputer`,
:class:`~sklearn.preprocessing.StandardScaler` / :class:`~sklearn.preprocessing.MinMaxScaler`,
:class:`~sklearn.preprocessing.OneHotEncoder`, :class:`~sklearn.preprocessing.LabelEncoder`);
:class:`TabularPreprocessor` keeps only what they learned, as plain values, so a checkpoint
holds it without pickled objects, and applies it as ``(x - center) / scale`` and one-hot columns.
"""

from __future__ import annotations

import difflib
import logging
import re
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from pandas.api import types as ptypes
from pandas.tseries.api import guess_datetime_format
from sklearn.impute import SimpleImputer
from sklearn.preprocessing import (
    LabelEncoder,
    MinMaxScaler,
    OneHotEncoder,
    QuantileTransformer,
    StandardScaler,
)

from nmsnn.errors import DataError

log = logging.getLogger(__name__)

TASKS = ("auto", "classification", "regression")
SCALERS = ("standard", "minmax", "quantile", "none")
TARGET_SCALERS = ("standard", "minmax", "none")
QUANTILES = 256  # most quantiles kept per column by the quantile scaler
TARGET_TRANSFORMS = ("auto", "log1p", "none")
SKEWED = 1.0  # target_transform=auto: a non-negative target skewed more than this is learned as log1p
MAX_INFERRED_CLASSES = 20
MIN_ID_ROWS = 20  # an integer column unique in more rows than this looks like a row id
UNIQUE_SHARE = 0.9  # a text column with this share of distinct values looks like names or ids
OTHER = "<other>"  # the one-hot column of a text column's infrequent and unseen values
EPOCH = pd.Timestamp(0, tz="UTC")
# ISO-8601 dates and date-times: 2024-01-31, 2024-01-31 12:00, 2024-01-31T12:00:00.5+01:00
ISO_DATE = re.compile(
    r"\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?(?:Z|[+-]\d{2}(?::?\d{2})?)?)?"
)

# numbers as people write them: a currency sign, thousands separators, a percent sign
# ($1,234.50, -€12, 45%, 1,000,000); read as the number written (45% is 45)
WRITTEN_NUMBER = re.compile(r"[-+]?\s*[$€£¥]?\s*[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?\s*%?")
NUMBER_MARKS = r"[$€£¥,%\s]"


def listed_rows(index: Any, limit: int = 5) -> str:
    """``14, 97, 112, ...``: the first ``limit`` of ``index``'s row labels, for messages."""
    shown = ", ".join(str(i) for i in index[:limit])
    return shown + (", ..." if len(index) > limit else "")


def _native(values: Any) -> list:
    """Plain Python values (no numpy scalars) for checkpoints."""
    return [v.item() if isinstance(v, np.generic) else v for v in list(values)]


def _check_finite(values: pd.Series, column: str, where: str) -> None:
    bad = values.index[np.isinf(values.to_numpy(dtype=float, na_value=np.nan))]
    if len(bad):
        raise DataError(
            f"{where}: column {column!r} has infinite values (rows {listed_rows(bad)}); "
            "replace them with finite numbers or leave the cells empty to impute them."
        )


def _as_number_column(
    values: pd.Series, column: str, where: str, parsed: tuple[pd.Series, pd.Series] | None = None
) -> pd.Series | None:
    """The column as floats if every present value is a number (possibly stored as text) or an
    ISO-8601 date, else ``None``. ``parsed``: its :func:`_present_and_strays`, where the caller
    has them.

    Dates and times (typed, or ISO-8601 text) become seconds since 1970-01-01 (UTC for dates
    without a time zone) and durations become seconds, whatever resolution the file stores them
    in. Which columns of mixed numbers and words are still usable is decided by
    :func:`split_columns` (and ``data.numeric``), not here."""
    if ptypes.is_datetime64_any_dtype(values):
        stamps = pd.to_datetime(values, utc=True)
        return (stamps - EPOCH) / pd.Timedelta(seconds=1)
    if ptypes.is_timedelta64_dtype(values):
        return values / pd.Timedelta(seconds=1)
    if ptypes.is_bool_dtype(values):
        return values.astype(float)
    if ptypes.is_numeric_dtype(values):
        return values.astype(float)
    present, strays = parsed or _present_and_strays(values)
    if len(present) and not len(strays):
        return _to_numbers(values)
    if len(present) and _looks_iso(present):
        return _iso_seconds(values, present, column, where)
    return None


def _looks_iso(present: pd.Series) -> bool:
    """Whether every one of ``present`` (no missing values) is ISO-8601 date or date-time text."""
    if not isinstance(present.iloc[0], str) or not ISO_DATE.fullmatch(present.iloc[0].strip()):
        return False  # the cheap test first: most text columns fail on their first value
    return bool(present.astype(str).str.strip().str.fullmatch(ISO_DATE).all())


def _iso_seconds(values: pd.Series, present: pd.Series, column: str, where: str) -> pd.Series:
    """Seconds since 1970 (UTC) of a column of ISO-8601 text; an error for an impossible date."""
    seconds, bad = _date_seconds(present.astype(str).str.strip(), values.index, "ISO8601")
    if len(bad):
        raise DataError(
            f"{where}: column {column!r} holds ISO-8601 dates, but {len(bad)} value(s) are not "
            f"valid dates, {_first(bad)}; fix or empty them."
        )
    return seconds


def _date_seconds(text: pd.Series, index: pd.Index, fmt: str) -> tuple[pd.Series, pd.Series]:
    """Seconds since 1970 (UTC) of date text in format ``fmt`` (missing elsewhere in ``index``),
    and the values that are not dates in it."""
    stamps = pd.to_datetime(text, utc=True, format=fmt, errors="coerce")
    return ((stamps - EPOCH) / pd.Timedelta(seconds=1)).reindex(index).astype(float), text[stamps.isna()]


def date_format(values: pd.Series, column: str, where: str) -> str:
    """The format of a ``data.parse_dates`` column: ``ISO8601``, else the format of its first
    value (``%d/%m/%Y``, ``%b %d %Y``, ``%Y%m%d`` ...) that every value has, month first where
    both orders fit; an error naming a value that is not a date."""
    if ptypes.is_datetime64_any_dtype(values):
        return "ISO8601"
    text = _date_text(values)
    if not len(text) or _looks_iso(text):
        return "ISO8601"
    fmt, tried = _guess_date_format(text)
    if fmt:
        return fmt
    fallback = tried[0] if tried else "mixed"  # mixed: each value as pandas reads it
    _parsed_dates(values, column, where, fallback)  # raises, naming a value, unless all parse
    return fallback


def _guess_date_format(text: pd.Series) -> tuple[str | None, list[str]]:
    """The format of ``text``'s first value (month first, then day first) that every value of
    ``text`` has, or ``None``; and the formats tried."""
    tried = []
    for dayfirst in (False, True):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # pandas' note on the day-first guess
            guessed = guess_datetime_format(str(text.iloc[0]).strip(), dayfirst=dayfirst)
        if guessed and guessed not in tried:
            tried.append(guessed)
            if pd.to_datetime(text, format=guessed, errors="coerce").notna().all():
                return guessed, tried
    return None, tried


def _date_text(values: pd.Series) -> pd.Series:
    """The present values of a date column as text (``20240131.0`` from a column with gaps as
    ``20240131``)."""
    present, _ = _present_and_strays(values)
    return present.map(_category_value).astype(str).str.strip()


def _parsed_dates(values: pd.Series, column: str, where: str, fmt: str) -> pd.Series:
    """A ``data.parse_dates`` column, in format ``fmt`` (see :func:`date_format`), as seconds
    since 1970 (UTC); an error naming a value that is not a date in that format."""
    if ptypes.is_datetime64_any_dtype(values):
        return _as_number_column(values, column, where)
    seconds, bad = _date_seconds(_date_text(values), values.index, fmt)
    if len(bad):
        raise DataError(
            f"{where}: column {column!r} (data.parse_dates) has {len(bad)} value(s) that are not "
            f"dates (format {fmt}), {_first(bad)}; fix or empty them."
        )
    return seconds


def _coerced_numbers(values: pd.Series, column: str, where: str, warn: bool = True) -> pd.Series:
    """A ``data.numeric`` column as floats: values that are not numbers become missing (imputed
    with the training median), with a warning that counts them."""
    as_number = _as_number_column(values, column, where)
    if as_number is not None:
        return as_number
    _, strays = _present_and_strays(values)
    if warn and len(strays):
        log.warning(
            "%s: column %r (data.numeric): %d value(s) are not numbers and are read as missing "
            "(imputed with the training median), %s.",
            where,
            column,
            len(strays),
            _first(strays),
        )
    return _to_numbers(values.astype(object).where(~values.index.isin(strays.index)))


def _forced_numbers(
    frame: pd.DataFrame,
    coerce: list[str],
    dates: list[str],
    formats: list[str],
    where: str,
    warn: bool = True,
) -> pd.DataFrame:
    """``frame`` with its ``data.numeric`` (``coerce``) and ``data.parse_dates`` (``dates``, in
    ``formats``) columns as floats."""
    if not coerce and not dates:
        return frame
    frame = frame.copy()
    for column in coerce:
        frame[column] = _coerced_numbers(frame[column], column, where, warn)
    for column, fmt in zip(dates, formats):
        frame[column] = _parsed_dates(frame[column], column, where, fmt)
    return frame


def _present_and_strays(values: pd.Series) -> tuple[pd.Series, pd.Series]:
    """A column's present values (neither missing nor blank), and those among them that are not
    numbers (see :func:`_to_numbers`)."""
    present = values.dropna()
    if ptypes.is_numeric_dtype(present) or ptypes.is_bool_dtype(present):  # no blanks, no words
        return present, present.iloc[:0]
    present = present[present.astype(str).str.strip() != ""]
    return present, present[_to_numbers(present).isna()]


def _to_numbers(values: pd.Series) -> pd.Series:
    """``values`` as floats: numbers, numbers as text, and numbers as people write them
    (:data:`WRITTEN_NUMBER`); missing where a value is none of these (or blank)."""
    numbers = pd.to_numeric(values, errors="coerce").astype(float)
    if ptypes.is_numeric_dtype(values):
        return numbers
    left = (numbers.isna() & values.notna()).to_numpy()
    if left.any():
        text = values[left].astype(str).str.strip()
        written = text.str.fullmatch(WRITTEN_NUMBER).to_numpy(dtype=bool)
        if written.any():
            plain = text[written].str.replace(NUMBER_MARKS, "", regex=True)
            numbers.iloc[np.flatnonzero(left)[written]] = pd.to_numeric(plain, errors="coerce").to_numpy()
    return numbers


def _written_numbers(present: pd.Series) -> pd.Series:
    """The values of text ``present`` (all numbers, see :func:`_to_numbers`) that are written with
    a currency sign, thousands separators or a percent sign."""
    return present[pd.to_numeric(present, errors="coerce").isna()]


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
        numbers = _to_numbers(values)
        strays = values[numbers.isna()]
        if not len(strays):  # numbers stored as text (also as people write them, $1,200)
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


def drop_missing_target(
    frame: pd.DataFrame, target: str | None, where: str, warn: bool = True
) -> pd.DataFrame:
    """``frame`` without the rows whose target is missing (their row labels kept), with one
    warning that counts them. A target that is absent or entirely empty is left for
    :func:`validate_target` to report."""
    if target is None or target not in frame.columns:
        return frame
    missing = frame.index[frame[target].isna()]
    if not len(missing) or len(missing) == len(frame):
        return frame
    if warn:
        log.warning(
            "%s: %d row(s) have no value in target column %r and are skipped (rows %s).",
            where,
            len(missing),
            target,
            listed_rows(missing),
        )
    return frame.drop(index=missing)


def validate_target(frame: pd.DataFrame, target: str, where: str, training: bool = True) -> pd.Series:
    """The target column, checked for presence, missing values and (``training``) more than one
    value."""
    if target is None:
        raise DataError(f"{where}: no target column given; set data.target to one of {list(frame.columns)}.")
    if target not in frame.columns:
        names = pd.Series([str(c) for c in frame.columns])
        headless = (
            " The first line looks like data, not column names: add a header line that names the columns."
            if _to_numbers(names).notna().mean() >= 0.5
            else ""
        )
        raise DataError(
            f"{where}: target column {target!r} not found{_did_you_mean(target, frame.columns)}; "
            f"the columns are {list(names)}.{headless}"
        )
    values = frame[target]
    missing = values.index[values.isna()]
    if len(missing) == len(values):
        raise DataError(f"{where}: target column {target!r} is entirely empty.")
    if len(missing):
        raise DataError(
            f"{where}: target column {target!r} has {len(missing)} missing value(s) (rows "
            f"{listed_rows(missing)}); drop those rows or fill them in."
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
    frame: pd.DataFrame,
    target: str,
    drop: list[str],
    max_categories: int,
    where: str,
    categorical: list[str] = (),
    numeric: list[str] = (),
    parse_dates: list[str] = (),
) -> tuple[list[str], list[str]]:
    """Sort feature columns into numeric and categorical (text), leaving out unusable ones.

    ``categorical``, ``numeric`` and ``parse_dates`` force a column's kind (``data.*`` of the same
    names); the others are inferred by :func:`_column_kind`."""
    forced = _check_overrides(
        frame,
        target,
        where,
        {"drop": drop, "categorical": categorical, "numeric": numeric, "parse_dates": parse_dates},
    )
    numbers, texts = [], []
    for column in frame.columns:
        if column == target or column in drop:
            continue
        kind = _column_kind(frame[column], column, where, max_categories, forced.get(column))
        if kind == "numeric":
            numbers.append(column)
        elif kind == "categorical":
            texts.append(column)
    if not numbers and not texts:
        raise DataError(f"{where}: no usable feature columns besides the target {target!r}.")
    return numbers, texts


def _did_you_mean(name: Any, columns: Sequence[Any]) -> str:
    """`` (did you mean 'Price'?)`` for the column whose name is ``name`` but for case and
    surrounding spaces, else the closest name by spelling, else nothing."""
    names = [str(c) for c in columns]
    same = [c for c in names if c.strip().casefold() == str(name).strip().casefold()]
    close = same or difflib.get_close_matches(str(name), names, n=1, cutoff=0.8)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _check_overrides(
    frame: pd.DataFrame, target: str, where: str, settings: dict[str, list[str]]
) -> dict[str, str]:
    """Each forced column's kind (``categorical``, ``numeric``, ``parse_dates``); one error naming
    every setting's names that are not columns, the target, or a column in two settings."""
    problems, forced = [], {}
    for name, columns in settings.items():
        unknown = [c for c in columns if c not in frame.columns]
        if unknown:
            problems.append(
                f"data.{name} names column(s) {unknown} that do not exist"
                + "".join(_did_you_mean(c, frame.columns) for c in unknown)
            )
        if name != "drop" and target in columns:
            problems.append(f"data.{name} names the target column {target!r} (it applies to features)")
        for column in columns:
            if column in forced and column in frame.columns:
                problems.append(f"column {column!r} is in both data.{forced[column]} and data.{name}")
            forced[column] = name
    if problems:
        raise DataError(f"{where}: {'; '.join(problems)}; the columns are {list(map(str, frame.columns))}.")
    return {c: kind for c, kind in forced.items() if kind != "drop"}


def _column_kind(
    values: pd.Series, column: str, where: str, max_categories: int, forced: str | None
) -> str | None:
    """``numeric``, ``categorical``, or ``None`` (ignored, with a warning) for one feature column;
    ``forced``: its ``data.categorical`` / ``data.numeric`` / ``data.parse_dates`` setting."""
    if values.isna().all():
        log.warning("%s: column %r is entirely empty and is ignored.", where, column)
        return None
    if str(column).startswith("Unnamed: "):
        log.warning(
            "%s: column %r has no name in the file's header; if it is a saved row index "
            "(pandas' to_csv writes one unless index=False), drop it with data.drop=[%r].",
            where,
            column,
            column,
        )
    nested = values.dtype == object and values.map(lambda v: isinstance(v, (list, dict, np.ndarray))).any()
    if nested:  # (only an object column can hold them)
        raise DataError(
            f"{where}: column {column!r} holds nested values (lists or structs); "
            "flatten it or drop it with data.drop=[...]."
        )
    present, strays = _present_and_strays(values)
    if not len(present):
        log.warning("%s: column %r holds only blank values and is ignored.", where, column)
        return None
    if forced == "categorical":
        return "categorical"
    if forced == "numeric":
        _check_finite(_coerced_numbers(values, column, where, warn=False), column, where)
        return "numeric"  # the warning on the words comes with the transform of every row
    if forced == "parse_dates":
        fmt = date_format(values, column, where)
        log.info("%s: column %r (data.parse_dates) read as dates in format %s.", where, column, fmt)
        return "numeric"
    as_number = _as_number_column(values, column, where, (present, strays))
    if as_number is None:
        return _text_kind(present, strays, column, where, max_categories)
    _check_finite(as_number, column, where)
    _note_text_read_as_numbers(present, as_number, column, where)
    if ptypes.is_integer_dtype(values) and len(values) > MIN_ID_ROWS and values.nunique() == len(values):
        log.warning(
            "%s: integer column %r has a different value in every row, like a row id; it is used as "
            "a feature, but if it is an id drop it with data.drop=[%s].",
            where,
            column,
            column,
        )
    return "numeric"


def _note_text_read_as_numbers(present: pd.Series, as_number: pd.Series, column: str, where: str) -> None:
    """Log how a numeric column's text was read: ISO-8601 dates, or numbers written for people."""
    if ptypes.is_numeric_dtype(present):
        return
    if _looks_iso(present):
        log.info(
            "%s: column %r holds ISO-8601 dates (e.g. %r); read as seconds since 1970-01-01 UTC.",
            where,
            column,
            str(present.iloc[0]),
        )
    elif len(written := _written_numbers(present)):
        log.info(
            "%s: column %r holds numbers written with currency signs, thousands separators or "
            "percent signs (e.g. %r); read as the numbers written (%r is %s).",
            where,
            column,
            str(written.iloc[0]),
            str(written.iloc[0]),
            f"{as_number[written.index[0]]:g}",
        )


def _text_kind(
    present: pd.Series, strays: pd.Series, column: str, where: str, max_categories: int
) -> str | None:
    """A column that is not all numbers (its present values, and those that are not numbers):
    ``categorical``, ``None`` for one of (almost) only distinct values (names, free text, ids), or
    an error for many numbers with a few words."""
    distinct = present.astype(str).nunique()
    if len(strays) <= 0.5 * len(present):  # mostly numbers, and some words
        words = sorted(set(strays.astype(str)))
        if distinct > max_categories:
            mostly = "mostly holds" if len(strays) > 0.05 * len(present) else "holds"
            raise DataError(
                f"{where}: column {column!r} {mostly} numbers, but {len(strays)} value(s) are not "
                f"numbers, {_first(strays)}; fix or empty them, set data.numeric=[{column}] to read "
                f"them as missing values, or drop the column with data.drop=[{column}]."
            )
        log.warning(
            "%s: column %r holds numbers and %d value(s) that are not, %s; with %d distinct values "
            "it is read as a text (one-hot) column. data.numeric=[%s] reads it as numbers instead "
            "(the words as missing values).",
            where,
            column,
            len(strays),
            words[:10],
            distinct,
            column,
        )
        return "categorical"
    if distinct > max_categories and (fmt := _guess_date_format(present.astype(str).str.strip())[0]):
        log.warning(
            "%s: text column %r holds dates (e.g. %r, format %s) and is ignored: only ISO-8601 "
            "dates (2024-01-31) are read as dates unasked, as others may be day or month first. "
            "data.parse_dates=[%s] reads them as dates.",
            where,
            column,
            str(present.iloc[0]),
            fmt,
            column,
        )
        return None
    if distinct > max_categories and distinct >= UNIQUE_SHARE * len(present):
        log.warning(
            "%s: text column %r has %d distinct values in %d rows, nearly one per row (names, free "
            "text or ids?), and is ignored; data.categorical=[%s] keeps it (its most frequent "
            "values one-hot, the rest as %s=%s).",
            where,
            column,
            distinct,
            len(present),
            column,
            column,
            OTHER,
        )
        return None
    return "categorical"


def _check_scalers(scaler: str, target_scaler: str) -> None:
    for name, value, known in (("scaler", scaler, SCALERS), ("target_scaler", target_scaler, TARGET_SCALERS)):
        if value not in known:
            raise DataError(f"{name}={value!r} is not a scaler; use one of {known}.")


@dataclass
class TabularPreprocessor:
    """Fitted preprocessing as plain values: ``x' = (impute(x) - center) / scale`` + one-hot."""

    target: str
    task: str
    numeric: list[str] = field(default_factory=list)
    impute: list[float] = field(default_factory=list)
    center: list[float] = field(default_factory=list)
    scale: list[float] = field(default_factory=list)
    # scaler=quantile: per numeric column, its training quantiles at ``quantile_levels``; a value
    # maps to the standard normal quantile of its rank (scikit-learn's QuantileTransformer)
    quantiles: list[list[float]] = field(default_factory=list)
    quantile_levels: list[float] = field(default_factory=list)
    categorical: list[str] = field(default_factory=list)
    categories: list[list[str]] = field(default_factory=list)
    category_fill: list[str] = field(default_factory=list)
    # per categorical column: whether it has a ``column=<other>`` one-hot column (its values
    # beyond the max_categories - 1 most frequent in training, and values unseen in training)
    grouped: list[bool] = field(default_factory=list)
    coerce: list[str] = field(default_factory=list)  # numeric columns of data.numeric
    dates: list[str] = field(default_factory=list)  # numeric columns of data.parse_dates ...
    date_formats: list[str] = field(default_factory=list)  # ... and their formats (date_format)
    classes: list[Any] | None = None
    target_mean: float = 0.0
    target_std: float = 1.0
    target_transform: str = "none"  # none | log1p: the model learns log(1 + y) (standardized)
    # data.bins: per numeric column, the distinct quantiles of its scaled training values that
    # bound its piecewise-linear bins (empty: the column feeds its scaled value alone)
    bin_edges: list[list[float]] = field(default_factory=list)

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
        *,
        coerce: list[str] = (),
        dates: list[str] = (),
        date_formats: dict[str, str] | None = None,
        max_categories: int | None = None,
        where: str = "training rows",
        target_transform: str = "none",
        bins: int = 0,
    ) -> TabularPreprocessor:
        """Fit imputation, scaling, one-hot categories and target encoding on ``train`` only.

        ``labels``: every row's target (classification): the class list comes from it, so that a
        class whose few rows all fell outside ``train`` is still a class of the model (default:
        the classes in ``train``). ``coerce`` / ``dates``: numeric columns forced by
        ``data.numeric`` (words read as missing) / ``data.parse_dates`` (in ``date_formats``,
        chosen on every row by :func:`date_format`; default: on ``train``). ``max_categories``: a
        text column keeps its ``max_categories - 1`` most frequent values as one-hot columns and
        groups the rest into ``column=<other>`` (``None``: every value its own column).
        ``target_transform`` (regression): ``log1p`` learns ``log(1 + y)``, ``auto`` does so for
        a non-negative target whose training skewness exceeds :data:`SKEWED`. ``bins``: each
        numeric column with more than two distinct values also feeds a piecewise-linear
        encoding over (at most) this many quantile bins of its training values (see
        :func:`piecewise_linear`)."""
        if target_transform not in TARGET_TRANSFORMS:
            raise DataError(f"target_transform={target_transform!r} is not one of {TARGET_TRANSFORMS}.")
        _check_scalers(scaler, target_scaler)
        pre = cls(target=target, task=task, numeric=list(numeric), categorical=list(categorical))
        pre.coerce = [c for c in coerce if c in pre.numeric]
        pre.dates = [c for c in dates if c in pre.numeric]
        formats = date_formats or {}
        pre.date_formats = [formats.get(c) or date_format(train[c], c, where) for c in pre.dates]
        train = _forced_numbers(train, pre.coerce, pre.dates, pre.date_formats, where, warn=False)
        if numeric:
            pre._fit_numbers(train, scaler, where)
            if bins:
                pre.bin_edges = quantile_edges(pre._scaled_numbers(train, where)[0], bins)
        if categorical:
            pre._fit_categories(train, max_categories, where)
        y = train[target]
        if task == "classification":
            pre.classes = _native(LabelEncoder().fit(_labels(y if labels is None else labels)).classes_)
        else:
            pre._fit_target(y, target_scaler, target_transform, where)
        return pre

    def _fit_target(self, y: pd.Series, target_scaler: str, target_transform: str, where: str) -> None:
        """The regression target's transform and scaling, fitted on the training rows ``y``."""
        y = _to_numbers(y)
        self.target_transform = _target_transform(y, self.target, target_transform, where)
        y = pd.Series(self._forward_target(y.to_numpy(dtype=float), where), index=y.index)
        if target_scaler == "standard":
            fitted = StandardScaler().fit(y.to_numpy(dtype=float).reshape(-1, 1))
            self.target_mean, self.target_std = float(fitted.mean_[0]), float(fitted.scale_[0])
        elif target_scaler == "minmax":
            fitted = MinMaxScaler().fit(y.to_numpy(dtype=float).reshape(-1, 1))
            self.target_mean = float(fitted.data_min_[0])
            self.target_std = float(fitted.data_range_[0]) or 1.0

    def _fit_numbers(self, train: pd.DataFrame, scaler: str, where: str) -> None:
        """Median imputation and ``scaler`` for the numeric columns, fitted on ``train``."""
        x = np.column_stack([_numbers(train[c], c, "training rows") for c in self.numeric])
        imputer = SimpleImputer(strategy="median", keep_empty_features=True).fit(x)
        imputed = imputer.transform(x)
        self.impute = _native(imputer.statistics_)
        if scaler == "standard":
            with np.errstate(over="ignore", invalid="ignore"):  # overflow is refused below
                fitted = StandardScaler().fit(imputed)
            self.center, self.scale = _native(fitted.mean_), _native(fitted.scale_)
        elif scaler == "minmax":
            fitted = MinMaxScaler().fit(imputed)
            span = np.where(fitted.data_range_ > 0, fitted.data_range_, 1.0)
            self.center, self.scale = _native(fitted.data_min_), _native(span)
        elif scaler == "quantile":
            fitted = QuantileTransformer(
                n_quantiles=min(QUANTILES, len(imputed)), output_distribution="normal", subsample=None
            ).fit(imputed)
            self.quantiles = [_native(q) for q in fitted.quantiles_.T]
            self.quantile_levels = _native(fitted.references_)
            # then standardized: a column of few values lands on the normal's extremes
            normal = StandardScaler().fit(fitted.transform(imputed))
            self.center, self.scale = _native(normal.mean_), _native(normal.scale_)
        else:
            self.center, self.scale = [0.0] * len(self.numeric), [1.0] * len(self.numeric)
        overflowing = [
            c for c, m, sd in zip(self.numeric, self.center, self.scale) if not np.isfinite([m, sd]).all()
        ]
        if overflowing:
            raise DataError(
                f"{where}: column(s) {overflowing} hold values too large to scale (e.g. "
                f"{np.nanmax(np.abs(x[:, self.numeric.index(overflowing[0])])):.3g}: their variance overflows); "
                "divide them by a power of ten, or use data.scaler=quantile."
            )

    def _fit_categories(self, train: pd.DataFrame, max_categories: int | None, where: str) -> None:
        """Most frequent fill and one-hot categories of the text columns (scikit-learn's
        ``OneHotEncoder(max_categories=...)``: infrequent values share one ``<other>`` column)."""
        text = np.array([[_category_value(v) for v in train[c]] for c in self.categorical], dtype=object).T
        fill = SimpleImputer(strategy="most_frequent", missing_values=None).fit(text)
        self.category_fill = [str(v) for v in fill.statistics_]
        filled = fill.transform(text)
        encoder = OneHotEncoder(handle_unknown="infrequent_if_exist", max_categories=max_categories)
        encoder.fit(filled)
        rare = getattr(encoder, "infrequent_categories_", None) or [None] * len(self.categorical)
        self.categories, self.grouped = [], []
        for j, (column, cats) in enumerate(zip(self.categorical, encoder.categories_)):
            other = set() if rare[j] is None else {str(v) for v in rare[j]}
            self.categories.append([str(v) for v in cats if str(v) not in other])
            self.grouped.append(bool(other))
            if other:
                log.info(
                    "%s: text column %r has %d distinct values in the training split, more than "
                    "data.max_categories=%d: the %d most frequent are one-hot columns, the other "
                    "%d (%d training rows, and any value unseen in training) are grouped as %r.",
                    where,
                    column,
                    len(cats),
                    max_categories,
                    len(self.categories[-1]),
                    len(other),
                    int(np.isin(filled[:, j].astype(str), list(other)).sum()),
                    f"{column}={OTHER}",
                )

    # ------------------------------------------------------------------------ applying
    @property
    def feature_names(self) -> list[str]:
        """Names of the model's input columns, one-hot columns as ``column=value`` (and
        ``column=<other>`` for a grouped column's infrequent and unseen values)."""
        grouped = self.grouped or [False] * len(self.categorical)
        onehot = [
            f"{c}={v}"
            for c, cats, other in zip(self.categorical, self.categories, grouped)
            for v in [*cats, *([OTHER] if other else [])]
        ]
        bins = [f"{c}:bin{t}" for c, edges in zip(self.numeric, self.bin_edges) for t in range(1, len(edges))]
        return [*self.numeric, *bins, *onehot]

    @property
    def num_outputs(self) -> int:
        return len(self.classes) if self.task == "classification" else 1

    def transform(self, frame: pd.DataFrame, where: str = "rows", report: bool = True) -> np.ndarray:
        """Preprocessed features ``[N, F]`` (float32) for raw rows with the training columns;
        missing values are imputed. With ``report``, the imputed values are counted in one
        warning, and unseen categories and words read as missing (``data.numeric``) are warned
        about."""
        expected = [*self.numeric, *self.categorical]
        missing = [c for c in expected if c not in frame.columns]
        if missing:
            raise DataError(
                f"{where}: missing column(s) {missing} that the model was trained on; it expects {expected}."
            )
        extra = [c for c in frame.columns if c not in expected and c != self.target]
        if extra:
            log.info("%s: ignoring column(s) not used in training: %s", where, extra)
        frame = _forced_numbers(frame, self.coerce, self.dates, self.date_formats, where, warn=report)
        parts = []
        filled: dict[str, tuple[int, str]] = {}  # column -> values imputed, and with what
        if self.numeric:  # each part computed in float64, kept as float32 (half the memory)
            scaled, filled = self._scaled_numbers(frame, where)
            parts.append(self._float32(scaled, frame.index, where))
            parts += [
                piecewise_linear(scaled[:, j], edges).astype(np.float32)
                for j, edges in enumerate(self.bin_edges)
            ]
        grouped = self.grouped or [False] * len(self.categorical)
        for j, column in enumerate(self.categorical):
            missing = int(frame[column].isna().sum())
            if missing:
                filled[str(column)] = (missing, repr(self.category_fill[j]))
            parts.append(self._one_hot(frame[column], j, grouped[j], where, report))
        if filled and report:
            log.warning(
                "%s: %d missing value(s) imputed with the training split's median or most frequent value: %s",
                where,
                sum(n for n, _ in filled.values()),
                ", ".join(f"{c}: {n} ({value})" for c, (n, value) in filled.items()),
            )
        return np.concatenate(parts, axis=1)

    def _float32(self, scaled: np.ndarray, index: pd.Index, where: str) -> np.ndarray:
        """The scaled numeric columns as float32; an error naming the column and row of a value
        too large for it (bins and one-hot columns lie in [0, 1])."""
        with np.errstate(over="ignore"):
            x32 = scaled.astype(np.float32)
        beyond = np.argwhere(~np.isfinite(x32))
        if len(beyond):
            row, j = beyond[0]
            raise DataError(
                f"{where}: column {self.numeric[j]!r} has a value too large for the model's float32 "
                f"inputs once scaled ({scaled[row, j]:.3g} in row {index[row]}); check that row."
            )
        return x32

    def _scaled_numbers(
        self, frame: pd.DataFrame, where: str
    ) -> tuple[np.ndarray, dict[str, tuple[int, str]]]:
        """The numeric columns imputed and scaled ``[N, len(numeric)]``, and what was imputed:
        ``{column: (count, with what)}``."""
        x = np.column_stack([_numbers(frame[c], c, where) for c in self.numeric])
        for j, column in enumerate(self.numeric):
            _check_finite(pd.Series(x[:, j], index=frame.index), column, where)
        holes = np.isnan(x)
        filled = {
            c: (int(n), f"median {m:.4g}") for c, n, m in zip(self.numeric, holes.sum(0), self.impute) if n
        }
        x = np.where(holes, np.asarray(self.impute), x)
        if self.quantiles:
            x = self._quantile_transformer().transform(x)
        scaled = (x - np.asarray(self.center)) / np.asarray(self.scale)
        return scaled, filled

    def _quantile_transformer(self) -> QuantileTransformer:
        """The fitted quantile scaler, rebuilt from the quantiles this preprocessor holds."""
        fitted = QuantileTransformer(n_quantiles=len(self.quantile_levels), output_distribution="normal")
        fitted.quantiles_ = np.asarray(self.quantiles, dtype=float).T
        fitted.references_ = np.asarray(self.quantile_levels, dtype=float)
        fitted.n_features_in_ = len(self.numeric)
        return fitted

    def _one_hot(
        self, values: pd.Series, j: int, grouped: bool, where: str, report: bool = True
    ) -> np.ndarray:
        """One-hot columns of categorical column ``j``: missing values get the training's most
        frequent value; other values count as ``<other>`` (``grouped``) or all zeros (logged
        with ``report``)."""
        column, cats, fill = self.categorical[j], self.categories[j], self.category_fill[j]
        values = values.astype("object")
        known = set(cats)
        text = values.where(values.notna(), fill).map(lambda v, known=known: _category_text(v, known))
        onehot = (text.to_numpy()[:, None] == np.asarray(cats, dtype=object)[None, :]).astype(np.float32)
        unseen = sorted(set(text) - known) if report else []
        if unseen and grouped:
            log.info(
                "%s: column %r: %d row(s) with values outside its %d most frequent training values "
                "counted as %r, e.g. %s",
                where,
                column,
                int((onehot.sum(1) == 0).sum()),
                len(cats),
                f"{column}={OTHER}",
                unseen[:5],
            )
        elif unseen:
            log.warning(
                "%s: column %r has categories not seen in training, encoded as all zeros: %s",
                where,
                column,
                unseen[:10],
            )
        if grouped:
            onehot = np.column_stack([onehot, onehot.sum(1) == 0]).astype(np.float32)
        return onehot

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
        y = self._forward_target(self.target_numbers(values), where)
        return ((y - self.target_mean) / self.target_std).astype(np.float32)

    @staticmethod
    def target_numbers(values: pd.Series) -> np.ndarray:
        """A regression target's values as floats, also where the file writes them as text
        (``1200``, ``$1,200``)."""
        return _to_numbers(values).to_numpy(dtype=float)

    def _forward_target(self, y: np.ndarray, where: str) -> np.ndarray:
        """Regression targets on the scale the model learns (before standardizing)."""
        if self.target_transform != "log1p":
            return y
        below = y[y < 0]
        if len(below):
            raise DataError(
                f"{where}: target column {self.target!r} has negative value(s), e.g. {float(below[0]):g}, "
                "but the model learns log(1 + target) (data.target_transform=log1p)."
            )
        return np.log1p(y)

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


def quantile_edges(scaled: np.ndarray, bins: int) -> list[list[float]]:
    """Per column of ``scaled [N, F]``: the distinct values among its ``bins + 1`` evenly spaced
    quantiles, the edges of its piecewise-linear bins; a column of at most two distinct values
    (a yes/no column) gets none (its scaled value says everything)."""
    levels = np.linspace(0.0, 1.0, bins + 1)
    edges = []
    for column in scaled.T:
        if len(np.unique(column)) <= 2:
            edges.append([])
            continue
        edges.append(_native(np.unique(np.quantile(column, levels))))
    return edges


def piecewise_linear(values: np.ndarray, edges: Sequence[float]) -> np.ndarray:
    r"""The piecewise-linear encoding of one column (Gorishniy et al., 2022): one input per bin
    :math:`[e_{t-1}, e_t]`, :math:`\mathrm{clip}((x - e_{t-1}) / (e_t - e_{t-1}), 0, 1)`: 0 below
    the bin, rising across it, 1 above, so the first layer sees where in its training
    distribution a value lies (``[N, len(edges) - 1]``; values beyond the outer edges reach the
    network through the scaled value itself)."""
    e = np.asarray(edges, dtype=float)
    if len(e) < 2:
        return np.zeros((len(values), 0))
    return np.clip((values[:, None] - e[:-1]) / (e[1:] - e[:-1]), 0.0, 1.0)


def _category_text(value: Any, known: set[str]) -> str:
    """A cell of a text column as the category text it was trained as: a column of codes read as
    numbers here (``1.0``) matches the training text ``"1"``."""
    text = str(value)
    if text not in known and isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    if text not in known and isinstance(value, (int, np.integer)) and f"{value}.0" in known:
        return f"{value}.0"  # trained (before nmsnn wrote integral codes as "1") as "1.0"
    return text


def _category_value(value: Any) -> str | None:
    """A training cell of a text column as its category text (``None`` if missing); integral
    numbers as integers (``1.0`` -> ``"1"``), so that files with and without gaps agree."""
    if pd.isna(value):
        return None
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(value)


def _target_transform(y: pd.Series, target: str, choice: str, where: str) -> str:
    """``log1p`` or ``none`` for a regression target (see ``target_transform`` in ``fit``)."""
    values = y.to_numpy(dtype=float)
    if choice == "auto":
        skew = float(pd.Series(values).skew())
        if values.min() >= 0 and skew > SKEWED:
            log.info(
                "%s: target %r is skewed (skewness %.2f): the model learns log(1 + %s) "
                "(data.target_transform=none to learn it as it is)",
                where,
                target,
                skew,
                target,
            )
            return "log1p"
        return "none"
    if choice == "log1p" and values.min() < 0:
        raise DataError(
            f"{where}: data.target_transform=log1p needs a non-negative target, but {target!r} "
            f"has {values.min():g}; use data.target_transform=none."
        )
    return choice


def _labels(values: pd.Series) -> list[Any]:
    """Class labels as plain values: booleans stay booleans, integers (and integral numbers)
    become ints, anything else strings."""
    if ptypes.is_bool_dtype(values):
        return [bool(v) for v in values]
    if ptypes.is_integer_dtype(values):
        return [int(v) for v in values]
    if ptypes.is_numeric_dtype(values):
        numbers = values.to_numpy(dtype=float)
        fractional = np.flatnonzero(numbers != np.round(numbers))
        if len(fractional):
            row = fractional[0]
            raise DataError(
                f"target column {values.name!r} holds numbers that are not whole (e.g. "
                f"{numbers[row]:g} in row {values.index[row]}), which are not class labels; a "
                "classifier predicts classes: score it on its own kind of target, or train a "
                "regressor (data.task=regression)."
            )
        return [int(v) for v in numbers]
    return [str(v) for v in values]
