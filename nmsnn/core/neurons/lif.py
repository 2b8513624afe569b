r"""The leaky integrate-and-fire neuron with a refractory penalty (the default model, ``lif``).

.. math::

    \text{charge:}\quad inner_t &= c_t + \text{decay}\cdot inner_{t-1} \\
    \text{fire:}\quad   outer_t &= \text{spike\_fn}(inner_t - \text{threshold}) \\
    \text{reset:}\quad  inner_t &\leftarrow inner_t - (\text{penalty} + outer_t)\,g_t
        \qquad (\texttt{subtract}) \\
                        inner_t &\leftarrow inner_t - \tfrac{\text{penalty}}{\text{threshold}}\,inner_t\,g_t
        \qquad (\texttt{scale}, \text{pynmsnn 0.0.3})

with the gate :math:`g_t = 1[outer_t > 0]` carrying no gradient. The compiled backends (numba,
Triton) and the fused torch loops hand-derive this model's backward pass; this step is their
test oracle.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from torch import Tensor

from nmsnn.core.neuron import NeuronModel, NeuronState, Range, number, option, param
from nmsnn.core.surrogate import SPIKE_FUNCTIONS, spike

RESET_MODES = ("subtract", "scale")

DECAY = Range(0.0, 1.0, low_closed=False, clamp=(1e-3, 1.0))
THRESHOLD = Range(0.0, low_closed=False, finite=False, clamp=(1e-3, None))
NON_NEGATIVE = Range(0.0, clamp=(0.0, None))
SLOPE = Range(0.0, low_closed=False)


def charge(inner: Tensor, current: Tensor, decay: Tensor) -> Tensor:
    """Leaky integration: ``current + decay * inner``."""
    return current + decay * inner


def fire(inner: Tensor, threshold: Tensor, spike_fn: str, slope: float) -> Tensor:
    """Spike output ``spike_fn(inner - threshold)``."""
    return spike(inner - threshold, spike_fn, slope)


def gate(outer: Tensor) -> Tensor:
    """Whether a neuron fired, ``1[outer > 0]``, as a number without gradient."""
    return (outer > 0).to(outer.dtype)


def reset(inner: Tensor, outer: Tensor, threshold: Tensor, penalty: Tensor, mode: str) -> Tensor:
    """Reset fired neurons; the gate ``outer > 0`` carries no gradient."""
    fired = gate(outer)
    if mode == "subtract":
        return inner - (penalty + outer) * fired
    return inner - (penalty / threshold) * inner * fired


@dataclass(frozen=True)
class LIF(NeuronModel):
    """Leaky integrate-and-fire with a refractory penalty.

    Args:
        decay: membrane leak per step, in (0, 1].
        threshold: firing threshold, > 0 (``inf`` makes a non-firing leaky integrator).
        penalty: refractory penalty subtracted on firing, >= 0.
        reset: ``"subtract"`` (documented rule) or ``"scale"`` (the pynmsnn 0.0.3 release).
        spike_fn: ``"relu"`` (graded spikes) or ``"heaviside"`` (binary spikes, surrogate gradient);
            configs default to ``auto``: relu for classification, heaviside for regression.
        surrogate_slope: steepness of the heaviside surrogate gradient, > 0.
        learnable: train decay, threshold and penalty along with the weights.
    """

    kind: ClassVar[str] = "lif"
    decay: float = param(0.9, DECAY, "membrane leak per step")
    threshold: float = param(1.0, THRESHOLD, "firing threshold")
    penalty: float = param(1.5, NON_NEGATIVE, "refractory penalty subtracted on firing")
    reset: str = option("subtract", RESET_MODES, "a reset mode", "subtract | scale (pynmsnn 0.0.3)")
    # per task, as measured on the tabular suite: graded spikes classify better, binary spikes
    # regress better (experiments/results/tabular_suite.md)
    spike_fn: str = option(
        "relu",
        SPIKE_FUNCTIONS,
        "a spike function",
        "relu (graded) | heaviside (binary)",
        by_task={"classification": "relu", "regression": "heaviside"},
    )
    surrogate_slope: float = number(5.0, SLOPE, "steepness of the heaviside surrogate gradient")

    def step(self, current: Tensor, state: NeuronState, values) -> NeuronState:
        decay, threshold, penalty = values
        inner = charge(state.inner, current, decay)
        outer = fire(inner, threshold, self.spike_fn, self.surrogate_slope)
        return NeuronState(reset(inner, outer, threshold, penalty, self.reset), outer)
