r"""The hard-reset LIF (``lif_hard``): a neuron that fires sets its membrane to ``v_reset``, the
form neuromorphic hardware and the NIR exchange format use (binary spikes by default).

.. math::

    inner_t = c_t + \text{decay}\cdot inner_{t-1}, \quad
    outer_t = \text{spike\_fn}(inner_t - \text{threshold}), \quad
    inner_t \leftarrow (1 - g_t)\,inner_t + g_t\,v_{reset}
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from torch import Tensor

from nmsnn.core.neuron import NeuronModel, NeuronState, Range, number, option, param
from nmsnn.core.neurons.lif import DECAY, SLOPE, THRESHOLD, charge, fire, gate
from nmsnn.core.surrogate import SPIKE_FUNCTIONS


@dataclass(frozen=True)
class HardResetLIF(NeuronModel):
    """LIF that resets a fired neuron's membrane to ``v_reset`` (no refractory penalty)."""

    kind: ClassVar[str] = "lif_hard"
    decay: float = param(0.9, DECAY, "membrane leak per step")
    threshold: float = param(1.0, THRESHOLD, "firing threshold")
    v_reset: float = param(0.0, Range(), "membrane value after a spike")
    spike_fn: str = option(
        "heaviside", SPIKE_FUNCTIONS, "a spike function", "heaviside (binary) | relu (graded)"
    )
    surrogate_slope: float = number(5.0, SLOPE, "steepness of the heaviside surrogate gradient")

    def step(self, current: Tensor, state: NeuronState, values) -> NeuronState:
        decay, threshold, v_reset = values
        inner = charge(state.inner, current, decay)
        outer = fire(inner, threshold, self.spike_fn, self.surrogate_slope)
        fired = gate(outer)
        return NeuronState(inner + (v_reset - inner) * fired, outer)
