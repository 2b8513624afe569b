"""One forward pass for K models of the same shape: a batched matmul per layer, one fused recurrence.

:class:`PopulationNetwork` holds no weights of its own. It reads them from K ordinary
:class:`~nmsnn.lit.module.SpikingModule` members, stacks each layer's weights to ``[K, out, in]``
and runs:

* each layer's Linear for all members as one ``baddbmm`` on ``[K, T*B, in]`` (:class:`StackedLinear`);
* each layer's recurrence as one call of the members' backend on ``[T, K*B, out]``, with every
  member's neuron parameters (LIF: decay, threshold, penalty) broadcast to its own rows (``[K*B, 1]``); where a single
  model folds a small next layer into the recurrence (numba, training), the population folds
  each member's next layer the same way, in the same call;
* the time-averaging head on each member's ``[T, B, O]``.

The gradients flow back through the stacking into each member's own parameters, so each member
keeps its own optimizer (its own learning rate and weight decay) and its own checkpoint. Nothing
couples the members: member k's outputs and gradients are those it would have alone (the
matmul's slices and the elementwise recurrence compute the same numbers; the equivalence test in
``tests/test_population.py`` checks whole training runs).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Any

import torch
from torch import Tensor

from nmsnn.core.backends import LayerCall, run_layer
from nmsnn.core.layers import SpikingLayer, linear_grads
from nmsnn.core.neurons import DEFAULT_KIND, NEURON_MODELS, neuron_model
from nmsnn.errors import ConfigError
from nmsnn.lit.module import SpikingModule

# What members of one population may differ in, declared here once (everything else must be
# equal): each neuron model's parameters (its ``param`` fields), these optimizer numbers, the seed.
POPULATION_OPTIMIZER = ("lr", "weight_decay")


def population_keys() -> frozenset[str]:
    """The override keys whose values members of one population may differ in."""
    neuron = {name for model in NEURON_MODELS.values() for name in model.param_names()}
    return frozenset(
        {
            "seed",
            *(f"model.optimizer.{k}" for k in POPULATION_OPTIMIZER),
            *(f"model.neuron.{k}" for k in neuron),
        }
    )


def check_compatible(members: Sequence[SpikingModule]) -> None:
    """Raise :class:`ConfigError` unless the members differ only in population-able values."""
    if not members:
        raise ConfigError("a population needs at least one member.")
    first = members[0].hparams
    variable = {
        "neuron": set(neuron_model(first["neuron"].get("kind", DEFAULT_KIND)).param_names()),
        "optimizer": set(POPULATION_OPTIMIZER),
    }
    for i, member in enumerate(members[1:], start=1):
        h = member.hparams
        for key in sorted(set(h) | set(first)):
            if key not in variable and h.get(key) != first.get(key):
                raise ConfigError(
                    f"population member {i} has model.{key}={h.get(key)!r} but member 0 has "
                    f"{first.get(key)!r}; members may differ only in {_may_differ(variable)} and seed."
                )
        for section, free in variable.items():
            mine, theirs = h[section] or {}, first[section] or {}
            for key in sorted((set(mine) | set(theirs)) - free):
                if mine.get(key) != theirs.get(key):
                    raise ConfigError(
                        f"population member {i} has model.{section}.{key}={mine.get(key)!r} but member 0 "
                        f"has {theirs.get(key)!r}; members must share it."
                    )


def _may_differ(variable: dict[str, set[str]]) -> str:
    return ", ".join(f"model.{section}.{key}" for section, keys in variable.items() for key in sorted(keys))


class StackedLinear(torch.autograd.Function):
    """``x [K, R, in] @ weight[k].T + bias[k]`` for K members in one ``baddbmm``.

    The backward forms each member's gradients with :func:`~nmsnn.core.layers.linear_grads`, the
    products a single model's layer uses, so a member's gradients are bitwise those it would get
    alone (batched products may round differently).
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor, weight: Tensor, bias: Tensor, split: bool = False) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(x, weight)
        if split:  # ``(x @ W.T) + b`` rounded as a single model's numba node adds its bias
            return torch.bmm(x, weight.transpose(1, 2)).add_(bias.unsqueeze(1))
        return torch.baddbmm(bias.unsqueeze(1), x, weight.transpose(1, 2))

    @staticmethod
    def backward(ctx: Any, grad: Tensor):  # type: ignore[override]
        x, weight = ctx.saved_tensors
        need = ctx.needs_input_grad
        per_member = [linear_grads(x[k], weight[k], grad[k], *need[:3]) for k in range(x.shape[0])]
        return (*(torch.stack([g[i] for g in per_member]) if need[i] else None for i in range(3)), None)


def _layers(member: SpikingModule) -> list[SpikingLayer]:
    return list(member.model.network.layers)


def _time_major(x: Tensor, k: int, steps: int, batch: int) -> Tensor:
    """``[K, T*B, H]`` -> ``[T, K*B, H]`` (member k's rows are block k of each step)."""
    return x.view(k, steps, batch, -1).transpose(0, 1).reshape(steps, k * batch, -1)


def _member_major(x: Tensor, k: int, steps: int, batch: int) -> Tensor:
    """``[T, K*B, H]`` -> ``[K, T*B, H]``."""
    return x.view(steps, k, batch, -1).transpose(0, 1).reshape(k, steps * batch, -1)


def _stacked_current(
    x: Tensor, group: list[SpikingLayer], k: int, steps: int, batch: int, for_node: bool
) -> Tensor:
    """The K members' currents of one layer, time-major ``[T, K*B, out]``; ``for_node``: the
    bias added as a separate sum, as a single model's numba node adds it."""
    weight = torch.stack([layer.linear.weight for layer in group])  # [K, out, in]
    bias = torch.stack([layer.linear.bias for layer in group])  # [K, out]
    return _time_major(StackedLinear.apply(x, weight, bias, for_node), k, steps, batch)


def _member_values(group: list[SpikingLayer], batch: int) -> tuple[Tensor, ...]:
    """Each neuron parameter of the K members, broadcast to its member's rows: ``[K*B, 1]``."""
    values = [layer.neuron_values() for layer in group]
    k = len(group)
    return tuple(
        torch.stack([v[n] for v in values]).view(k, 1, 1).expand(k, batch, 1).reshape(k * batch, 1)
        for n in range(len(values[0]))
    )


class PopulationNetwork:
    """Batched forward of ``members`` (see the module docstring); call with encoded inputs."""

    def __init__(self, members: Sequence[SpikingModule]) -> None:
        check_compatible(members)
        self.members = list(members)
        first = self.members[0]
        self.model = first.model  # its head (and ensemble layout) reads out every member
        self.readout = first.model.network.readout
        self.configs = [layer.neuron for layer in _layers(first)]

    def forward(
        self, inputs: Sequence[Tensor], active: Sequence[int] | None = None, spikes: list | None = None
    ) -> Tensor:
        """Encoded inputs ``[T, B, F]``, one per active member -> predictions ``[K, B, O]``.

        ``active`` lists the members to run (default: all), in the order of ``inputs``. A list
        passed as ``spikes`` receives each layer's spikes ``[T, K*B, H]`` (member k's rows are
        block k). Each layer runs through :func:`~nmsnn.core.backends.run_layer`, the runner
        :meth:`SpikingNetwork.forward <nmsnn.core.layers.SpikingNetwork.forward>` uses (a small
        next layer folded into the recurrence where the backend does that), so that every member
        computes what it would alone.
        """
        active = list(range(len(self.members))) if active is None else list(active)
        members = [self.members[k] for k in active]
        k = len(members)
        steps, batch = inputs[0].shape[:2]
        x = torch.stack(list(inputs)).reshape(k, steps * batch, -1)  # member-major [K, T*B, F]
        layers = [_layers(m) for m in members]
        current = None  # time-major [T, K*B, out], when the previous layer's node formed it
        result = None
        for i, config in enumerate(self.configs):
            group = [ls[i] for ls in layers]
            following = None
            if i + 1 < len(self.configs):
                nxt = [ls[i + 1].linear for ls in layers]
                following = (torch.stack([lin.weight for lin in nxt]), torch.stack([lin.bias for lin in nxt]))
            call = LayerCall(
                x=x,
                linear=partial(_stacked_current, x, group, k, steps, batch),
                recurrence=group[0]._recurrence,
                bias=None,  # each member's bias is added in the stacked Linear
                values=_member_values(group, batch),
                model=config,
                state=None,
                record=following is None,
                following=following,
                given=current,
            )
            result, current = run_layer(group[0].backend, call)
            if spikes is not None:
                spikes.append(result.spikes)
            if current is None and following is not None:
                x = _member_major(result.spikes, k, steps, batch)
        assert result is not None
        trace = (result.spikes if self.readout == "spikes" else result.membrane).view(steps, k, batch, -1)
        # the head reduces over T: per member on its own contiguous [T, B, O], as alone (a
        # reduction over [T, K*B, O] may sum in another order)
        return torch.stack([self.model.prediction(trace[:, m].contiguous()) for m in range(k)])

    __call__ = forward
