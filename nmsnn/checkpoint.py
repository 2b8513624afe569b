"""Loading checkpoints safely: tensors and plain values only, never pickled objects.

A checkpoint written by ``nmsnn-train`` holds the model's hyperparameters and weights, the
fitted preprocessing (the DataModule's state) and the DataModule's settings, all as plain
values, so it loads with ``torch.load(..., weights_only=True)``.
"""

from __future__ import annotations

import pickle
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from nmsnn.data.datamodule import TabularDataModule
from nmsnn.data.preprocessing import TabularPreprocessor
from nmsnn.errors import CheckpointError, NmsnnError
from nmsnn.lit.module import SpikingModule

DATAMODULE_KEY = TabularDataModule.__qualname__


@dataclass
class LoadedCheckpoint:
    """A model ready to predict, the preprocessing fitted with it, and its data settings."""

    module: SpikingModule
    preprocessor: TabularPreprocessor
    data_hparams: dict[str, Any]
    path: Path

    def datamodule(self, **overrides: Any) -> TabularDataModule:
        """A DataModule with the checkpoint's settings (and ``overrides``) and fitted preprocessing."""
        settings = {**self.data_hparams, **overrides}
        settings["target"] = overrides.get("target") or self.preprocessor.target
        if overrides.get("path") is not None or overrides.get("frame") is not None:
            settings["dataset"] = None
        if overrides.get("dataset") is not None or overrides.get("frame") is not None:
            settings["path"] = None
        dm = TabularDataModule(**settings)
        dm.load_state_dict({"preprocessor": self.preprocessor.state_dict()})
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
        return torch.load(path, map_location="cpu", weights_only=True)
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


def load_checkpoint(path: str | Path) -> LoadedCheckpoint:
    """Rebuild the model and its fitted preprocessing from an nmsnn checkpoint."""
    ckpt = read_checkpoint(path)
    missing = [k for k in ("hyper_parameters", "state_dict", DATAMODULE_KEY) if k not in ckpt]
    if not isinstance(ckpt, dict) or missing:
        raise CheckpointError(
            f"{path}: not an nmsnn checkpoint (missing {missing or 'everything'}); "
            "use a checkpoint written by nmsnn-train."
        )
    state = ckpt[DATAMODULE_KEY].get("preprocessor")
    if state is None:
        raise CheckpointError(f"{path}: the checkpoint holds no fitted preprocessing.")
    try:
        module = SpikingModule(**ckpt["hyper_parameters"])
        module.load_state_dict(ckpt["state_dict"])
        preprocessor = TabularPreprocessor.from_state_dict(state)
    except NmsnnError:
        raise
    except (TypeError, RuntimeError, KeyError) as err:
        raise CheckpointError(f"{path}: the checkpoint does not match this nmsnn version ({err}).") from None
    module.eval()
    data_hparams = dict(ckpt.get("datamodule_hyper_parameters", {}))
    return LoadedCheckpoint(module, preprocessor, data_hparams, Path(path))
