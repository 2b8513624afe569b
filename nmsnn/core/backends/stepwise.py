"""Any neuron model's recurrence as one autograd node, derived from its torch ``step``.

The forward pass walks T without recording a graph and keeps the state before every step
(``[T, B, H]`` per state field: the layer's delayed outputs are two of them). The backward pass
walks T in reverse and differentiates one step at a time: it runs the model's own ``step`` on
the kept state under autograd and chains the gradients. So a new model needs no hand-written
backward, and its memory is a few numbers per neuron-step instead of autograd's whole graph
(what ``reference`` keeps). It is the ``fused`` backend for every model without hand-written
kernels, and the oracle those kernels (LIF's) are tested against.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from nmsnn.core.neuron import NeuronModel, RecurrenceOutput, reference_recurrence, zero_state


def _add(total: Tensor | None, extra: Tensor | None) -> Tensor | None:
    if extra is None:
        return total
    return extra if total is None else total + extra


class StepwiseRecurrence(torch.autograd.Function):
    """``apply(current, model, record, n_values, *values, *state)`` -> spikes, membrane (an empty
    placeholder without ``record``), then the final state's fields."""

    @staticmethod
    def forward(ctx: Any, current: Tensor, model: NeuronModel, record: bool, n_values: int, *tensors: Tensor):  # type: ignore[override]
        values, state = tensors[:n_values], model.State(*tensors[n_values:])
        kept: list[list[Tensor]] = [[] for _ in state]
        for t in range(current.shape[0]):
            for field, x in zip(kept, state):
                field.append(x)
            state = model.step(current[t], state, values)
        before = [torch.stack(field) for field in kept]  # each field's value before step t
        ctx.save_for_backward(current, *values, *before)
        ctx.model, ctx.n_values, ctx.record = model, n_values, record
        ctx.set_materialize_grads(False)
        membrane = before[0] if record else current.new_empty(0)
        return (before[1], membrane, *state)

    @staticmethod
    def backward(ctx: Any, g_spikes: Tensor | None, g_membrane: Tensor | None, *g_final: Tensor | None):  # type: ignore[override]
        current, *rest = ctx.saved_tensors
        n = ctx.n_values
        values, before = rest[:n], rest[n:]
        need_current, need_values = ctx.needs_input_grad[0], ctx.needs_input_grad[4 : 4 + n]
        grad_current = torch.zeros_like(current) if need_current else None
        grad_values: list[Tensor | None] = [None] * n
        grad_state: list[Tensor | None] = list(g_final)
        for t in range(current.shape[0] - 1, -1, -1):
            inputs = (
                current[t].detach().requires_grad_(need_current),
                *(x[t].detach().requires_grad_() for x in before),
                *(v.detach().requires_grad_(bool(k)) for v, k in zip(values, need_values)),
            )
            grads = _step_grads(ctx.model, inputs, len(before), grad_state)
            if grad_current is not None and grads[0] is not None:
                grad_current[t] = grads[0]
            grad_state = list(grads[1 : 1 + len(before)])
            grad_values = [_add(total, g) for total, g in zip(grad_values, grads[1 + len(before) :])]
            # the layer's outputs at step t are this state's outer (spikes) and inner (membrane)
            grad_state[1] = _add(grad_state[1], None if g_spikes is None else g_spikes[t])
            if ctx.record:
                grad_state[0] = _add(grad_state[0], None if g_membrane is None else g_membrane[t])
        return (grad_current, None, None, None, *grad_values, *grad_state)


def _step_grads(
    model: NeuronModel, inputs: tuple[Tensor, ...], fields: int, grad_after: Sequence[Tensor | None]
) -> list[Tensor | None]:
    """Gradients of one ``model.step`` with respect to ``inputs`` (the current, the state's
    fields, the values), given the gradients of the state after it (``None``: none)."""
    if all(g is None for g in grad_after):  # nothing flows back through this step
        return [None] * len(inputs)
    with torch.enable_grad():
        after = model.step(inputs[0], model.State(*inputs[1 : 1 + fields]), inputs[1 + fields :])
    pairs = [(o, g) for o, g in zip(after, grad_after) if g is not None and o.requires_grad]
    wrt = [x for x in inputs if x.requires_grad]
    if not pairs or not wrt:
        return [None] * len(inputs)
    found = iter(torch.autograd.grad([o for o, _ in pairs], wrt, [g for _, g in pairs], allow_unused=True))
    return [next(found) if x.requires_grad else None for x in inputs]


def stepwise_recurrence(
    current: Tensor, values: Sequence[Tensor], model: NeuronModel, state: Any, record: bool = True
) -> RecurrenceOutput:
    """:class:`StepwiseRecurrence` on ``current [T, B, H]`` (the ``fused`` backend's path for
    models without kernels of their own); without ``record`` the membrane is ``None``."""
    state = zero_state(model, current[0]) if state is None else state
    tensors = (current, *values, *state)
    if torch.is_grad_enabled() and any(isinstance(x, Tensor) and x.requires_grad for x in tensors):
        spikes, membrane, *final = StepwiseRecurrence.apply(
            current, model, record, len(values), *values, *state
        )
        return RecurrenceOutput(spikes, membrane if record else None, model.State(*final))
    out = reference_recurrence(current, values, model, state)  # no graph is recorded here
    return out if record else out._replace(membrane=None)
