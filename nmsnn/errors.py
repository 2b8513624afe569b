"""Errors nmsnn raises for input a user can fix.

Every error carries one message that names the problem (file, column, value) and what to do.
The command-line entry points print these messages without a traceback.
"""

from __future__ import annotations


class NmsnnError(ValueError):
    """Base class of all errors caused by user input (data, configuration, checkpoints)."""


class DataError(NmsnnError):
    """A data file, data frame or column cannot be used as given."""


class ConfigError(NmsnnError):
    """A configuration value is out of range or inconsistent."""


class CheckpointError(NmsnnError):
    """A checkpoint file is missing, truncated, foreign or unsafe to load."""


class Terminated(SystemExit):
    """The run was stopped by SIGTERM (a scheduler, ``kill``): the process exits with status 143
    (128 + SIGTERM, what a shell reports for a process SIGTERM ended). A ``SystemExit``, so that
    a sweep job is not recorded as finished (a scheduler that requeues it runs it again) and
    submitit writes no result for it."""

    def __init__(self, message: str) -> None:
        super().__init__(143)
        self.message = message

    def __str__(self) -> str:
        return self.message


def user_error(err: BaseException | None) -> NmsnnError | None:
    """The :class:`NmsnnError` behind ``err`` (Hydra's instantiate wraps errors), if any."""
    while err is not None:
        if isinstance(err, NmsnnError):
            return err
        err = err.__cause__
    return None
