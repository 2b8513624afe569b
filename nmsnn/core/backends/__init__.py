"""Implementations of the multi-step recurrence behind one switch.

Every backend has the signature of :func:`nmsnn.core.neuron.reference_recurrence` and is tested
against it. ``auto`` picks the fastest available backend for the tensors' device.
"""

from __future__ import annotations

from collections.abc import Callable

from nmsnn.core.neuron import RecurrenceOutput, reference_recurrence
from nmsnn.errors import ConfigError

Recurrence = Callable[..., RecurrenceOutput]

BACKENDS: dict[str, Recurrence] = {"reference": reference_recurrence}


def available_backends() -> tuple[str, ...]:
    """Names accepted by :func:`get_backend` (besides ``auto``)."""
    return tuple(BACKENDS)


def get_backend(name: str) -> Recurrence:
    """Return the recurrence implementation called ``name`` (``auto`` picks the best one)."""
    if name == "auto":
        return BACKENDS["reference"]
    try:
        return BACKENDS[name]
    except KeyError:
        raise ConfigError(
            f"backend={name!r} is not available; choose one of {('auto', *BACKENDS)}."
        ) from None
