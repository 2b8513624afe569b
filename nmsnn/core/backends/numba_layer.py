"""numba's layer runner: the layer's bias added inside the node and a small next layer folded
into it (private to the numba backend; :func:`nmsnn.core.backends.run_layer` calls it).

When numba runs a layer during training and the next layer is small (at most
:data:`FOLD_MAX_OUT` neurons), the next layer's Linear joins this layer's node, whose backward
then never writes the ``[T, B, H]`` gradient of the spikes
(:class:`~nmsnn.core.backends.numba_cpu.FoldedRecurrence`). The numbers are the same as the two
steps' up to rounding in the sums over the next layer's neurons and over rows (for its weight
gradient). The layer's own bias is added as the node reads the current, so the Linear writes no
broadcast copy of it. Nothing here imports numba until a node runs.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from nmsnn.core.backends import (
    LayerCall,
    _set_auto,
    auto_choice,
    installed,
    supports,
)
from nmsnn.core.neuron import NeuronModel, NeuronState, RecurrenceOutput
from nmsnn.core.neurons.lif import LIF

FOLD_MAX_OUT = 16  # next layers up to this width are folded into the previous layer's backward


def _autocast_on() -> bool:
    try:
        return torch.is_autocast_enabled("cpu")
    except TypeError:  # torch < 2.4
        return torch.is_autocast_cpu_enabled()


def numba_node_applies(backend: str, current: Tensor, model: NeuronModel) -> bool:
    """Whether :func:`folded_recurrence` runs ``current`` through the numba node: the ``numba``
    backend (named, or ``auto``'s choice on CPU) while autograd records, for float32/float64 CPU
    tensors outside autocast, and a model numba runs. A caller that adds its Linear's bias in the node
    (``in_bias``) asks here first, and computes ``x @ W.T`` without the bias only then."""
    if backend not in ("auto", "numba") or current.device.type != "cpu" or not supports("numba", model):
        return False
    if current.dtype not in (torch.float32, torch.float64) or not torch.is_grad_enabled() or _autocast_on():
        return False
    return (backend != "auto" or auto_choice("cpu") == "numba") and installed("numba")


def folded_recurrence(
    backend: str,
    current: Tensor,
    values: Sequence[Tensor],
    config: LIF,
    state: NeuronState | None,
    weight: Tensor | None,
    bias: Tensor | None,
    record: bool = True,
    in_bias: Tensor | None = None,
    consume: bool = False,
) -> tuple[RecurrenceOutput, Tensor | None] | None:
    """The recurrence of ``current [T, B, H]`` and the next layer's current
    ``spikes @ weight.T + bias`` (``weight [K, H]``, or ``[M, K, H]`` and ``bias [M, K]`` for a
    population of M models, one block of rows each) as one autograd node, or ``None`` when that
    does not apply here (then the caller runs the recurrence and the Linear as usual). Without
    ``record`` the returned membrane is ``None`` (not computed).

    ``weight=None`` folds nothing (the returned next current is ``None``): the node is then the
    numba recurrence alone. ``in_bias [H]``: this layer's own bias, when ``current`` was formed
    without it; the node adds it as it reads the current (check :func:`numba_node_applies`
    before leaving it out of the current: where this returns ``None``, nothing added it).
    ``consume``: ``current`` is the caller's own scratch (nothing else reads it): the node
    overwrites it with the saved pre-reset membrane. The node's backward runs once only.

    Called by :func:`run_numba_layer` only, where :func:`numba_node_applies` and ``K <=
    FOLD_MAX_OUT`` (both checked there).
    """
    if state is None:
        zeros = current.new_zeros(current.shape[1:])
        state = NeuronState(zeros, zeros)
    inputs = (current, *values, state.inner, state.outer, in_bias, weight, bias)
    if in_bias is None and not any(isinstance(x, Tensor) and x.requires_grad for x in inputs):
        return None
    try:
        from nmsnn.core.backends.numba_cpu import FoldedRecurrence

        spikes, membrane, inner, outer, nxt = FoldedRecurrence.apply(*inputs, config, record, consume)
    except Exception as err:
        if backend != "auto" or in_bias is not None:
            raise
        _set_auto("cpu", "fused", f"numba failed ({type(err).__name__}: {err})")
        return None
    if not record:
        membrane = None
    return RecurrenceOutput(spikes, membrane, NeuronState(inner, outer)), None if weight is None else nxt


def run_numba_layer(backend: str, call: LayerCall) -> tuple[RecurrenceOutput, Tensor | None]:
    """One layer through the numba node (where :func:`numba_node_applies`): the bias added in the
    node when the layer forms its own current, the next layer folded in when it is small enough,
    and the backend's plain recurrence on a given current that has nothing to fold."""
    following = call.following
    if following is not None and following[0].shape[-2] > FOLD_MAX_OUT:
        following = None
    weight, bias = following if following is not None else (None, None)
    hints = {"state": call.state, "weight": weight, "bias": bias, "record": call.record}
    if call.given is None and call.bias is not None:
        current = call.linear(True)  # x @ W.T: the node adds the bias (the current is this pass's own)
        folded = folded_recurrence(
            backend, current, call.values, call.model, **hints, in_bias=call.bias, consume=True
        )
        assert folded is not None  # with in_bias it runs the node or raises
        return folded
    current = call.linear(True) if call.given is None else call.given
    if weight is not None:
        folded = folded_recurrence(
            backend, current, call.values, call.model, **hints, consume=call.given is None
        )
        if folded is not None:
            return folded
    return call.recurrence(
        current, call.values, call.model, call.state, record=call.record, consume=True
    ), None
