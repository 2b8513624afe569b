"""Writing result files without ever leaving a partial file, or replacing one unasked."""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from nmsnn.errors import NmsnnError

if TYPE_CHECKING:
    import pandas as pd

# the marker a failed run leaves in its run directory, holding its error
FAILED_FILE = "FAILED"


def refuse_existing(path: str | Path, overwrite: bool = False) -> None:
    """The check :func:`write_atomic` makes, for a command to make before its slow work."""
    path = Path(path)
    if path.is_dir():
        raise NmsnnError(f"{path}: is a directory; give a file path.")
    if path.exists() and not overwrite:
        raise NmsnnError(f"{path}: file exists; choose another output path or pass overwrite=true.")


def write_atomic(path: str | Path, write, overwrite: bool = False) -> Path:
    """Call ``write(tmp_path)`` and move the result to ``path`` in one step.

    Refuses to replace an existing file unless ``overwrite``; an interrupted write leaves no
    partial file under the final name. The file gets the permissions of the file it replaces,
    or those a new file gets under the process's umask.
    """
    path = Path(path)
    refuse_existing(path, overwrite)
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
