r"""Spike statistics and synaptic-operation counts, accumulated from forward passes.

Everything is computed from the activity a forward pass returns anyway
(:class:`~nmsnn.core.layers.NetworkOutput`), batch by batch, as sums that add up across batches
and across DDP ranks.

For each firing layer (the non-firing readout integrator is left out):

* **firing rate**: fraction of neuron-steps whose output is > 0;
* **mean output**: mean graded output per neuron-step;
* **dead fraction**: fraction of neurons that never fire on any row;
* **saturated fraction**: fraction of neurons that fire on every step of every row from step
  :math:`\max(\text{burn\_in}, i)` on, where :math:`i` is the layer's 1-based depth (a layer's
  first :math:`i` outputs are zero by the one-step delays).

**Synaptic operations** per row: every nonzero input a layer receives (an input spike, or a
nonzero encoded input for the first layer) is sent to each of the layer's ``out_features``
neurons, :math:`\text{SynOps} = \sum_{t,l} \text{nnz}(x^{(l)}_t) \cdot \text{fan\_out}_l`. The
same-shaped non-spiking network needs :math:`\text{MACs} = \sum_l \text{in}_l \cdot \text{out}_l`
per row. With graded (relu) spikes each synaptic operation is a multiply-accumulate too; with
binary (heaviside) spikes it is an accumulate only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from nmsnn.core.layers import NetworkOutput, SpikingNetwork


@dataclass
class LayerStats:
    """Statistics of one firing layer over all rows seen."""

    name: str
    firing_rate: float
    mean_output: float
    dead_fraction: float
    saturated_fraction: float
    neuron_rates: Tensor

    def scalars(self) -> dict[str, float]:
        return {
            "firing_rate": self.firing_rate,
            "mean_output": self.mean_output,
            "dead_fraction": self.dead_fraction,
            "saturated_fraction": self.saturated_fraction,
        }


def per_step_count(values: Tensor) -> Tensor:
    """``[T, B, N]`` values that are 0 or positive -> ``[T, N]`` float64: in how many of the B rows
    each is positive. The signs are summed over rows in float32 (exact for up to 2**24 rows, also
    for half-precision activity), several times faster than reducing a boolean tensor."""
    return torch.sign(values).sum(1, dtype=torch.float32).double()


def layer_names(network: SpikingNetwork) -> list[str]:
    """``layer1``, ``layer2``, ... for hidden layers and ``output`` for the last one."""
    n = len(network.layers)
    return [f"layer{i + 1}" if i < n - 1 else "output" for i in range(n)]


class ActivityAccumulator:
    """Sums of spike counts and synaptic operations over batches (and, reduced, over ranks)."""

    def __init__(self, network: SpikingNetwork, burn_in: int = 0) -> None:
        self.burn_in = burn_in
        self.names = layer_names(network)
        self.fires = [layer.fires for layer in network.layers]
        self.fan_out = [layer.fan_out for layer in network.layers]
        self.macs_per_row = float(sum(layer.synapses for layer in network.layers))
        self.state: dict[str, Tensor] = {}

    def _add(self, key: str, value: Tensor) -> None:
        value = value.detach().to(torch.float64)
        self.state[key] = self.state[key] + value if key in self.state else value

    @torch.no_grad()
    def update(self, inputs: Tensor, network: NetworkOutput) -> None:
        """Add one batch: the encoded input ``[T, B, F]`` and the network's activity."""
        steps, batch = inputs.shape[:2]
        self._add("rows", torch.tensor(float(batch), device=inputs.device))
        layer_input = inputs
        for i, out in enumerate(network.layers):
            nonzero = per_step_count(layer_input.abs()).sum()
            self._add("synops/input" if i == 0 else "synops/spikes", nonzero * self.fan_out[i])
            layer_input = out.spikes
            if not self.fires[i]:
                continue
            fired = per_step_count(out.spikes.clamp(min=0))  # [T, neurons]: rows where it fired
            start = min(max(self.burn_in, i + 1), steps - 1)
            self._add(f"fired/{i}", fired.sum(0))
            self._add(f"output/{i}", out.spikes.sum((0, 1)))
            self._add(f"fired_late/{i}", fired[start:].sum(0))
            self._add(f"steps/{i}", torch.tensor(float(steps * batch), device=inputs.device))
            self._add(f"steps_late/{i}", torch.tensor(float((steps - start) * batch), device=inputs.device))

    def reduce(self, reduce_sum: Callable[[Tensor], Tensor]) -> None:
        """Sum the state across processes with ``reduce_sum`` (e.g. a DDP all-reduce)."""
        self.state = {key: reduce_sum(value) for key, value in sorted(self.state.items())}

    def layer_stats(self) -> list[LayerStats]:
        stats = []
        for i, name in enumerate(self.names):
            if not self.fires[i] or f"fired/{i}" not in self.state:
                continue
            fired, steps = self.state[f"fired/{i}"], self.state[f"steps/{i}"]  # steps per neuron
            neuron_steps = steps * fired.numel()
            stats.append(
                LayerStats(
                    name=name,
                    firing_rate=float(fired.sum() / neuron_steps),
                    mean_output=float(self.state[f"output/{i}"].sum() / neuron_steps),
                    dead_fraction=float((fired == 0).double().mean()),
                    saturated_fraction=float(
                        (self.state[f"fired_late/{i}"] >= self.state[f"steps_late/{i}"]).double().mean()
                    ),
                    neuron_rates=(fired / steps).float().cpu(),
                )
            )
        return stats

    def energy(self) -> dict[str, float]:
        """Synaptic operations per row (all, and those driven by spikes of hidden layers), the
        same-shaped non-spiking network's MACs per row, and the ratio of the two totals."""
        rows = self.state["rows"]
        from_input = float(self.state["synops/input"] / rows)
        from_spikes = float(self.state.get("synops/spikes", torch.zeros(())).cpu() / rows.cpu())
        total = from_input + from_spikes
        return {
            "synops_per_row": total,
            "synops_from_spikes_per_row": from_spikes,
            "ann_macs_per_row": self.macs_per_row,
            "synops_per_mac": total / self.macs_per_row,
        }
