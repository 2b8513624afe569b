"""What every command-line entry point shares: config location and user-facing errors."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import warnings
from collections.abc import Iterator

from omegaconf.errors import MissingMandatoryValue

from nmsnn.errors import user_error

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


def to_log_files(message: str, level: int = logging.INFO) -> None:
    """Write ``message`` to the log files only (the run's ``train.log``): for what the command
    already prints on the console (the final metrics table, an error line)."""
    logger = logging.getLogger("nmsnn")
    record = logger.makeRecord(logger.name, level, __file__, 0, message, None, None)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)


def format_table(metrics: dict[str, float], title: str) -> str:
    """A two-column text table of metric names and values."""
    width = max([len(k) for k in metrics] + [len(title)])
    lines = [title, "-" * (width + 14)]
    lines += [f"{k:<{width}}  {v:>12.6g}" for k, v in sorted(metrics.items())]
    return "\n".join(lines)
