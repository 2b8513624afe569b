"""One forward pass for K models of the same shape: a batched matmul per layer, one fused recurrence.

:class:`PopulationNetwork` holds no weights of its own. It reads them from K ordinary
:class:`~nmsnn.lit.module.SpikingModule` members, stacks each layer's weights to ``[K, out, in]``
and runs:

* each layer's Linear for all members as one ``baddbmm`` on ``[K, T*B, in]`` (:class:`StackedLinear`);
* each layer's recurrence as one call of the members' backend on ``[T, K*B, out]``, with every
  member's decay, threshold and penalty broadcast to its own rows (``[K*B, 1]``);
* the time-averaging head on each member's ``[T, B, O]``.

The gradients flow back through the stacking into each member's own parameters, so each member
keeps its own optimizer (its own learning rate and weight decay) and its own checkpoint. Nothing
couples the members: member k's outputs and gradients are those it would have alone (the
matmul's slices and the elementwise recurrence compute the same numbers; the equivalence test in
``tests/test_population.py`` checks whole training runs).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from nmsnn.core.layers import SpikingLayer
from nmsnn.errors import ConfigError
from nmsnn.lit.module import SpikingModule

# what must be equal for models to share one forward pass (everything but the population-able
# values: neuron decay/threshold/penalty, optimizer settings, seed)
SHARED_HPARAMS = (
    "task",
    "num_inputs",
    "num_outputs",
    "hidden",
    "encoder",
    "time_steps",
    "burn_in",
    "readout",
    "reduce",
    "init",
    "backend",
)
SHARED_NEURON = ("reset", "spike_fn", "surrogate_slope", "learnable")


def check_compatible(members: Sequence[SpikingModule]) -> None:
    """Raise :class:`ConfigError` unless the members differ only in population-able values."""
    if not members:
        raise ConfigError("a population needs at least one member.")
    first = members[0].hparams
    for i, member in enumerate(members[1:], start=1):
        h = member.hparams
        for key in SHARED_HPARAMS:
            if h[key] != first[key]:
                raise ConfigError(
                    f"population member {i} has model.{key}={h[key]!r} but member 0 has {first[key]!r}; "
                    "members may differ only in neuron decay/threshold/penalty, optimizer settings and seed."
                )
        for key in SHARED_NEURON:
            if h["neuron"].get(key) != first["neuron"].get(key):
                raise ConfigError(
                    f"population member {i} has model.neuron.{key}={h['neuron'].get(key)!r} but member 0 has "
                    f"{first['neuron'].get(key)!r}; members must share it."
                )


class StackedLinear(torch.autograd.Function):
    """``x [K, R, in] @ weight[k].T + bias[k]`` for K members in one ``baddbmm``.

    The backward computes each member's gradients with the very products autograd uses for a
    single model's ``nn.Linear`` (``g.T @ x`` for the weight, ``g.sum(0)`` for the bias,
    ``g @ W`` for the input), so a member's gradients are bitwise those it would get alone
    (batched products may round differently).
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor, weight: Tensor, bias: Tensor) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(x, weight)
        return torch.baddbmm(bias.unsqueeze(1), x, weight.transpose(1, 2))

    @staticmethod
    def backward(ctx: Any, grad: Tensor):  # type: ignore[override]
        x, weight = ctx.saved_tensors
        need_x, need_w, need_b = ctx.needs_input_grad
        members = range(x.shape[0])
        gx = torch.stack([grad[k].mm(weight[k]) for k in members]) if need_x else None
        gw = torch.stack([grad[k].t().mm(x[k]) for k in members]) if need_w else None
        gb = torch.stack([grad[k].sum(0) for k in members]) if need_b else None
        return gx, gw, gb


def _layers(member: SpikingModule) -> list[SpikingLayer]:
    return list(member.model.network.layers)


class PopulationNetwork:
    """Batched forward of ``members`` (see the module docstring); call with encoded inputs."""

    def __init__(self, members: Sequence[SpikingModule]) -> None:
        check_compatible(members)
        self.members = list(members)
        first = self.members[0]
        self.head = first.model.head
        self.readout = first.model.network.readout
        self.recurrences = [layer._recurrence for layer in _layers(first)]
        self.configs = [layer.neuron for layer in _layers(first)]

    def forward(self, inputs: Sequence[Tensor], active: Sequence[int] | None = None) -> Tensor:
        """Encoded inputs ``[T, B, F]``, one per active member -> predictions ``[K, B, O]``.

        ``active`` lists the members to run (default: all), in the order of ``inputs``.
        """
        active = list(range(len(self.members))) if active is None else list(active)
        members = [self.members[k] for k in active]
        k = len(members)
        steps, batch = inputs[0].shape[:2]
        x = torch.stack(list(inputs)).reshape(k, steps * batch, -1)  # [K, T*B, F]
        layers = [_layers(m) for m in members]
        trace = None
        for depth, (recurrence, config) in enumerate(zip(self.recurrences, self.configs)):
            group = [ls[depth] for ls in layers]
            weight = torch.stack([layer.linear.weight for layer in group])  # [K, out, in]
            bias = torch.stack([layer.linear.bias for layer in group])  # [K, out]
            out = weight.shape[1]
            current = StackedLinear.apply(x, weight, bias)  # [K, T*B, out]
            current = current.view(k, steps, batch, out).transpose(0, 1).reshape(steps, k * batch, out)
            values = [layer.neuron_values() for layer in group]
            params = [
                torch.stack([v[i] for v in values]).view(k, 1, 1).expand(k, batch, 1).reshape(k * batch, 1)
                for i in range(3)
            ]
            result = recurrence(current, *params, config, None)
            last = depth == len(self.recurrences) - 1
            if last:
                trace = result.spikes if self.readout == "spikes" else result.membrane
            else:
                x = result.spikes.view(steps, k, batch, out).transpose(0, 1).reshape(k, steps * batch, out)
        assert trace is not None
        # the head reduces over T: per member on its own contiguous [T, B, O], as alone (a
        # reduction over [T, K*B, O] may sum in another order)
        trace = trace.view(steps, k, batch, -1)
        return torch.stack([self.head(trace[:, i].contiguous()) for i in range(k)])

    __call__ = forward
