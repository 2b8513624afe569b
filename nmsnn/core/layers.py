r"""Spiking layers, the network that stacks them, and the time-averaging readout head.

Tensors are time-major, ``[T, B, features]``. A layer applies its Linear to all T steps at once
(``[T*B, F] @ W``); only the elementwise neuron recurrence walks over T, through the backend
chosen with ``backend``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import replace
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from nmsnn.core.backends import LayerCall, check_supports, get_backend, run_layer
from nmsnn.core.backends.fused import bias_grad
from nmsnn.core.encoders import Encoder
from nmsnn.core.ensemble import GroupedLinear, block_weights, check_members
from nmsnn.core.neuron import NeuronModel, RecurrenceOutput
from nmsnn.core.neurons import DEFAULT_KIND, LIF, neuron_model
from nmsnn.errors import ConfigError

READOUTS = ("integrator", "membrane", "spikes")
REDUCTIONS = ("mean", "sum")
INITS = ("calibrated", "torch")


class _TimeLinear(torch.autograd.Function):
    """``x @ W.T + b`` for ``x [T*B, in]``, whose backward picks the faster layout for ``dW``.

    For ``T*B`` rows and few features, ``dW = g.T @ x`` and ``dW = (x.T @ g).T`` are the same
    numbers but not the same speed, and which is faster depends on whether the layer widens or
    narrows (``experiments/kernel_design.md``), so the layout follows the shape. ``dx`` is
    computed only when ``x`` needs it.
    """

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:  # type: ignore[override]
        out = torch.addmm(bias, x, weight.t()) if bias is not None else x @ weight.t()
        # under autocast the product ran in a lower precision: the backward (which autocast
        # does not cover) uses the operands in that dtype too; autograd casts dW and db back
        ctx.save_for_backward(x.to(out.dtype), weight.to(out.dtype))
        ctx.has_bias = bias is not None
        return out

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        x, weight = ctx.saved_tensors
        need_x, need_w, need_b = ctx.needs_input_grad
        return linear_grads(x, weight, grad, need_x, need_w, need_b and ctx.has_bias)


def linear_grads(
    x: Tensor, weight: Tensor, grad: Tensor, need_x: bool, need_w: bool, need_b: bool
) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
    """Gradients of ``x [R, in] @ weight.T + bias`` for the output gradient ``grad [R, out]``:
    input, weight (in the faster layout for the shape, see :class:`_TimeLinear`) and bias.
    The one definition of these products (a population computes each member's with it)."""
    grad_x = grad @ weight if need_x else None
    grad_w = None
    if need_w:
        grad_w = (x.t() @ grad).t() if weight.shape[1] < weight.shape[0] else grad.t() @ x
    grad_b = bias_grad(grad) if need_b else None
    return grad_x, grad_w, grad_b


def time_linear(x: Tensor, linear: nn.Linear, with_bias: bool = True) -> Tensor:
    """``linear`` applied to the rows of ``x [T*B, in]`` (through :class:`_TimeLinear` when
    autograd records: inference, tracing and export see a plain ``F.linear``). Without
    ``with_bias`` the bias is left out (``x @ W.T``: the caller adds it elsewhere)."""
    bias = linear.bias if with_bias else None
    if torch.is_grad_enabled() and (linear.weight.requires_grad or x.requires_grad):
        return _TimeLinear.apply(x, linear.weight, bias)
    return torch.nn.functional.linear(x, linear.weight, bias)


class SpikingLayer(nn.Module):
    """``Linear(in, out)`` followed by the neuron recurrence of ``neuron`` (any neuron model).

    With ``groups`` K > 1 the Linear is a :class:`~nmsnn.core.ensemble.GroupedLinear` (K
    independent blocks: the layer of an ensemble of K members).

    The model's :func:`~nmsnn.core.neuron.param` values (LIF: ``decay``, ``threshold``,
    ``penalty``) are per-layer scalars, stored as parameters when ``neuron.learnable`` and as
    buffers otherwise. Learnable values are clamped to their valid ranges in the forward pass.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        neuron: NeuronModel,
        backend: str = "auto",
        groups: int = 1,
    ) -> None:
        super().__init__()
        self.linear = (
            nn.Linear(in_features, out_features)
            if groups == 1
            else GroupedLinear(in_features, out_features, groups)
        )
        self.neuron = neuron
        self.backend = backend
        self._recurrence = get_backend(backend)
        check_supports(backend, neuron)
        for name in neuron.param_names():
            value = torch.tensor(float(getattr(neuron, name)))
            if neuron.learnable and math.isfinite(float(value)):
                self.register_parameter(name, nn.Parameter(value))
            else:
                self.register_buffer(name, value)

    @property
    def groups(self) -> int:
        """Ensemble members this layer's Linear keeps apart (1: an ordinary Linear)."""
        return getattr(self.linear, "groups", 1)

    @property
    def fan_out(self) -> int:
        """How many of this layer's neurons one input value reaches (its member's share)."""
        return self.linear.out_features // self.groups

    @property
    def synapses(self) -> int:
        """Weights that connect an input to a neuron (a grouped layer's blocks only)."""
        return self.linear.in_features * self.linear.out_features // self.groups

    @torch.no_grad()
    def init_calibrated_(self) -> None:
        """He-normal weights (per member block) and zero biases, before calibration rescales them."""
        for weight in block_weights(self.linear):
            nn.init.kaiming_normal_(weight, nonlinearity="relu")
        nn.init.zeros_(self.linear.bias)

    @torch.no_grad()
    def scale_weights_(self, factor: float) -> None:
        for weight in block_weights(self.linear):
            weight.mul_(factor)

    @property
    def fires(self) -> bool:
        """False for a non-firing leaky integrator (infinite threshold)."""
        return math.isfinite(float(self.threshold))

    def neuron_values(self) -> tuple[Tensor, ...]:
        """The model's parameter values (in its order), clamped to their valid ranges."""
        names = self.neuron.param_names()
        if not self.neuron.learnable:
            return tuple(getattr(self, name) for name in names)
        return tuple(self.neuron.clamp(name, getattr(self, name)) for name in names)

    def forward(self, x: Tensor, state: Any = None) -> RecurrenceOutput:
        """This layer alone: ``x [T, B, in]`` -> delayed spikes and membrane ``[T, B, out]`` and
        the final state (a network runs its layers through :meth:`call` instead)."""
        return self._recurrence(self.current(x), self.neuron_values(), self.neuron, state)

    def current(self, x: Tensor, with_bias: bool = True) -> Tensor:
        """The input current ``W x_t + b`` for all steps at once: ``[T, B, in] -> [T, B, out]``
        (``W x_t`` without ``with_bias``)."""
        steps, batch = x.shape[:2]
        flat = x.reshape(steps * batch, -1)
        return time_linear(flat, self.linear, with_bias).reshape(steps, batch, -1)

    def call(
        self, x: Tensor, state: Any, record: bool, following: nn.Linear | None, given: Tensor | None
    ) -> LayerCall:
        """This layer's work for :func:`~nmsnn.core.backends.run_layer`: its input ``x``, its
        Linear (without the bias when the numba node adds it), its neuron, and the next layer's
        Linear (``following``) that a backend may fold in."""
        return LayerCall(
            x=x,
            linear=lambda for_node: self.current(x, with_bias=not for_node),
            recurrence=self._recurrence,
            bias=self.linear.bias,
            values=self.neuron_values(),
            model=self.neuron,
            state=state,
            record=record,
            following=None if following is None else (following.weight, following.bias),
            given=given,
        )

    def extra_repr(self) -> str:
        settings = (
            f"{name}={getattr(self.neuron, name)}" for name in self.neuron.settings() if name != "kind"
        )
        return f"neuron={self.neuron.kind}, {', '.join(settings)}, backend={self.backend}"


class NetworkOutput(NamedTuple):
    """What a forward pass computes: the readout trace ``[T, B, O]`` and every layer's activity."""

    trace: Tensor
    layers: list[RecurrenceOutput]


class SpikingNetwork(nn.Module):
    """A stack of spiking layers ``sizes[0] -> sizes[1] -> ... -> sizes[-1]``.

    The last layer is read out according to ``readout``:

    * ``integrator``: it does not fire (a leaky integrator); its delayed membrane is the trace;
    * ``membrane``: it fires and resets like the others; its delayed membrane is the trace (seed);
    * ``spikes``: it fires; its delayed spikes are the trace (rate code).

    ``ensemble`` K > 1 makes it K networks of these sizes side by side (one layer of ``K*H``
    neurons per layer, block-diagonal after the first: see :mod:`nmsnn.core.ensemble`); the
    trace is then ``[T, B, K*O]``, member k's outputs in block k.

    ``record_hidden`` (default ``True``; see :meth:`hidden_activity`): when ``False``, hidden
    layers' :class:`RecurrenceOutput` holds ``None`` for the membrane, which the fused backends
    do not write (``reference`` computes it and drops it at once). A training step that only
    needs the loss sets it. Each layer runs through :func:`~nmsnn.core.backends.run_layer`
    (where numba trains, its node adds the layer's bias and folds a small next layer in).
    """

    def __init__(
        self,
        sizes: Sequence[int],
        neurons: Sequence[NeuronModel],
        readout: str = "integrator",
        backend: str = "auto",
        init: str = "calibrated",
        ensemble: int = 1,
    ) -> None:
        super().__init__()
        self.ensemble = k = check_members(ensemble)
        if len(sizes) < 2 or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in sizes):
            raise ConfigError(f"layer sizes must be at least two positive integers, got {list(sizes)}.")
        if len(neurons) != len(sizes) - 1:
            raise ConfigError(f"need {len(sizes) - 1} neuron configs (one per layer), got {len(neurons)}.")
        if readout not in READOUTS:
            raise ConfigError(f"readout={readout!r} is not a readout; use one of {READOUTS}.")
        if init not in INITS:
            raise ConfigError(f"init={init!r} is not an initialization; use one of {INITS}.")
        neurons = list(neurons)
        if readout == "integrator":
            neurons[-1] = integrator(neurons[-1])
        self.readout = readout
        inputs = [sizes[0], *(k * s for s in sizes[1:-1])]  # the first layer reads shared features
        self.layers = nn.ModuleList(
            SpikingLayer(i, k * o, n, backend, groups=1 if d == 0 else k)
            for d, (i, o, n) in enumerate(zip(inputs, sizes[1:], neurons))
        )
        self.init = init
        self.record_hidden = True
        if init == "calibrated":
            for layer in self.layers:
                layer.init_calibrated_()

    @contextmanager
    def hidden_activity(self, record: bool) -> Iterator[None]:
        """Set :attr:`record_hidden` inside a ``with`` block (restored after it)."""
        previous, self.record_hidden = self.record_hidden, record
        try:
            yield
        finally:
            self.record_hidden = previous

    def forward(self, x: Tensor, states: Sequence[Any] | None = None) -> NetworkOutput:
        """``x [T, B, F]`` -> readout trace ``[T, B, O]`` and each layer's recurrence output."""
        outputs: list[RecurrenceOutput] = []
        current = None  # a layer's input current, when the previous layer's node formed it
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            state = None if states is None else states[i]
            following = self.layers[i + 1].linear if i < last else None
            call = layer.call(x, state, self.record_hidden or i == last, following, current)
            out, current = run_layer(layer.backend, call)
            outputs.append(out)
            x = out.spikes
        trace = outputs[-1].spikes if self.readout == "spikes" else outputs[-1].membrane
        return NetworkOutput(trace, outputs)


def integrator(neuron: NeuronModel) -> LIF:
    """The ``integrator`` readout's neuron: a LIF that never fires, with ``neuron``'s decay (a
    leaky integrator, whatever the hidden layers' model)."""
    lif = neuron if type(neuron) is LIF else LIF(decay=neuron.decay)  # type: ignore[attr-defined]
    return replace(lif, threshold=math.inf, penalty=0.0, learnable=False)


class TimeAverageHead(nn.Module):
    """Reduce a trace ``[T, B, O]`` over the steps ``t >= burn_in`` to ``[B, O]`` (mean or sum)."""

    def __init__(self, burn_in: int = 0, reduce: str = "mean") -> None:
        super().__init__()
        if isinstance(burn_in, bool) or not isinstance(burn_in, int) or burn_in < 0:
            raise ConfigError(f"burn_in must be an integer >= 0, got {burn_in!r}.")
        if reduce not in REDUCTIONS:
            raise ConfigError(f"reduce={reduce!r} is not a reduction; use one of {REDUCTIONS}.")
        self.burn_in = burn_in
        self.reduce = reduce

    def forward(self, trace: Tensor) -> Tensor:
        if self.burn_in >= trace.shape[0]:
            raise ConfigError(f"burn_in={self.burn_in} leaves no time step to average (T={trace.shape[0]}).")
        kept = trace[self.burn_in :]
        return kept.mean(0) if self.reduce == "mean" else kept.sum(0)

    def extra_repr(self) -> str:
        return f"burn_in={self.burn_in}, reduce={self.reduce}"


class ModelOutput(NamedTuple):
    """A model's prediction ``[B, O]`` (logits or scaled values; an ensemble's: ``[B, K, O]``,
    one row per member) and the network's activity."""

    prediction: Tensor
    network: NetworkOutput


def neuron_configs(neuron: Mapping[str, Any], n_layers: int, task: str | None = None) -> list[NeuronModel]:
    """One neuron model per layer from a mapping of settings whose values are scalars or lists.

    ``kind`` names the model (default ``lif``); a list gives one value per spiking layer
    (``decay: [0.9, 0.8]``); a scalar applies to all; an option set to ``auto`` takes the value
    the model declares for ``task`` (:meth:`~nmsnn.core.neuron.NeuronModel.resolve`).
    """
    neuron = dict(neuron)
    model = neuron_model(neuron.pop("kind", DEFAULT_KIND))
    neuron = model.resolve(neuron, task)
    known = model.settings()
    unknown = set(neuron) - set(known)
    if unknown:
        raise ConfigError(
            f"unknown neuron setting(s) {sorted(unknown)} for model.neuron.kind={model.kind!r}; "
            f"known: {sorted(known)} (to switch models, use model/neuron=<kind>: it brings that "
            "model's own settings)."
        )
    per_layer: list[dict[str, Any]] = [{} for _ in range(n_layers)]
    for key, value in neuron.items():
        if isinstance(value, (list, tuple)):
            if len(value) != n_layers:
                raise ConfigError(
                    f"neuron.{key} has {len(value)} values but the network has {n_layers} layers; "
                    "give one value or one per layer."
                )
            for d, v in zip(per_layer, value):
                d[key] = v
        else:
            for d in per_layer:
                d[key] = value
    configs = []
    for i, d in enumerate(per_layer):
        try:
            configs.append(model(**d))
        except ConfigError as err:
            raise ConfigError(f"layer {i + 1}: {err}") from None
    return configs


class SpikingModel(nn.Module):
    """Encoder -> spiking network -> time-averaging head: rows ``[B, F]`` to outputs ``[B, O]``."""

    def __init__(self, encoder: Encoder, network: SpikingNetwork, head: TimeAverageHead) -> None:
        super().__init__()
        if head.burn_in >= encoder.time_steps:
            raise ConfigError(f"burn_in={head.burn_in} must be smaller than time_steps={encoder.time_steps}.")
        depth = len(network.layers)  # each layer passes its input on one time step later
        if encoder.time_steps <= depth:
            raise ConfigError(
                f"time_steps={encoder.time_steps} is too few for {depth} spiking layer(s): each layer "
                f"passes its input on one step later, so the input reaches the output only at step "
                f"{depth + 1} and every prediction would be the same; use time_steps > {depth} "
                "(the default is 16)."
            )
        self.encoder = encoder
        self.network = network
        self.head = head
        if network.init == "calibrated":
            calibrate_(self)

    def forward(self, x: Tensor) -> ModelOutput:
        """``x`` is a batch of rows ``[B, F]`` or an already encoded train ``[T, B, F]``."""
        if x.dim() == 2:
            x = self.encoder(x)
        net = self.network(x)
        return ModelOutput(self.prediction(net.trace), net)

    def prediction(self, trace: Tensor) -> Tensor:
        """The readout trace ``[T, B, K*O]`` reduced over time: ``[B, O]``, or ``[B, K, O]`` for
        an ensemble of K members."""
        out = self.head(trace)
        k = self.network.ensemble
        return out if k == 1 else out.view(out.shape[0], k, -1)


@torch.no_grad()
def calibrate_(model: SpikingModel, gain: float = 1.0, rows: int = 256, seed: int = 0) -> None:
    r"""Scale each layer's weights so that every layer fires on standardized input, at any depth.

    Standard Linear init lets deep stacks fall silent (a layer's graded spikes are sparse and
    small, so the next layer's current never reaches threshold). Here ``rows`` synthetic rows
    :math:`x \sim \mathcal{N}(0, I)` are encoded (deterministically) and passed through the
    network layer by layer; each layer's He-initialized weights are rescaled so that the standard
    deviation of its input current is ``gain * threshold`` (``gain * (1 - decay)`` for a
    non-firing integrator, whose membrane then has unit scale), and its bias is set to zero.
    Uses a private random generator: the global RNG is untouched.
    """
    generator = torch.Generator().manual_seed(seed)
    param = next(model.parameters())
    features = model.network.layers[0].linear.in_features // model.encoder.expansion
    x = torch.randn(rows, features, generator=generator)
    was_training = model.training
    model.eval()
    inputs = model.encoder(x.to(param.device, param.dtype))
    for layer in model.network.layers:
        steps, batch = inputs.shape[:2]
        current = layer.linear(inputs.reshape(steps * batch, -1))
        std = float(current.std())
        if layer.fires:
            target = gain * float(layer.threshold)
        else:
            target = gain * (1.0 - float(layer.decay)) if float(layer.decay) < 1 else gain
        if std > 0:
            layer.scale_weights_(target / std)
        layer.linear.bias.zero_()
        inputs = layer(inputs).spikes
    model.train(was_training)
