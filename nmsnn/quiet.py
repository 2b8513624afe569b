"""Silencing other libraries' chatter for the span of one call."""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator, Sequence


@contextlib.contextmanager
def quiet_loggers(names: Sequence[str]) -> Iterator[None]:
    """Raise the named loggers to ERROR and ignore warnings inside the block; restore both after."""
    loggers = [logging.getLogger(name) for name in names]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)
