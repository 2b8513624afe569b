r"""The adaptive-threshold LIF (``alif``; Bellec et al., 2018): each spike raises the neuron's
threshold, which decays back.

.. math::

    \theta_t &= \text{threshold} + \text{adapt\_gain}\cdot b_t, \qquad
    inner_t = c_t + \text{decay}\cdot inner_{t-1}, \qquad
    outer_t = \text{spike\_fn}(inner_t - \theta_t) \\
    inner_t &\leftarrow inner_t - (\text{penalty} + outer_t)\,g_t, \qquad
    b_{t+1} = \text{adapt\_decay}\cdot b_t + outer_t

The spikes' surrogate gradient flows into the adaptation too (as in Bellec et al.'s BPTT).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, NamedTuple

from torch import Tensor

from nmsnn.core.neuron import NeuronModel, number, option, param
from nmsnn.core.neurons.lif import DECAY, NON_NEGATIVE, SLOPE, THRESHOLD, charge, fire, reset
from nmsnn.core.surrogate import SPIKE_FUNCTIONS


class ALIFState(NamedTuple):
    inner: Tensor
    outer: Tensor
    adapt: Tensor  # b_t: how far recent spikes have raised the threshold (before the gain)


@dataclass(frozen=True)
class ALIF(NeuronModel):
    """LIF whose threshold rises by ``adapt_gain`` per unit of output and decays back by
    ``adapt_decay`` per step; the other settings are :class:`~nmsnn.core.neurons.lif.LIF`'s."""

    kind: ClassVar[str] = "alif"
    State: ClassVar[type] = ALIFState
    decay: float = param(0.9, DECAY, "membrane leak per step")
    threshold: float = param(1.0, THRESHOLD, "resting firing threshold")
    penalty: float = param(1.5, NON_NEGATIVE, "refractory penalty subtracted on firing")
    adapt_decay: float = param(0.9, DECAY, "threshold adaptation kept per step")
    adapt_gain: float = param(0.5, NON_NEGATIVE, "threshold rise per unit of output")
    spike_fn: str = option("relu", SPIKE_FUNCTIONS, "a spike function", "relu (graded) | heaviside (binary)")
    surrogate_slope: float = number(5.0, SLOPE, "steepness of the heaviside surrogate gradient")

    def step(self, current: Tensor, state: ALIFState, values) -> ALIFState:
        decay, threshold, penalty, adapt_decay, adapt_gain = values
        effective = threshold + adapt_gain * state.adapt
        inner = charge(state.inner, current, decay)
        outer = fire(inner, effective, self.spike_fn, self.surrogate_slope)
        inner = reset(inner, outer, effective, penalty, "subtract")
        return ALIFState(inner, outer, adapt_decay * state.adapt + outer)
