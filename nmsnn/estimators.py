"""scikit-learn estimators over the same Lightning module and preprocessing as ``nmsnn-train``.

``SpikingClassifier`` and ``SpikingRegressor`` accept NumPy arrays and pandas DataFrames (text
columns of a DataFrame are one-hot encoded, missing values imputed, as in the DataModule), are
quiet unless ``verbose=True``, and work in ``Pipeline``, ``cross_val_score`` and ``GridSearchCV``.
``__init__`` stores its arguments and nothing else; ``fit`` builds a
:class:`~nmsnn.data.datamodule.TabularDataModule` over the given rows and trains a
:class:`~nmsnn.lit.module.SpikingModule` with a Lightning ``Trainer``.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Sequence
from typing import Any

import lightning as L
import numpy as np
import pandas as pd
import torch
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_array, check_is_fitted, column_or_1d, validate_data

from nmsnn.data.datamodule import TabularDataModule
from nmsnn.data.preprocessing import listed_rows
from nmsnn.lit.callbacks import StepBudget
from nmsnn.lit.module import SpikingModule
from nmsnn.quiet import quiet_loggers
from nmsnn.threads import threads_for

TARGET = "__nmsnn_target__"
QUIET_LOGGERS = ("lightning", "lightning.pytorch", "lightning.fabric", "pytorch_lightning", "nmsnn")


def quiet(verbose: bool) -> contextlib.AbstractContextManager:
    """Silence Lightning's banners, infos and warnings (and nmsnn's infos) unless ``verbose``."""
    return contextlib.nullcontext() if verbose else quiet_loggers(QUIET_LOGGERS)


class _KeepBest(L.Callback):
    """Remember the weights with the lowest validation loss (in memory)."""

    def __init__(self) -> None:
        self.best = float("inf")
        self.state: dict[str, torch.Tensor] | None = None

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        loss = trainer.callback_metrics.get("val/loss")
        if loss is not None and not trainer.sanity_checking and float(loss) < self.best:
            self.best = float(loss)
            self.state = copy.deepcopy(pl_module.state_dict())


# the neuron settings that are estimator parameters of their own (LIF's, the common ones); any
# model's others go in ``neuron_params``; ``None``: the neuron model's default (declared there)
NEURON_PARAMETERS = ("decay", "threshold", "penalty", "reset", "spike_fn", "surrogate_slope", "learnable")


class _SpikingEstimator(BaseEstimator):
    _task = "classification"

    def __init__(
        self,
        hidden: Sequence[int] | str = "auto",
        time_steps: int = 16,
        ensemble: int | str = "auto",
        encoder: str = "auto",
        encoder_params: dict[str, Any] | None = None,
        bins: int | str = "auto",
        neuron: str = "lif",
        decay: float | None = None,
        threshold: float | None = None,
        penalty: float | None = None,
        reset: str | None = None,
        spike_fn: str | None = None,
        surrogate_slope: float | None = None,
        learnable: bool | None = None,
        neuron_params: dict[str, Any] | None = None,
        readout: str = "integrator",
        burn_in: int = 0,
        epochs: int = 300,
        steps: int = 3000,
        batch_size: int | str = "auto",
        learning_rate: float = 3e-3,
        weight_decay: float | str = "auto",
        early_stopping: bool = False,
        validation_fraction: float = 0.1,
        patience: int = 15,
        backend: str = "auto",
        threads: int | str = "auto",
        random_state: int | None = 0,
        verbose: bool = False,
    ) -> None:
        # scikit-learn's contract: __init__ stores every parameter unchanged, under its own name
        for name, value in locals().items():
            if name != "self":
                setattr(self, name, value)

    def _module(self, datamodule: TabularDataModule, hidden: list[int] | str) -> SpikingModule:
        """The untrained model these parameters describe, sized by ``datamodule``."""
        return SpikingModule(
            **datamodule.model_kwargs(),
            hidden=hidden,
            neuron=self._neuron_settings(),
            encoder=self.encoder,
            encoder_params=self.encoder_params,
            time_steps=self.time_steps,
            ensemble=self.ensemble,
            burn_in=self.burn_in,
            readout=self.readout,
            backend=self.backend,
            optimizer={
                "_target_": "torch.optim.AdamW",
                "_partial_": True,
                "lr": self.learning_rate,
                "weight_decay": self.weight_decay,
            },
            scheduler="warmup_cosine",
        )

    def _neuron_settings(self) -> dict[str, Any]:
        """The neuron model's settings: those given here (``None``: the model's own default)."""
        named = {key: getattr(self, key) for key in NEURON_PARAMETERS if getattr(self, key) is not None}
        return {"kind": self.neuron, **named, **(self.neuron_params or {})}

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        return tags

    # ------------------------------------------------------------------ input
    def _frame(self, X: Any, reset: bool) -> pd.DataFrame:
        """The rows as a DataFrame (DataFrames pass through; arrays are validated as numbers).

        Columns are matched by position to those seen in ``fit`` (scikit-learn checks the names
        where both have them, and warns when only one does), so a model fitted on a DataFrame
        predicts a NumPy array of the same columns and the other way round."""
        if isinstance(X, pd.DataFrame):
            if isinstance(X.columns, pd.MultiIndex):
                raise ValueError(
                    f"X has MultiIndex columns (e.g. {X.columns[0]!r}); give one level of column "
                    "names, e.g. X.columns = ['_'.join(map(str, c)) for c in X.columns]."
                )
            validate_data(self, X, reset=reset, skip_check_array=True)
            if X.shape[0] == 0:
                raise ValueError(
                    f"Found array with 0 sample(s) (shape={X.shape}) while a minimum of 1 is required."
                )
            frame = X.reset_index(drop=True).rename(columns=str)
        else:
            X = validate_data(self, X, reset=reset, dtype="numeric", ensure_all_finite="allow-nan")
            frame = pd.DataFrame(X, columns=[f"x{i}" for i in range(X.shape[1])])
        if reset:
            self._fit_columns = list(frame.columns)
        elif getattr(self, "_fit_columns", None) is not None:  # absent in estimators pickled before
            frame.columns = self._fit_columns
        return frame

    def _seed(self) -> int:
        """``random_state`` as an integer seed: an int as given, a ``RandomState``'s next draw,
        or a fresh seed for ``None``."""
        state = self.random_state
        if state is None:
            return torch.seed() % 2**31
        if isinstance(state, np.random.RandomState):
            return int(state.randint(2**31 - 1))
        if isinstance(state, bool) or not isinstance(state, (int, np.integer)):
            raise ValueError(f"random_state must be None, an int or a numpy RandomState; got {state!r}.")
        return int(state)

    def _check_params(self) -> None:
        if isinstance(self.hidden, str) and self.hidden == "auto":
            sizes = []  # the task's sizes, chosen when the model is built
        else:
            sizes = [self.hidden] if isinstance(self.hidden, (int, np.integer, float, str)) else self.hidden
        try:
            whole = all(
                isinstance(h, (int, np.integer)) and not isinstance(h, bool) and h >= 1 for h in sizes
            )
        except TypeError:
            whole = False
        if not whole:
            raise ValueError(
                f"hidden must be auto, a positive integer or a sequence of them, e.g. 128 or (64, 64); "
                f"got {self.hidden!r}."
            )
        if isinstance(self.epochs, bool) or not isinstance(self.epochs, (int, np.integer)) or self.epochs < 1:
            raise ValueError(f"epochs must be a positive integer; got {self.epochs!r}.")
        if isinstance(self.steps, bool) or not isinstance(self.steps, (int, np.integer)) or self.steps < 1:
            raise ValueError(f"steps must be a positive integer; got {self.steps!r}.")

    def _target(self, y: Any) -> np.ndarray:
        y = column_or_1d(y, warn=True)
        missing = np.flatnonzero(pd.isna(y))
        if len(missing):
            # nmsnn-train skips such rows with a warning; an estimator leaves the choice to the
            # caller, as scikit-learn's own do, but says where they are
            raise ValueError(
                f"y has {len(missing)} missing value(s) (NaN or None) of {len(y)}, at positions "
                f"{listed_rows(missing)}; "
                "drop those rows first, e.g. keep = y.notna(); fit(X[keep], y[keep])."
            )
        if self._task == "classification":
            check_classification_targets(y)
        else:
            y = check_array(y, ensure_2d=False, dtype="numeric", ensure_all_finite=True)
        return y

    # ------------------------------------------------------------------ fit
    def fit(self, X: Any, y: Any) -> _SpikingEstimator:
        """Train on all rows (``early_stopping=True``: keep ``validation_fraction`` aside and
        restore the weights with the lowest validation loss)."""
        self._check_params()
        frame = self._frame(X, reset=True)
        target = self._target(y)
        if len(target) != len(frame):
            raise ValueError(f"X has {len(frame)} rows but y has {len(target)}.")
        frame = frame.assign(**{TARGET: target})
        seed = self._seed()
        if isinstance(self.hidden, str):
            hidden = self.hidden  # auto
        else:
            hidden = [self.hidden] if isinstance(self.hidden, (int, np.integer)) else list(self.hidden)
        with quiet(self.verbose), torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            datamodule = TabularDataModule(
                frame=frame,
                target=TARGET,
                task=self._task,
                test_size=0.0,
                val_size=self.validation_fraction if self.early_stopping else 0.0,
                folds=0,  # validation_fraction, as documented
                split_seed=seed,
                shuffle_seed=seed,
                batch_size=self.batch_size,
                bins=self.bins,
            )
            datamodule.setup("fit")
            module = self._module(datamodule, hidden)
            callbacks: list[L.Callback] = [StepBudget(self.steps)]
            keep = _KeepBest()
            if self.early_stopping:
                callbacks += [keep, L.pytorch.callbacks.EarlyStopping("val/loss", patience=self.patience)]
            trainer = L.Trainer(
                devices=1,  # never a multi-process launch inside fit (GridSearchCV, notebooks)
                max_epochs=self.epochs,
                logger=False,
                enable_checkpointing=False,
                enable_progress_bar=self.verbose,
                enable_model_summary=self.verbose,
                callbacks=callbacks,
                num_sanity_val_steps=0,
            )
            work = datamodule.train_batch_size() * module.widest_layer()
            with threads_for(self.threads, work):
                trainer.fit(module, datamodule=datamodule)
            if keep.state is not None:
                module.load_state_dict(keep.state)
            module.trainer = None  # nor the training rows, which the trainer's DataModule holds
        self.module_ = module.eval()
        self.preprocessor_ = datamodule.preprocessor
        self.n_epochs_ = trainer.current_epoch
        if self._task == "classification":
            self.classes_ = np.asarray(self.preprocessor_.classes)
        return self

    # ------------------------------------------------------------------ predict
    def _outputs(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "module_")
        frame = self._frame(X, reset=False)
        with quiet(self.verbose):
            x = torch.from_numpy(self.preprocessor_.transform(frame, "X"))
            return self.module_.predict_rows(x).numpy()


class SpikingClassifier(ClassifierMixin, _SpikingEstimator):
    """A spiking neural network classifier (softmax over a time-averaged spiking readout).

    Parameters mirror ``nmsnn-train``'s model: ``hidden`` layer sizes, ``time_steps``,
    ``ensemble`` (members trained together and averaged), ``encoder`` (its settings in
    ``encoder_params``, e.g. ``{"fields": 12}``), ``bins`` (piecewise-linear
    bins per numeric column, as ``data.bins``) (``"auto"``, the default of these four and of
    ``weight_decay``, picks the task's value as ``nmsnn-train`` does), the ``neuron`` model
    (``lif``, ``alif``, ``lif_hard`` or an import path) and its
    ``decay``, ``threshold``, ``penalty``, ``reset``, ``spike_fn``, ``surrogate_slope`` and
    ``learnable`` (``None``: that model's default; a setting the model lacks is an error), any
    other setting of the model in ``neuron_params`` (e.g. ``{"adapt_gain": 0.3}``), the
    ``readout`` and ``burn_in``; training: ``steps`` (the budget in optimizer
    steps, rounded up to whole epochs, with a warm-up + cosine learning rate), ``epochs`` (the
    most epochs), ``batch_size`` (``"auto"``: 32 to 512 by the rows), ``learning_rate``,
    ``weight_decay`` (``"auto"``: 3 for a classifier, 0.1 for a regressor), ``early_stopping`` (with ``validation_fraction`` and
    ``patience``), ``random_state`` (an int, a NumPy ``RandomState``, or ``None``: a fresh seed
    for the weights, the noise, the batch order and the validation split), ``verbose``.
    """

    _task = "classification"

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities ``[n_rows, n_classes]`` in the order of ``classes_``."""
        return self._outputs(X)

    def predict(self, X: Any) -> np.ndarray:
        probabilities = self.predict_proba(X)
        return self.classes_[probabilities.argmax(1)]


class SpikingRegressor(RegressorMixin, _SpikingEstimator):
    """A spiking neural network regressor (its spiking hidden layers read out by a leaky
    integrator); see :class:`SpikingClassifier` for the parameters."""

    _task = "regression"

    def predict(self, X: Any) -> np.ndarray:
        return self._outputs(X).astype(np.float64)
