r"""The spiking neuron: parameters, one time step, and the reference recurrence over T steps.

One spiking layer receives an input current ``c_t = W x_t + b`` at every step ``t`` and keeps a
membrane ``inner`` (zero before step 0). Each step has three named parts:

.. math::

    \text{charge:}\quad inner_t &= c_t + \text{decay}\cdot inner_{t-1} \\
    \text{fire:}\quad   outer_t &= \text{spike\_fn}(inner_t - \text{threshold}) \\
    \text{reset:}\quad  inner_t &\leftarrow inner_t - (\text{penalty} + outer_t)\,g_t
        \qquad (\texttt{subtract}) \\
                        inner_t &\leftarrow inner_t - \tfrac{\text{penalty}}{\text{threshold}}\,inner_t\,g_t
        \qquad (\texttt{scale}, \text{pynmsnn 0.0.3})

with the gate :math:`g_t = 1[outer_t > 0]` carrying no gradient. The layer emits its activity with
a one-step delay: output at step ``t`` is :math:`outer_{t-1}` (zeros at step 0), and the recorded
membrane at step ``t`` is the post-reset :math:`inner_{t-1}`.

:func:`reference_recurrence` is the plain loop over T that every fast backend is tested against.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor

from nmsnn.core.surrogate import SPIKE_FUNCTIONS, spike
from nmsnn.errors import ConfigError

RESET_MODES = ("subtract", "scale")


@dataclass(frozen=True)
class NeuronConfig:
    """Parameters of one layer's neurons.

    Args:
        decay: membrane leak per step, in (0, 1].
        threshold: firing threshold, > 0 (``inf`` makes a non-firing leaky integrator).
        penalty: refractory penalty subtracted on firing, >= 0.
        reset: ``"subtract"`` (documented rule) or ``"scale"`` (the pynmsnn 0.0.3 release).
        spike_fn: ``"relu"`` (graded spikes) or ``"heaviside"`` (binary spikes, surrogate gradient).
        surrogate_slope: steepness of the heaviside surrogate gradient, > 0.
        learnable: train decay, threshold and penalty along with the weights.
    """

    decay: float = 0.9
    threshold: float = 1.0
    penalty: float = 1.5
    reset: str = "subtract"
    spike_fn: str = "relu"
    surrogate_slope: float = 5.0
    learnable: bool = False

    def __post_init__(self) -> None:
        validate_neuron_values(self.decay, self.threshold, self.penalty)
        if self.reset not in RESET_MODES:
            raise ConfigError(f"reset={self.reset!r} is not a reset mode; use one of {RESET_MODES}.")
        if self.spike_fn not in SPIKE_FUNCTIONS:
            raise ConfigError(
                f"spike_fn={self.spike_fn!r} is not a spike function; use one of {SPIKE_FUNCTIONS}."
            )
        if not (self.surrogate_slope > 0 and math.isfinite(self.surrogate_slope)):
            raise ConfigError(f"surrogate_slope must be a positive number, got {self.surrogate_slope!r}.")


def validate_neuron_values(decay: float, threshold: float, penalty: float, where: str = "") -> None:
    """Raise :class:`ConfigError` unless decay is in (0, 1], threshold > 0 and penalty >= 0."""
    prefix = f"{where}: " if where else ""
    for name, value in (("decay", decay), ("threshold", threshold), ("penalty", penalty)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
            raise ConfigError(f"{prefix}{name} must be a number, got {value!r}.")
    if not 0.0 < decay <= 1.0:
        raise ConfigError(f"{prefix}decay must be in (0, 1], got {decay}.")
    if not threshold > 0.0:
        raise ConfigError(f"{prefix}threshold must be > 0, got {threshold}.")
    if not (penalty >= 0.0 and math.isfinite(penalty)):
        raise ConfigError(f"{prefix}penalty must be a finite number >= 0, got {penalty}.")


class NeuronState(NamedTuple):
    """State carried between calls: post-reset membrane and last (not yet emitted) output."""

    inner: Tensor
    outer: Tensor


class RecurrenceOutput(NamedTuple):
    """Delayed activity ``[T, B, H]``, delayed post-reset membrane ``[T, B, H]``, final state."""

    spikes: Tensor
    membrane: Tensor
    state: NeuronState


def charge(inner: Tensor, current: Tensor, decay: Tensor) -> Tensor:
    """Leaky integration: ``current + decay * inner``."""
    return current + decay * inner


def fire(inner: Tensor, threshold: Tensor, spike_fn: str, slope: float) -> Tensor:
    """Spike output ``spike_fn(inner - threshold)``."""
    return spike(inner - threshold, spike_fn, slope)


def reset(inner: Tensor, outer: Tensor, threshold: Tensor, penalty: Tensor, mode: str) -> Tensor:
    """Reset fired neurons; the gate ``outer > 0`` carries no gradient."""
    gate = (outer > 0).to(inner.dtype)
    if mode == "subtract":
        return inner - (penalty + outer) * gate
    return inner - (penalty / threshold) * inner * gate


def neuron_step(
    current: Tensor,
    state: NeuronState,
    decay: Tensor,
    threshold: Tensor,
    penalty: Tensor,
    config: NeuronConfig,
) -> tuple[Tensor, Tensor, NeuronState]:
    """One time step: returns the delayed output, the delayed membrane and the new state."""
    inner = charge(state.inner, current, decay)
    outer = fire(inner, threshold, config.spike_fn, config.surrogate_slope)
    inner = reset(inner, outer, threshold, penalty, config.reset)
    return state.outer, state.inner, NeuronState(inner, outer)


def zero_state(like: Tensor) -> NeuronState:
    """The state before step 0: zeros shaped like one step of input current ``[B, H]``."""
    zeros = torch.zeros_like(like)
    return NeuronState(zeros, zeros)


def reference_recurrence(
    current: Tensor,
    decay: Tensor,
    threshold: Tensor,
    penalty: Tensor,
    config: NeuronConfig,
    state: NeuronState | None = None,
) -> RecurrenceOutput:
    """The source of truth: walk the neuron over ``current [T, B, H]`` one step at a time.

    ``decay``, ``threshold`` and ``penalty`` are tensors broadcastable to ``[B, H]`` (scalars or
    per-neuron vectors). ``state`` continues a previous call (streaming); ``None`` starts at zero.
    """
    state = zero_state(current[0]) if state is None else state
    spikes, membranes = [], []
    for t in range(current.shape[0]):
        out, mem, state = neuron_step(current[t], state, decay, threshold, penalty, config)
        spikes.append(out)
        membranes.append(mem)
    return RecurrenceOutput(torch.stack(spikes), torch.stack(membranes), state)
