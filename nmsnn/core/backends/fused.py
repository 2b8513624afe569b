r"""A fused multi-step recurrence: one custom autograd node per layer instead of ~10 per step.

Notation, per neuron (``r = penalty / threshold``, ``s_{-1}`` and ``o_{-1}`` the incoming state):

.. math::

    a_t = c_t + d\,s_{t-1}, \quad v_t = a_t - \theta, \quad o_t = f(v_t), \quad g_t = 1[v_t > 0] \\
    s_t = a_t - (p + o_t)\,g_t \quad (\texttt{subtract}) \qquad
    s_t = a_t - r\,a_t\,g_t \quad (\texttt{scale})

Outputs are ``spikes_t = o_{t-1}`` and ``membrane_t = s_{t-1}`` for ``t = 0..T-1`` and the final
state ``(s_{T-1}, o_{T-1})``. The forward pass saves only the pre-reset membrane ``a_t`` (one
number per neuron-step); ``s_{t-1}`` is recomputed from ``a_{t-1}`` in the backward pass, which walks
T in reverse with ``A_t = dL/da_t`` (``A_T = 0``) and the incoming output gradients ``M`` (membrane),
``S`` (spikes), with ``M_T``, ``S_T`` the gradients of the final state:

.. math::

    G^s_t &= M_{t+1} + d\,A_{t+1}, \qquad
    G^o_t = S_{t+1} - g_t\,G^s_t\;(\texttt{subtract}) \;\text{or}\; S_{t+1}\;(\texttt{scale}) \\
    G^v_t &= G^o_t\,f'(v_t), \qquad f' = g_t\;(\texttt{relu}), \; 1/(1+k|v_t|)^2\;(\texttt{heaviside}) \\
    A_t &= G^s_t + G^v_t \;(\texttt{subtract}) \;\text{or}\; G^s_t(1 - r\,g_t) + G^v_t \;(\texttt{scale}) \\
    dL/dc_t &= A_t, \quad dL/dd \mathrel{+}= A_t\,s_{t-1}, \quad
    dL/d\theta \mathrel{+}= -G^v_t \;[+\,G^s_t\,p\,a_t\,g_t/\theta^2], \quad
    dL/dp \mathrel{+}= -G^s_t\,g_t \;[\text{or} -G^s_t\,a_t\,g_t/\theta] \\
    dL/ds_{-1} &= M_0 + d\,A_0, \qquad dL/do_{-1} = S_0

(the gate carries no gradient). :class:`FusedRecurrence` owns this bookkeeping once; a
:class:`Kernels` object supplies the two loops: :class:`TorchKernels` here (plain torch ops, any
device, the portable fallback), numba on CPU and Triton on CUDA in the sibling modules.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, Protocol

import torch
from torch import Tensor

from nmsnn.core.neuron import NeuronModel, NeuronState, RecurrenceOutput
from nmsnn.core.neurons.lif import LIF


class Flat(NamedTuple):
    """Per-neuron parameters flattened to ``[N]`` (``N = B*H``), in the compute dtype."""

    decay: Tensor
    threshold: Tensor
    penalty: Tensor


class ForwardResult(NamedTuple):
    spikes: Tensor  # [T, N] delayed outer
    membrane: Tensor  # [T, N] delayed post-reset inner
    pre: Tensor | None  # [T, N] pre-reset membrane a_t (only when saving for backward)
    inner: Tensor  # [N] final post-reset inner
    outer: Tensor  # [N] final outer


class BackwardResult(NamedTuple):
    current: Tensor  # [T, N]
    decay: Tensor  # [N]
    threshold: Tensor  # [N]
    penalty: Tensor  # [N]
    inner0: Tensor  # [N]
    outer0: Tensor  # [N]


class ForwardJob(NamedTuple):
    """A forward loop's inputs (tensors contiguous, ``[T, N]``/``[N]``). Without ``membranes`` the
    delayed membrane is not written (it is ``None``). With ``into_current`` (and ``save``) the
    saved ``pre`` may be written over ``current`` (each step after reading it), where its dtype
    is the saved state's."""

    current: Tensor
    params: Flat
    inner0: Tensor
    outer0: Tensor
    config: LIF
    save: bool
    membranes: bool = True
    into_current: bool = False


class BackwardJob(NamedTuple):
    """A backward loop's inputs: ``grad_spikes``/``grad_membrane`` are ``None`` when that output
    received no gradient; without ``param_grads`` a kernel may skip the decay/threshold/penalty
    gradients (their values are then unspecified)."""

    pre: Tensor
    params: Flat
    inner0: Tensor
    grad_spikes: Tensor | None
    grad_membrane: Tensor | None
    grad_inner: Tensor
    grad_outer: Tensor
    config: LIF
    param_grads: bool = True


class Kernels(Protocol):
    """The two loops over T that a fused backend provides."""

    name: str

    def forward(self, job: ForwardJob) -> ForwardResult: ...

    def backward(self, job: BackwardJob) -> BackwardResult: ...


class TorchKernels:
    """The loops as plain torch ops on ``[N]`` rows: no autograd graph, any device and dtype."""

    name = "torch"

    def forward(self, job: ForwardJob) -> ForwardResult:
        current, params, inner0, outer0, config, save, membranes, _ = job
        steps = current.shape[0]
        d, th, p = params
        scale, heaviside = config.reset == "scale", config.spike_fn == "heaviside"
        ratio = p / th
        spikes = torch.empty_like(current)
        membrane = torch.empty_like(current) if membranes else None
        # ``into_current`` is not taken: writing rows of the autograd input with torch ops here
        # would be an in-place change autograd tracks (the compiled kernels write raw memory)
        pre = torch.empty_like(current) if save else None
        spikes[0] = outer0
        if membrane is not None:
            membrane[0] = inner0
        s, o = inner0, outer0
        for t in range(steps):
            a = current[t] + d * s
            v = a - th
            o = (v > 0).to(a.dtype) if heaviside else torch.relu(v)
            g = (o > 0).to(a.dtype)
            s = a - ratio * a * g if scale else a - (p + o) * g
            if pre is not None:
                pre[t] = a
            if t + 1 < steps:
                spikes[t + 1] = o
                if membrane is not None:
                    membrane[t + 1] = s
        return ForwardResult(spikes, membrane, pre, s, o)

    def backward(self, job: BackwardJob) -> BackwardResult:
        pre, params, inner0, grad_spikes, grad_membrane, grad_inner, grad_outer, config, _ = job
        steps = pre.shape[0]
        d, th, p = params
        scale, heaviside = config.reset == "scale", config.spike_fn == "heaviside"
        slope = config.surrogate_slope
        ratio = p / th
        grad_current = torch.empty_like(pre)
        gd, gth, gp = (torch.zeros_like(d) for _ in range(3))
        ga = torch.zeros_like(d)
        for t in range(steps - 1, -1, -1):
            a = pre[t]
            v = a - th
            g = (v > 0).to(a.dtype)
            last = t + 1 == steps
            if last:
                gs, go = grad_inner + d * ga, grad_outer
            else:
                gs = d * ga if grad_membrane is None else grad_membrane[t + 1] + d * ga
                go = torch.zeros_like(ga) if grad_spikes is None else grad_spikes[t + 1]
            if not scale:
                go = go - g * gs
            fprime = (1.0 + slope * v.abs()).reciprocal().square() if heaviside else g
            gv = go * fprime
            if scale:
                ga = gs * (1.0 - ratio * g) + gv
                gsag = gs * a * g
                gth += gsag * (p / (th * th)) - gv
                gp -= gsag / th
            else:
                ga = gs + gv
                gth -= gv
                gp -= gs * g
            gd += ga * (inner0 if t == 0 else self._reset(pre[t - 1], th, p, ratio, config))
            grad_current[t] = ga
        g_inner0 = d * ga if grad_membrane is None else grad_membrane[0] + d * ga
        g_outer0 = torch.zeros_like(ga) if grad_spikes is None else grad_spikes[0]
        return BackwardResult(grad_current, gd, gth, gp, g_inner0, g_outer0)

    @staticmethod
    def _reset(a: Tensor, th: Tensor, p: Tensor, ratio: Tensor, config: LIF) -> Tensor:
        """``s`` from the pre-reset ``a`` (recomputed in backward instead of being saved)."""
        v = a - th
        o = (v > 0).to(a.dtype) if config.spike_fn == "heaviside" else torch.relu(v)
        g = (o > 0).to(a.dtype)
        return a - ratio * a * g if config.reset == "scale" else a - (p + o) * g


def _flat_param(value: Tensor | float, batch: int, hidden: int, like: Tensor) -> Tensor:
    value = torch.as_tensor(value, device=like.device)
    return value.detach().to(like.dtype).expand(batch, hidden).reshape(-1).contiguous()


def _reduce_to(grad: Tensor, value: Tensor | float, batch: int, hidden: int) -> Tensor | None:
    """Sum a per-neuron ``[N]`` gradient back to the parameter's own (broadcast) shape and dtype."""
    if not isinstance(value, Tensor):
        return None
    grad = grad.view(batch, hidden)
    grad = grad.sum() if value.dim() == 0 else grad.sum_to_size(value.shape)
    return grad.reshape(value.shape).to(value.dtype)


def bias_grad(grad: Tensor) -> Tensor:
    """The gradient of a Linear's bias from its output's gradient ``grad [R, out]`` (a sum over
    rows). The one definition: :func:`nmsnn.core.layers.linear_grads` and the numba node that
    adds a layer's bias in its loop both form it here, on the same ``[R, out]`` layout."""
    return grad.sum(0)


def flat_inputs(
    current: Tensor, decay: Tensor, threshold: Tensor, penalty: Tensor, inner0: Tensor, outer0: Tensor
) -> tuple[Tensor, Flat, Tensor, Tensor]:
    """``current [T, B, H]`` as ``[T, N]``, the parameters and the state as ``[N]`` (contiguous)."""
    steps, batch, hidden = current.shape
    cur = current.reshape(steps, batch * hidden).contiguous()
    params = Flat(*(_flat_param(x, batch, hidden, cur) for x in (decay, threshold, penalty)))
    s0 = inner0.to(cur.dtype).reshape(-1).contiguous()
    o0 = outer0.to(cur.dtype).reshape(-1).contiguous()
    return cur, params, s0, o0


def flat_grads(
    pre: Tensor, steps: int, *grads: Tensor | None
) -> tuple[Tensor | None, Tensor | None, Tensor, Tensor]:
    """The four output gradients (spikes, membrane, final inner, final outer) flattened like
    ``pre``; an absent ``[T, N]`` gradient stays ``None``, an absent state gradient is zeros."""
    n = pre.shape[1]

    def flat(g: Tensor | None, rows: int | None) -> Tensor | None:
        if g is None:
            return None if rows else pre.new_zeros(n)
        g = g.to(pre.dtype)
        return (g.reshape(rows, n) if rows else g.reshape(n)).contiguous()

    g_spikes, g_membrane, g_inner, g_outer = grads
    return flat(g_spikes, steps), flat(g_membrane, steps), flat(g_inner, None), flat(g_outer, None)


def input_grads(ctx: Any, grads: BackwardResult, need: tuple[bool, ...]) -> tuple[Tensor | None, ...]:
    """Gradients of ``current, decay, threshold, penalty, inner0, outer0`` in their own shapes
    and dtypes (``ctx`` holds ``shape``, ``values`` and ``dtypes`` from the forward pass)."""
    steps, batch, hidden = ctx.shape
    current_dtype, inner_dtype, outer_dtype = ctx.dtypes
    decay, threshold, penalty = ctx.values
    return (
        grads.current.view(steps, batch, hidden).to(current_dtype) if need[0] else None,
        _reduce_to(grads.decay, decay, batch, hidden) if need[1] else None,
        _reduce_to(grads.threshold, threshold, batch, hidden) if need[2] else None,
        _reduce_to(grads.penalty, penalty, batch, hidden) if need[3] else None,
        grads.inner0.view(batch, hidden).to(inner_dtype) if need[4] else None,
        grads.outer0.view(batch, hidden).to(outer_dtype) if need[5] else None,
    )


def node_outputs(out: ForwardResult, shape: tuple[int, int, int], record: bool) -> tuple[Tensor, ...]:
    """An autograd node's outputs in the layer's shapes: spikes, membrane (without ``record`` an
    empty placeholder: a node's outputs must be tensors), final inner and outer state."""
    _, batch, hidden = shape
    membrane = out.membrane.view(shape) if record else out.spikes.new_empty(0)
    return out.spikes.view(shape), membrane, out.inner.view(batch, hidden), out.outer.view(batch, hidden)


class FusedRecurrence(torch.autograd.Function):
    """Autograd node around a :class:`Kernels` object; saves ``a_t`` and the ``[N]`` parameters."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        current: Tensor,
        decay: Tensor,
        threshold: Tensor,
        penalty: Tensor,
        inner0: Tensor,
        outer0: Tensor,
        kernels: Kernels,
        config: LIF,
        record: bool = True,
        consume: bool = False,
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        steps, batch, hidden = current.shape
        cur, params, s0, o0 = flat_inputs(current, decay, threshold, penalty, inner0, outer0)
        out = kernels.forward(ForwardJob(cur, params, s0, o0, config, True, record, consume))
        ctx.save_for_backward(out.pre, *params, s0)
        ctx.set_materialize_grads(False)  # an unused [T, N] output costs no zero-filled gradient
        ctx.kernels, ctx.config, ctx.shape = kernels, config, (steps, batch, hidden)
        ctx.values = (decay, threshold, penalty)
        ctx.dtypes = (current.dtype, inner0.dtype, outer0.dtype)
        return node_outputs(out, ctx.shape, record)

    @staticmethod
    def backward(ctx: Any, g_spikes: Tensor, g_membrane: Tensor, g_inner: Tensor, g_outer: Tensor):  # type: ignore[override]
        if all(g is None for g in (g_spikes, g_membrane, g_inner, g_outer)):
            return (None,) * 10
        pre, d, th, p, s0 = ctx.saved_tensors
        need = ctx.needs_input_grad
        grads = ctx.kernels.backward(
            BackwardJob(
                pre, Flat(d, th, p), s0, *flat_grads(pre, ctx.shape[0], g_spikes, g_membrane, g_inner, g_outer),
                ctx.config, any(need[1:4]),
            )
        )  # fmt: skip
        return (*input_grads(ctx, grads, need), None, None, None, None)


def fused_apply(
    kernels: Kernels,
    current: Tensor,
    decay: Tensor,
    threshold: Tensor,
    penalty: Tensor,
    config: LIF,
    state: NeuronState | None = None,
    record: bool = True,
    consume: bool = False,
) -> RecurrenceOutput:
    """Run ``kernels`` with the signature of :func:`~nmsnn.core.neuron.reference_recurrence`,
    plus two hints (see :data:`RECURRENCE_HINTS`): without ``record`` the membrane is not
    written (``None``); with ``consume`` the caller hands over ``current`` (nothing else reads
    it), and in training the saved pre-reset membrane may be written over it."""
    steps, batch, hidden = current.shape
    if state is None:
        zeros = current.new_zeros(batch, hidden)
        state = NeuronState(zeros, zeros)
    inputs = (current, decay, threshold, penalty, state.inner, state.outer)
    if torch.is_grad_enabled() and any(isinstance(x, Tensor) and x.requires_grad for x in inputs):
        spikes, membrane, inner, outer = FusedRecurrence.apply(*inputs, kernels, config, record, consume)
        return RecurrenceOutput(spikes, membrane if record else None, NeuronState(inner, outer))
    # inference: no autograd node and nothing saved
    cur, params, s0, o0 = flat_inputs(current, decay, threshold, penalty, state.inner, state.outer)
    out = kernels.forward(ForwardJob(cur, params, s0, o0, config, False, record))
    shape = (batch, hidden)
    return RecurrenceOutput(
        out.spikes.view(steps, batch, hidden),
        None if out.membrane is None else out.membrane.view(steps, batch, hidden),
        NeuronState(out.inner.view(shape), out.outer.view(shape)),
    )


RECURRENCE_HINTS = ("record", "consume")
"""Keyword arguments every backend of :mod:`nmsnn.core.backends` accepts beyond
:func:`~nmsnn.core.neuron.reference_recurrence`'s signature: ``record=False`` (the membrane is
not needed: not written, returned as ``None``) and ``consume=True`` (the current may be
overwritten)."""


TORCH_KERNELS = TorchKernels()


def fused_recurrence(
    current: Tensor,
    values: Sequence[Tensor],
    model: NeuronModel,
    state: Any = None,
    record: bool = True,
    consume: bool = False,
) -> RecurrenceOutput:
    """The ``fused`` backend (any device): :class:`FusedRecurrence` with plain torch loops for
    ``lif``, the :mod:`~nmsnn.core.backends.stepwise` node derived from the step for any other
    model."""
    if type(model) is LIF:
        return fused_apply(TORCH_KERNELS, current, *values, model, state, record, consume)
    from nmsnn.core.backends.stepwise import stepwise_recurrence

    return stepwise_recurrence(current, values, model, state, record)


def kernel_backend(
    kernels: Kernels, check_device: Callable[[Tensor], None]
) -> Callable[..., RecurrenceOutput]:
    """A backend with :func:`fused_recurrence`'s signature that runs ``kernels`` (written for
    ``lif``) after ``check_device`` accepted the current's device."""

    def recurrence(current, values, model, state=None, record=True, consume=False) -> RecurrenceOutput:
        check_device(current)
        return fused_apply(kernels, current, *values, model, state, record, consume)

    recurrence.__doc__ = (
        f"The ``{kernels.name}`` backend; ``record``/``consume``: see :data:`RECURRENCE_HINTS`."
    )
    return recurrence
