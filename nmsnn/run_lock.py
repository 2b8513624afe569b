"""One process per run directory: a lock file holding the owner's process id.

Two ``nmsnn-train`` started with the same ``run_name`` would otherwise both write into one
directory and leave one run's configuration beside the other's checkpoints and metrics. The
first takes ``<run dir>/.nmsnn.lock`` (created exclusively); a second one refuses with the
owner's process id, or waits for it with ``run_lock=wait``. A lock left by a process that no
longer runs on this host is taken over, with a log line.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import socket
import time
from pathlib import Path

from nmsnn.errors import ConfigError

log = logging.getLogger(__name__)

LOCK_FILE = ".nmsnn.lock"
MODES = ("refuse", "wait")
# the environment variables that number a distributed run's processes: only the first locks
RANK_VARIABLES = ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID")


def is_first_process() -> bool:
    """False in the second and later processes of a distributed run (they share the directory)."""
    return all(int(os.environ.get(name, "0") or 0) == 0 for name in RANK_VARIABLES)


def _owner(lock: Path) -> dict:
    try:
        return json.loads(lock.read_text())
    except (OSError, ValueError):
        return {}


def _alive(owner: dict) -> bool:
    """Whether the lock's owner may still run (a process on another host is taken as running)."""
    if owner.get("host") != socket.gethostname():
        return True
    try:
        pid = int(owner.get("pid", 0))
        if pid <= 0:
            return False
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, ValueError, OverflowError):
        return True
    return True


def acquire(run_dir: str | Path, mode: str = "refuse", poll_s: float = 1.0) -> Path:
    """Take the lock of ``run_dir`` for this process (released when it exits, or by
    :func:`release`); ``mode``: ``refuse`` a directory another process holds, or ``wait`` for it."""
    if mode not in MODES:
        raise ConfigError(f"run_lock={mode!r} must be one of {MODES}.")
    lock = Path(run_dir) / LOCK_FILE
    lock.parent.mkdir(parents=True, exist_ok=True)
    record = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()})
    waited = False
    while True:
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            owner = _owner(lock)
            if not owner and time.time() - _mtime(lock) < 5:  # being written this instant
                time.sleep(0.05)
                continue
            if not owner or not _alive(owner):
                log.info(
                    "%s: taking over the lock of process %s, which no longer runs",
                    run_dir,
                    owner.get("pid", "?"),
                )
                lock.unlink(missing_ok=True)
                continue
            if mode == "refuse":
                since = time.strftime("%H:%M:%S", time.localtime(owner.get("started", _mtime(lock))))
                raise ConfigError(
                    f"{run_dir}: this run directory is in use by process {owner.get('pid', '?')} on "
                    f"{owner.get('host', '?')} (since {since}); choose another run_name, wait for it "
                    "to finish, or pass run_lock=wait."
                ) from None
            if not waited:
                log.info(
                    "%s: waiting for process %s to finish with this run directory", run_dir, owner.get("pid")
                )
                waited = True
            time.sleep(poll_s)
            continue
        with os.fdopen(fd, "w") as handle:
            handle.write(record)
        atexit.register(release, lock)
        return lock


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return time.time()


def release(lock: str | Path) -> None:
    """Remove ``lock`` if this process holds it."""
    lock = Path(lock)
    owner = _owner(lock)
    if owner.get("pid") == os.getpid() and owner.get("host") == socket.gethostname():
        lock.unlink(missing_ok=True)
