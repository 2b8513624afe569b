"""The tabular LightningDataModule: raw rows -> validated, split, preprocessed tensors.

``setup`` reads the source, validates it, splits it (stratified for classification), fits the
preprocessing on the training split only, and keeps each split as whole float32 tensors. Batches
are index slices of those tensors. The fitted preprocessing is the module's ``state_dict``, so
Lightning stores it in every checkpoint and a checkpoint alone can predict raw rows.
"""

from __future__ import annotations

import hashlib
import logging
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import pandas as pd
import torch
from sklearn.model_selection import KFold, StratifiedKFold, train_test_split
from torch.utils.data import DataLoader

from nmsnn.data.batching import IndexBatchSampler, TensorRows, auto_batch_size
from nmsnn.data.preprocessing import (
    TabularPreprocessor,
    date_format,
    drop_missing_target,
    infer_task,
    split_columns,
    validate_target,
)
from nmsnn.data.sources import load_bundled, read_table
from nmsnn.errors import DataError

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
# data.bins=auto, per task (measured on the tabular suite, experiments/results/tabular_suite_levers.md):
# no bins for classification; for regression 8, and on larger tables one per ROWS_PER_BIN rows the
# bins are fitted on, up to 32 (finer bins paid on `computers`, 5,000 rows, and cost the small
# tables, where a bin of 32 holds about 10 rows)
AUTO_BINS = {"classification": (0, 0), "regression": (8, 32)}
ROWS_PER_BIN = 150


def auto_bins(task: str, rows: int) -> int:
    """``data.bins=auto`` for a ``task`` whose bins are fitted on ``rows`` rows."""
    fewest, most = AUTO_BINS[task]
    return min(most, max(fewest, rows // ROWS_PER_BIN))


# data.folds=auto, per task (measured on the tabular suite: out-of-fold validation lifted the
# regression tables and not the classification ones, experiments/results/tabular_suite_levers.md)
AUTO_FOLDS = {"classification": 0, "regression": 4}


def check_settings(
    dataset: Any,
    path: Any,
    frame: Any,
    test_size: Any,
    val_size: Any,
    max_categories: Any,
    batch_size: Any,
    eval_batch_size: Any,
    bins: Any = 0,
    folds: Any = 0,
) -> None:
    """One data source, split fractions in [0, 1), and positive sizes: one message each."""
    given = [name for name, v in (("dataset", dataset), ("path", path), ("frame", frame)) if v is not None]
    if len(given) != 1:
        raise DataError(
            f"give exactly one data source, got {given or 'none'}: data.path=FILE data.target=COLUMN "
            "for a CSV or Parquet file, or data.dataset=NAME (or data=NAME) for a bundled one "
            "(in Python: path=, dataset= or frame=)."
        )
    for name, value in (("test_size", test_size), ("val_size", val_size)):
        if not 0.0 <= float(value) < 1.0:
            raise DataError(f"data.{name} must be in [0, 1), got {value}.")
    if isinstance(max_categories, bool) or int(max_categories) < 2:
        raise DataError(f"data.max_categories must be an integer >= 2, got {max_categories!r}.")
    if batch_size not in (None, "auto") and (
        isinstance(batch_size, (bool, str)) or not float(batch_size).is_integer() or int(batch_size) < 1
    ):
        raise DataError(f"data.batch_size must be a positive integer, auto or null, got {batch_size!r}.")
    if isinstance(eval_batch_size, (bool, str, float)) or int(eval_batch_size) < 1:
        raise DataError(f"data.eval_batch_size must be a positive integer, got {eval_batch_size!r}.")
    if bins != "auto" and (isinstance(bins, (bool, str, float)) or int(bins) < 0 or int(bins) == 1):
        raise DataError(f"data.bins must be auto, 0 (no bins) or an integer >= 2, got {bins!r}.")
    if folds != "auto" and (isinstance(folds, (bool, str, float)) or int(folds) < 0 or int(folds) == 1):
        raise DataError(
            f"data.folds must be auto, 0 (one validation split) or an integer >= 2, got {folds!r}."
        )


def plain_settings(given: dict[str, Any]) -> dict[str, Any]:
    """The DataModule's (checked) arguments as the plain values its checkpoints record."""
    whole = {"eval_batch_size", "max_categories"}
    text = {"drop", "categorical", "numeric", "parse_dates"}
    auto = {"batch_size": (None, "auto"), "bins": ("auto",), "folds": ("auto",)}
    out: dict[str, Any] = {}
    for key, value in given.items():
        if key in whole:
            value = int(value)
        elif key in text:
            value = [str(c) for c in value]
        elif key in auto:
            value = value if value in auto[key] else int(value)
        elif key in ("test_size", "val_size"):
            value = float(value)
        elif key in ("split_seed", "shuffle_seed"):
            value = int(value or 0)
        elif key == "val_split_seed":
            value = None if value is None else int(value)
        elif key in ("path", "target_transform"):
            value = None if value is None else str(value)
        elif key == "stratify":
            value = bool(value)
        out[key] = value
    return out


class TabularDataModule(L.LightningDataModule):
    """Rows from a bundled dataset, a CSV/Parquet file or a DataFrame, ready for a spiking model.

    Args:
        dataset: name of a bundled dataset (see :data:`nmsnn.data.sources.BUNDLED`).
        path: a CSV or Parquet file (instead of ``dataset``).
        frame: a pandas DataFrame (Python API; instead of ``dataset`` and ``path``).
        target: target column (bundled datasets know theirs).
        task: ``auto`` | ``classification`` | ``regression``.
        test_size: fraction of rows held out for testing (0: no test split).
        val_size: fraction of the remaining rows held out for validation (0: no validation).
        split_seed: seed of the test split (and of the validation split unless ``val_split_seed``);
            ``None`` (``seed=null`` on the command line): 0, so that every process of a run, and
            ``nmsnn-eval`` later, rebuild the same split.
        val_split_seed: seed of the validation split.
        stratify: stratify splits by class (classification only).
        scaler: feature scaling, ``standard`` | ``minmax`` | ``none``.
        target_scaler: regression target scaling, ``standard`` | ``minmax`` | ``none``.
        target_transform: what a regression model learns: ``none`` (the target), ``log1p``
            (``log(1 + target)``, for non-negative skewed targets such as prices) or ``auto``
            (``log1p`` when the training target is non-negative with skewness above 1);
            predictions and metrics are on the target's own scale either way.
        batch_size: rows per training batch on each device; ``"auto"``: sized to the training
            split by :func:`~nmsnn.data.batching.auto_batch_size` (32 for a few hundred rows, up to
            512 for tens of thousands); ``null``: the whole training split. Under DDP the global
            batch is ``batch_size * world_size``.
        eval_batch_size: rows per evaluation batch.
        drop: columns to ignore.
        max_categories: one-hot columns per text column: a column with more distinct values
            keeps its ``max_categories - 1`` most frequent (in the training split) as their own
            columns and groups the rest, and values unseen in training, into ``column=<other>``;
            a text column of (almost) only distinct values (names, ids) is ignored, with a
            warning. A column of numbers and words with at most this many distinct values is
            text; with more, an error (see ``numeric``).
        categorical: columns read as text (one-hot), even numeric ones (codes such as 1, 2, 3).
        numeric: columns read as numbers: values that are not numbers become missing (imputed
            with the training median), with a warning, in training and prediction alike.
        parse_dates: columns read as dates (ISO-8601 or any format pandas reads), as seconds
            since 1970 (UTC); a value that is not a date is an error. Text columns of ISO-8601
            dates (``2024-01-31``, ``2024-01-31T12:00:00+01:00``) are read as dates anyway.
        shuffle_seed: seed of the training batch order (``None``: 0, for the same reason).
        folds: 0: one validation split (``val_size``). F >= 2: the non-test rows are dealt into F
            folds (stratified by class for classification, seeded like the validation split)
            and every one of them both trains and validates: the model's ensemble member k
            holds out fold ``k % F`` (see :class:`~nmsnn.lit.module.SpikingModule`), so each row
            is validated by members that never trained on it; ``val_size`` is then unused. The
            ``train`` and ``val`` splits are the same rows, each with its fold (``batch["fold"]``).
            ``auto``: the task's entry of :data:`AUTO_FOLDS` (0 when ``val_size`` is 0); the
            resolved count is what the settings record.
        bins: piecewise-linear bins per numeric column (quantiles of its training values, see
            :func:`~nmsnn.data.preprocessing.piecewise_linear`), fed beside its scaled value; 0:
            the scaled value alone; ``auto``: :func:`auto_bins` (none for classification; for
            regression 8, or one per 150 training rows, up to 32).
    """

    def __init__(
        self,
        dataset: str | None = None,
        path: str | None = None,
        frame: pd.DataFrame | None = None,
        target: str | None = None,
        task: str = "auto",
        test_size: float = 0.2,
        val_size: float = 0.2,
        split_seed: int | None = 0,
        val_split_seed: int | None = None,
        stratify: bool = True,
        scaler: str = "standard",
        target_scaler: str = "standard",
        batch_size: int | str | None = "auto",
        eval_batch_size: int = 4096,
        drop: Sequence[str] = (),
        max_categories: int = 50,
        shuffle_seed: int | None = 0,
        categorical: Sequence[str] = (),
        numeric: Sequence[str] = (),
        parse_dates: Sequence[str] = (),
        target_transform: str = "none",
        bins: int | str = "auto",
        folds: int | str = "auto",
    ) -> None:
        super().__init__()
        check_settings(
            dataset,
            path,
            frame,
            test_size,
            val_size,
            max_categories,
            batch_size,
            eval_batch_size,
            bins,
            folds,
        )
        # Plain values only: checkpoints must load with torch.load(weights_only=True).
        given = {k: v for k, v in locals().items() if k not in ("self", "frame", "__class__")}
        self.save_hyperparameters(plain_settings(given))
        self.frame = frame
        self.preprocessor: TabularPreprocessor | None = None
        self.tensors: dict[str, TensorRows] = {}
        self.split_index: dict[str, np.ndarray] = {}
        self.fold_of: np.ndarray | None = None  # each train (= val) row's fold, with data.folds
        # an explicit ensemble size of the model to come (set before setup by whoever builds it):
        # data.folds=auto gives way to one validation split where its folds do not divide it
        self.members: int | None = None
        # each split's rows, hashed (saved in checkpoints; see _check_fingerprints)
        self.fingerprints: dict[str, str] = {}
        self.expected_fingerprints: dict[str, str] = {}
        self._piped: pd.DataFrame | None = None  # the rows of a data.path that is a pipe
        self.skipped_rows: int | None = None  # rows without a target, left out (after load_frame)

    # --------------------------------------------------------------------- describing
    @property
    def source_name(self) -> str:
        h = self.hparams
        return h.path or (f"dataset {h.dataset!r}" if h.dataset else "the data frame")

    @property
    def task(self) -> str:
        return self._fitted().task

    @property
    def num_features(self) -> int:
        return len(self._fitted().feature_names)

    @property
    def num_outputs(self) -> int:
        return self._fitted().num_outputs

    def model_kwargs(self) -> dict[str, Any]:
        """What a model needs to know about the data: task, input and output sizes, target scale."""
        pre = self._fitted()
        return {
            "task": pre.task,
            "num_inputs": len(pre.feature_names),
            "num_outputs": pre.num_outputs,
            "target_mean": pre.target_mean,
            "target_std": pre.target_std,
            "target_transform": pre.target_transform,
            "folds": self.hparams.folds if self.fold_of is not None else 0,
        }

    def _fitted(self) -> TabularPreprocessor:
        if self.preprocessor is None:
            raise RuntimeError("call setup() before asking about the fitted data")
        return self.preprocessor

    # --------------------------------------------------------------------- loading
    def load_frame(self) -> tuple[pd.DataFrame, str]:
        """The raw rows that have a target value and the target column name.

        Rows whose target is missing are left out (with a warning, the first time; their count
        is :attr:`skipped_rows`); the others keep their row numbers in the source (from 0) as
        index. Split indices are positions in this frame."""
        frame, target = self._read_source()
        kept = drop_missing_target(frame, target, self.source_name, warn=self.skipped_rows is None)
        self.skipped_rows = len(frame) - len(kept)
        return kept, target

    def _read_source(self) -> tuple[pd.DataFrame, str]:
        h = self.hparams
        if self.frame is not None:
            frame, target = self.frame, h.target
        elif h.path is not None:
            frame, target = self._piped, h.target
            if frame is None:
                frame = read_table(h.path)
                if not Path(h.path).is_file():  # a pipe reads once: keep its rows for the report
                    self._piped = frame
        else:
            frame, default_target = load_bundled(h.dataset)
            target = h.target or default_target
        return frame.reset_index(drop=True), target

    def setup(self, stage: str | None = None) -> None:
        if self.tensors:
            return
        frame, target = self.load_frame()
        where = self.source_name
        y = validate_target(frame, target, where, training=self.preprocessor is None)
        h = self.hparams
        if self.preprocessor is not None:  # restored from a checkpoint: reuse its fit
            task = self.preprocessor.task
        else:
            task = infer_task(y, h.task, target)
        # Record the resolved task and folds: what the checkpoint and the logged settings should say.
        folds = h.get("folds", 0)
        if folds == "auto":
            folds = self._auto_folds(task)
        self.save_hyperparameters({**self.hparams, "task": task, "folds": folds})
        index = self._split(y, task, where)
        if self.preprocessor is None:
            self.preprocessor = self._fit(frame, target, task, frame.iloc[index["train"]], y)
        fingerprints = {name: fingerprint(frame.iloc[rows]) for name, rows in index.items() if len(rows)}
        self._check_fingerprints(fingerprints, where)
        self.fingerprints = fingerprints
        pre = self.preprocessor
        x = torch.from_numpy(pre.transform(frame, where))
        y_all = torch.from_numpy(pre.transform_target(frame[target], where))
        self.split_index = index
        self.tensors = {
            name: TensorRows(x[torch.from_numpy(rows)], y_all[torch.from_numpy(rows)])
            for name, rows in index.items()
            if len(rows) and not (self.fold_of is not None and name == "val")
        }
        if self.fold_of is not None:  # with folds, validation reads the training rows (one copy)
            self.tensors["train"].fold = torch.from_numpy(self.fold_of)
            self.tensors["val"] = self.tensors["train"]
        train, val, test = (len(index[s]) for s in SPLITS)
        split = f" -> train {train} / val {val} / test {test}" if val or test else ", not split"
        if self.fold_of is not None:
            split = (
                f" -> {train} rows in {self.hparams.folds} folds (each trains and validates) / test {test}"
            )
        log.info("%s: %d rows%s; %d features; task %s", where, len(frame), split, self.num_features, task)

    def _auto_folds(self, task: str) -> int:
        """``data.folds=auto``: the task's entry of :data:`AUTO_FOLDS` (0 without a validation
        split, or when :attr:`members` is a count those folds do not divide)."""
        folds = AUTO_FOLDS[task] if self.hparams.val_size > 0 else 0
        if folds and self.members is not None and self.members % folds:
            log.info(
                "data.folds=auto: one validation split of data.val_size, as model.ensemble=%d "
                "members cannot hold out %d folds (a multiple of %d can)",
                self.members,
                folds,
                folds,
            )
            return 0
        return folds

    def _split(self, y: pd.Series, task: str, where: str) -> dict[str, np.ndarray]:
        h = self.hparams
        rows = np.arange(len(y))
        if h.test_size == 0 and h.val_size == 0:  # every row trains (the scikit-learn estimators)
            return {"train": rows, "val": rows[:0], "test": rows[:0]}
        stratify = h.stratify and task == "classification"
        if stratify:
            counts = y.value_counts()
            counts = counts[counts > 0]  # a categorical target's unused categories are not classes
            rare = counts[counts < 2]
            if len(rare):
                raise DataError(
                    f"{where}: class(es) {list(map(str, rare.index))} of target {y.name!r} have a "
                    "single row; a stratified split needs at least 2 per class. Remove them or "
                    "set data.stratify=false."
                )
        if len(rows) < 10:
            raise DataError(
                f"{where}: only {len(rows)} rows; nmsnn needs at least 10 to split into train/val/test."
            )

        def split(idx: np.ndarray, size: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
            labels = y.iloc[idx].to_numpy() if stratify else None
            try:
                return train_test_split(idx, test_size=size, random_state=seed, stratify=labels)
            except ValueError as err:
                raise DataError(f"{where}: cannot split {len(idx)} rows ({err}).") from None

        rest, test = split(rows, h.test_size, h.split_seed) if h.test_size > 0 else (rows, rows[:0])
        val_seed = h.split_seed if h.val_split_seed is None else h.val_split_seed
        if h.get("folds", 0):
            self.fold_of = deal_folds(y.iloc[rest], h.folds, stratify, val_seed, where)
            return {"train": rest, "val": rest, "test": test}
        if h.val_size > 0:
            train, val = split(rest, h.val_size, val_seed)
        else:
            train, val = rest, np.array([], dtype=int)
        return {"train": train, "val": val, "test": test}

    def _fit(
        self, frame: pd.DataFrame, target: str, task: str, train: pd.DataFrame, y: pd.Series
    ) -> TabularPreprocessor:
        """Sort the columns on every row, then fit the preprocessing on the training rows."""
        h, where = self.hparams, self.source_name
        overrides = {k: list(h.get(k, [])) for k in ("categorical", "numeric", "parse_dates")}
        numeric, categorical = split_columns(
            frame, target, list(h.drop), h.max_categories, where, **overrides
        )
        bins = auto_bins(task, len(train)) if h.get("bins", 0) == "auto" else h.get("bins", 0)
        pre = TabularPreprocessor.fit(
            train,
            target,
            task,
            numeric,
            categorical,
            h.scaler,
            h.target_scaler,
            labels=y,
            coerce=overrides["numeric"],
            dates=overrides["parse_dates"],
            date_formats={
                c: date_format(frame[c], c, where) for c in overrides["parse_dates"] if c in numeric
            },
            max_categories=h.max_categories,
            where=where,
            target_transform=h.get("target_transform", "none"),
            bins=bins,
        )
        binned = [c for c, edges in zip(pre.numeric, pre.bin_edges) if edges]
        if binned:
            fewest, most = AUTO_BINS[task]
            rule = f"auto: one per {ROWS_PER_BIN} of {len(train)} rows, {fewest} to {most}"
            log.info(
                "%s: %d numeric column(s) each feed a piecewise-linear encoding over up to %d "
                "quantile bins (data.bins=%s): %d inputs beside their scaled values",
                where,
                len(binned),
                bins,
                rule if h.bins == "auto" else h.bins,
                sum(len(e) - 1 for e in pre.bin_edges),
            )
        return pre

    # --------------------------------------------------------------------- loaders
    def _loader(self, split: str, shuffle: bool) -> DataLoader | None:
        rows = self.tensors.get(split)
        if rows is None:
            return None
        h = self.hparams
        size = h.batch_size if shuffle else h.eval_batch_size
        if size == "auto":
            size = self.train_batch_size()
        if size is None or size > len(rows):
            if shuffle and size is not None:
                log.warning(
                    "data.batch_size=%d is larger than the %d training rows; using %d.",
                    size,
                    len(rows),
                    len(rows),
                )
            size = len(rows)
        trainer = self.trainer
        rank, world = (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)
        sampler = IndexBatchSampler(
            len(rows), size, shuffle=shuffle, seed=h.shuffle_seed, rank=rank, world_size=world
        )
        return DataLoader(rows, sampler=sampler, batch_size=None)

    def train_batch_size(self) -> int:
        """The training batch size (``data.batch_size``, with ``auto`` resolved for this split)."""
        size, rows = self.hparams.batch_size, len(self.tensors["train"])
        if size == "auto":
            world = self.trainer.world_size if self.trainer is not None else 1
            size = auto_batch_size(rows // max(1, world))
            if not getattr(self, "_logged_batch", False):
                log.info("data.batch_size=auto: %d rows per batch for %d training rows", size, rows)
                self._logged_batch = True
        return min(rows, size or rows)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader | list:
        return self._loader("val", shuffle=False) or []

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

    def split_frame(self, split: str) -> pd.DataFrame:
        """The raw rows of one split (``train``, ``val``, ``test``) as read from the source."""
        frame, _ = self.load_frame()
        return frame.iloc[self.split_index[split]]

    # --------------------------------------------------------------------- state
    def _check_fingerprints(self, now: dict[str, str], where: str) -> None:
        """A split rebuilt for a checkpoint (its preprocessing restored) must hold the rows it held
        in training: a reordered or edited file would make "the test split again" other rows."""
        for name in ("test", "val", "train"):
            expected = self.expected_fingerprints.get(name)
            if expected is not None and name in now and now[name] != expected:
                raise DataError(
                    f"{where}: the {name} split rebuilt from this file is not the rows it was when the "
                    "checkpoint was trained (the file's rows were reordered, added or edited since); "
                    "its metrics would mix in other rows. Score the whole file with split=all, or "
                    "give the file as it was."
                )

    def state_dict(self) -> dict[str, Any]:
        """The fitted preprocessing and a fingerprint of each split's rows, as plain values
        (saved in every checkpoint)."""
        return {
            "preprocessor": None if self.preprocessor is None else self.preprocessor.state_dict(),
            "fingerprints": dict(self.fingerprints),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the fitted preprocessing. When resuming (the rows already set up), the
        checkpoint's must be the one just fitted on the rows: otherwise the data changed since
        the checkpoint, and going on would train on rows that its preprocessing does not describe."""
        if state.get("preprocessor") is None:
            return
        if not self.tensors:  # rows set up later are checked against these
            self.expected_fingerprints = dict(state.get("fingerprints") or {})
        saved = TabularPreprocessor.from_state_dict(state["preprocessor"])
        if (
            self.tensors
            and self.preprocessor is not None
            and saved.state_dict() != self.preprocessor.state_dict()
        ):
            raise DataError(
                f"{self.source_name}: these rows are not the ones the checkpoint being resumed was "
                "trained on (their fitted preprocessing differs). Start a new run instead (another "
                "run_name, or resume=never)."
            )
        self.preprocessor = saved


def deal_folds(y: pd.Series, folds: int, stratify: bool, seed: int, where: str) -> np.ndarray:
    """Each row's fold in ``0..folds-1``: shuffled by ``seed``, each class spread evenly over
    the folds when ``stratify`` (a class with fewer rows than folds is missing from some)."""
    if len(y) < 2 * folds:
        raise DataError(
            f"{where}: {len(y)} rows left for training cannot fill data.folds={folds} folds of at "
            "least 2 rows each; use fewer folds, or data.folds=0 for one validation split."
        )
    dealer = (StratifiedKFold if stratify else KFold)(n_splits=folds, shuffle=True, random_state=seed)
    out = np.empty(len(y), dtype=np.int64)
    with warnings.catch_warnings():  # a rare class missing from some folds is expected, not news
        warnings.filterwarnings("ignore", message="The least populated class")
        for f, (_, held) in enumerate(dealer.split(np.zeros(len(y)), y.to_numpy() if stratify else None)):
            out[held] = f
    return out


def fingerprint(rows: pd.DataFrame) -> str:
    """A short hash of ``rows``' values in their order (not of the index)."""
    hashes = pd.util.hash_pandas_object(rows, index=False).to_numpy()
    return hashlib.sha256(hashes.tobytes()).hexdigest()[:16]
