"""Predictions for raw rows, and writing result files without ever leaving a partial file."""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from nmsnn.data.preprocessing import TabularPreprocessor
from nmsnn.errors import ConfigError, NmsnnError
from nmsnn.lit.module import SpikingModule


def predict_frame(
    module: SpikingModule,
    preprocessor: TabularPreprocessor,
    frame: pd.DataFrame,
    where: str = "rows",
    id_column: str | None = None,
) -> pd.DataFrame:
    """One output row per input row: ``prediction`` and, for classes, ``proba_<class>`` columns;
    ``id_column``: a column of ``frame`` copied, as it is, in front of them."""
    if id_column is not None and id_column not in frame.columns:
        raise ConfigError(
            f"{where}: id_column={id_column!r} is not a column; the columns are "
            f"{list(map(str, frame.columns))}."
        )
    x = torch.from_numpy(preprocessor.transform(frame, where))
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


def write_atomic(path: str | Path, write, overwrite: bool = False) -> Path:
    """Call ``write(tmp_path)`` and move the result to ``path`` in one step.

    Refuses to replace an existing file unless ``overwrite``; an interrupted write leaves no
    partial file under the final name. The file gets the permissions of the file it replaces,
    or those a new file gets under the process's umask.
    """
    path = Path(path)
    if path.is_dir():
        raise NmsnnError(f"{path}: is a directory; give a file path.")
    if path.exists() and not overwrite:
        raise NmsnnError(f"{path}: file exists; choose another output path or pass overwrite=true.")
    mode = stat.S_IMODE(path.stat().st_mode) if path.exists() else _new_file_mode()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def _new_file_mode() -> int:
    mask = os.umask(0)  # reading the umask means setting it; put it straight back
    os.umask(mask)
    return 0o666 & ~mask


def write_csv(frame: pd.DataFrame, path: str | Path, overwrite: bool = False) -> Path:
    """Write ``frame`` as CSV (no index) atomically."""
    return write_atomic(path, lambda tmp: frame.to_csv(tmp, index=False), overwrite)


def write_table(frame: pd.DataFrame, path: str | Path, overwrite: bool = False) -> Path:
    """Write ``frame`` atomically as Parquet if ``path`` ends in ``.parquet`` or ``.pq``, else as
    CSV (no index)."""
    if Path(path).suffix.lower() in (".parquet", ".pq"):
        return write_atomic(path, lambda tmp: frame.to_parquet(tmp, index=False), overwrite)
    return write_csv(frame, path, overwrite)


def write_text(text: str, path: str | Path, overwrite: bool = False) -> Path:
    """Write ``text`` to ``path`` atomically (see :func:`write_atomic`)."""
    return write_atomic(path, lambda tmp: Path(tmp).write_text(text), overwrite)
