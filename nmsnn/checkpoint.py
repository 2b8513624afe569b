"""Loading checkpoints safely: tensors and plain values only, never pickled objects.

A checkpoint written by ``nmsnn-train`` holds the model's hyperparameters and weights, the
fitted preprocessing (the DataModule's state) and the DataModule's settings, all as plain
values, so it loads with ``torch.load(..., weights_only=True)``.
"""

from __future__ import annotations

import inspect
import pickle
import re
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from nmsnn.data.datamodule import TabularDataModule
from nmsnn.data.preprocessing import TabularPreprocessor
from nmsnn.errors import CheckpointError, NmsnnError
from nmsnn.lit.module import SpikingModule
from nmsnn.lit.targets import check_checkpoint_targets

DATAMODULE_KEY = TabularDataModule.__qualname__
# the data settings that decide which rows land in which split
SPLIT_SETTINGS = (
    "dataset",
    "path",
    "test_size",
    "val_size",
    "split_seed",
    "val_split_seed",
    "stratify",
    "folds",
)


@dataclass
class LoadedCheckpoint:
    """A model ready to predict, the preprocessing fitted with it, and its data settings."""

    module: SpikingModule
    preprocessor: TabularPreprocessor
    data_hparams: dict[str, Any]
    path: Path
    # a hash of each split's rows in training (see TabularDataModule._check_fingerprints)
    fingerprints: dict[str, str] = field(default_factory=dict)

    def datamodule(self, **overrides: Any) -> TabularDataModule:
        """A DataModule with the checkpoint's settings (and ``overrides``) and fitted preprocessing."""
        # a checkpoint from before data.folds had one validation split
        settings = {"folds": 0, **self.data_hparams, **overrides}
        settings["target"] = overrides.get("target") or self.preprocessor.target
        if overrides.get("path") is not None or overrides.get("frame") is not None:
            settings["dataset"] = None
        if overrides.get("dataset") is not None or overrides.get("frame") is not None:
            settings["path"] = None
        dm = TabularDataModule(**settings)
        # the same file split the same way must give the same rows; another file or split is the
        # caller's choice, with nothing to compare against
        same_split = all(settings.get(k) == self.data_hparams.get(k) for k in SPLIT_SETTINGS)
        fingerprints = self.fingerprints if same_split and overrides.get("frame") is None else {}
        dm.load_state_dict({"preprocessor": self.preprocessor.state_dict(), "fingerprints": fingerprints})
        return dm


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The raw checkpoint dictionary, loaded with ``weights_only=True``."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found.")
    if not zipfile.is_zipfile(path):  # torch.save writes a zip archive
        raise CheckpointError(
            f"{path}: not a readable PyTorch checkpoint (truncated, or a file of another kind)."
        )
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        found = re.search(r"(?i)unsupported global:? GLOBAL [\w.]+", str(err))
        raise CheckpointError(
            f"{path}: refused to load: the file contains Python objects other than tensors and "
            f"plain values, which could run code{f' ({found.group(0)})' if found else ''}. Only load "
            "checkpoints written by nmsnn from sources you trust."
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as err:
        raise CheckpointError(
            f"{path}: not a readable PyTorch checkpoint (truncated or another format: {err})."
        ) from None
    if not isinstance(checkpoint, dict):
        raise CheckpointError(
            f"{path}: not an nmsnn checkpoint (it holds a {type(checkpoint).__name__}, not a "
            "dictionary); use a checkpoint written by nmsnn-train."
        )
    check_checkpoint_targets(checkpoint, str(path))
    return checkpoint


def _settings(value: Any, path: Path, key: str, accepted: Callable[..., Any]) -> dict[str, Any]:
    """``value`` checked as the keyword settings of ``accepted`` (a dict of known names)."""
    if not isinstance(value, dict):
        raise CheckpointError(
            f"{path}: {key} is a {type(value).__name__}, not a dictionary of settings; the file is "
            "damaged or was not written by nmsnn-train."
        )
    known = set(inspect.signature(accepted).parameters)
    unknown = sorted(str(k) for k in value if k not in known)
    if unknown:
        raise CheckpointError(
            f"{path}: {key} holds unknown setting(s) {unknown}; it was written by another nmsnn "
            "version or edited by hand."
        )
    return value


def validate_checkpoint(ckpt: dict[str, Any], path: Path) -> None:
    """The structure :func:`load_checkpoint` relies on, checked once with one message: the
    model's and the data's settings (known names only), the weights, the fitted preprocessing."""
    missing = [k for k in ("hyper_parameters", "state_dict", DATAMODULE_KEY) if k not in ckpt]
    if missing:
        raise CheckpointError(
            f"{path}: not an nmsnn checkpoint (missing {missing}); use a checkpoint written by nmsnn-train."
        )
    _settings(ckpt["hyper_parameters"], path, "hyper_parameters", SpikingModule.__init__)
    _settings(
        ckpt.get("datamodule_hyper_parameters", {}),
        path,
        "datamodule_hyper_parameters",
        TabularDataModule.__init__,
    )
    weights = ckpt["state_dict"]
    if not isinstance(weights, dict) or not all(isinstance(v, torch.Tensor) for v in weights.values()):
        raise CheckpointError(f"{path}: state_dict is not a dictionary of tensors; the file is damaged.")
    data_state = ckpt[DATAMODULE_KEY]
    if not isinstance(data_state, dict):
        raise CheckpointError(
            f"{path}: {DATAMODULE_KEY} is a {type(data_state).__name__}, not the data module's state; "
            "the file is damaged or was not written by nmsnn-train."
        )
    if not isinstance(data_state.get("preprocessor"), dict):
        raise CheckpointError(f"{path}: the checkpoint holds no fitted preprocessing.")


def load_checkpoint(path: str | Path) -> LoadedCheckpoint:
    """Rebuild the model and its fitted preprocessing from an nmsnn checkpoint."""
    path = Path(path)
    ckpt = read_checkpoint(path)
    validate_checkpoint(ckpt, path)
    state = ckpt[DATAMODULE_KEY]["preprocessor"]
    try:
        module = SpikingModule(**ckpt["hyper_parameters"])
        module.load_state_dict(ckpt["state_dict"])
        preprocessor = TabularPreprocessor.from_state_dict(state)
    except NmsnnError:
        raise
    except (TypeError, RuntimeError, KeyError, ValueError, AttributeError) as err:
        raise CheckpointError(f"{path}: the checkpoint does not match this nmsnn version ({err}).") from None
    module.eval()
    data_hparams = dict(ckpt.get("datamodule_hyper_parameters", {}))
    fingerprints = dict(ckpt[DATAMODULE_KEY].get("fingerprints") or {})
    return LoadedCheckpoint(module, preprocessor, data_hparams, Path(path), fingerprints)
