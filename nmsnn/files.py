"""Writing result files without ever leaving a partial file, or replacing one unasked."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from nmsnn.errors import NmsnnError

if TYPE_CHECKING:
    import pandas as pd

# the marker a failed run leaves in its run directory, holding its error
FAILED_FILE = "FAILED"


# the files the running command reads, by resolved path: no write replaces one (see reading())
_INPUTS: dict[str, str] = {}


@contextlib.contextmanager
def reading(inputs: Mapping[str, str | Path | None]) -> Iterator[None]:
    """Declare, for the block, the files a command reads (``{setting: path}``; ``None`` entries
    are skipped): :func:`write_atomic` and :func:`refuse_existing` then refuse to write over any
    of them, whatever ``overwrite`` says, so a mistyped output path never replaces the data or
    checkpoint it was computed from."""
    added = []
    for setting, source in inputs.items():
        if source is not None and str(source) != "":
            key = os.path.realpath(source)
            if key not in _INPUTS:
                _INPUTS[key] = setting
                added.append(key)
    try:
        yield
    finally:
        for key in added:
            _INPUTS.pop(key, None)


def refuse_input(path: str | Path) -> None:
    """Refuse ``path`` as an output when the running command reads it (see :func:`reading`)."""
    resolved = os.path.realpath(path)
    for source, setting in _INPUTS.items():
        same = resolved == source or (
            os.path.exists(resolved) and os.path.exists(source) and os.path.samefile(resolved, source)
        )
        if same:
            raise NmsnnError(
                f"{path}: is the file this command reads ({setting}); choose another output path "
                "(no command writes over its own input, even with overwrite=true)."
            )


def refuse_existing(path: str | Path, overwrite: bool = False) -> None:
    """The check :func:`write_atomic` makes, for a command to make before its slow work."""
    path = Path(path)
    refuse_input(path)
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
    except OSError as err:
        if err.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        written = os.path.getsize(tmp) if os.path.exists(tmp) else 0
        free = shutil.disk_usage(path.parent).free
        raise NmsnnError(
            f"{path}: the disk is full ({_size(free)} free in {path.parent}, and the file needs more "
            f"than the {_size(written)} written when it ran out); nothing was written. Free some "
            "space and run the command again."
        ) from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def _size(n: float) -> str:
    for unit in ("bytes", "KB", "MB"):
        if n < 1024:
            return f"{n:.0f} bytes" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


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
