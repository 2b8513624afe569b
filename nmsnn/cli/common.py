"""What every command-line entry point shares: config location and user-facing errors."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

from hydra.experimental.callback import Callback
from omegaconf import DictConfig
from omegaconf.errors import MissingMandatoryValue

from nmsnn.console import to_log_files
from nmsnn.errors import Terminated, user_error
from nmsnn.files import FAILED_FILE
from nmsnn.threads import set_wait_policy

CONFIG_PATH = "pkg://nmsnn.conf"
DEBUG_ENV = "NMSNN_DEBUG"

# conf/hydra/launcher/{joblib,submitit_local,submitit_slurm}.yaml keep the plugins' names (so that
# `hydra/launcher=joblib` is what users type) and are validated against the plugins' schemas of
# the same names. Hydra still does that validation, but warns about it once per composed job.
warnings.filterwarnings("ignore", message=r"(?s).*is validated against ConfigStore schema with the same name")
# Optuna's storage layer imports alembic, which logs one INFO line per plugin it registers.
logging.getLogger("alembic").setLevel(logging.WARNING)


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Turn an :class:`NmsnnError` into one error line and exit status 2 (no traceback).

    Set ``NMSNN_DEBUG=1`` (or ``HYDRA_FULL_ERROR=1``) to see the traceback.
    """
    try:
        yield
    except MissingMandatoryValue as err:  # a ??? key of the command's config was not given
        if os.environ.get(DEBUG_ENV) or os.environ.get("HYDRA_FULL_ERROR"):
            raise
        print(f"error: {err.full_key} is required: add {err.full_key}=... (see --help).", file=sys.stderr)
        sys.exit(2)
    except Exception as err:
        cause = user_error(err)
        if os.environ.get(DEBUG_ENV):
            os.environ["HYDRA_FULL_ERROR"] = "1"  # Hydra then prints the whole traceback
        if cause is None or os.environ.get("HYDRA_FULL_ERROR"):
            raise
        print(f"error: {cause}", file=sys.stderr)
        to_log_files(f"error: {cause}", logging.ERROR)
        sys.exit(2)


@contextlib.contextmanager
def failure_marker(run_dir: Path) -> Iterator[None]:
    """Leave ``<run_dir>/FAILED`` holding the error when the block raises (or is interrupted), so
    a failed run's directory does not look like a finished one; a later success removes it."""
    marker = Path(run_dir) / FAILED_FILE
    try:
        yield
    except BaseException as err:
        if marker.parent.is_dir() and (isinstance(err, Terminated) or not isinstance(err, SystemExit)):
            cause = user_error(err)
            marker.write_text(f"{type(cause or err).__name__}: {cause or err}\n")
        raise
    marker.unlink(missing_ok=True)


def entry_point(run: Callable[[], object]) -> None:
    """What every console script does before its Hydra main: OpenMP's passive wait policy (torch
    is not imported yet: the commands import it only once their configuration is valid)."""
    set_wait_policy()
    run()


class RunDirLock(Callback):
    """Hydra callback: a single run takes its run directory's lock (:mod:`nmsnn.run_lock`) before
    Hydra writes anything into it, and gives it back when the run ends."""

    def __init__(self) -> None:
        self.lock: Path | None = None

    def on_run_start(self, config: DictConfig, **kwargs: object) -> None:
        from nmsnn.run_lock import acquire, is_first_process

        if is_first_process():
            with user_errors():
                self.lock = acquire(config.hydra.run.dir, config.get("run_lock", "refuse"))

    def on_run_end(self, config: DictConfig, **kwargs: object) -> None:
        from nmsnn.run_lock import release

        if self.lock is not None:
            release(self.lock)
            self.lock = None
