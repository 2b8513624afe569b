r"""What a neuron model is, and the reference recurrence that walks any model over T steps.

A neuron model is a frozen dataclass that subclasses :class:`NeuronModel`. Its fields are its
settings, each declared once with its default and valid range:

* :func:`param`: a number per layer that enters the math as a tensor (``decay``, ``threshold``,
  ...): learnable with ``learnable=true``, and one of the values population members may differ in;
* :func:`number`: a fixed number (``surrogate_slope``);
* :func:`option`: one of a few names (``spike_fn``, ``reset``).

Its state is a :class:`~typing.NamedTuple` whose first two fields are ``inner`` (the membrane
after reset) and ``outer`` (the last output, emitted one step later); a model may add more
(an adaptive threshold, a synaptic current). :meth:`NeuronModel.step` is the model's math,
written once in torch: ``step(current, state, values) -> state``, with ``values`` the
:func:`param` tensors in declaration order. Every model has a ``decay`` and a ``threshold``
(calibration and the spike statistics read them; the ``integrator`` readout is a non-firing
LIF with the model's decay).

The layer emits its activity with a one-step delay: output at step ``t`` is the state's
``outer`` before step ``t`` (zeros at step 0), and the recorded membrane is its ``inner``.
:func:`reference_recurrence` is that plain loop, the source of truth every backend is tested
against.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

import torch
from torch import Tensor

from nmsnn.errors import ConfigError


@dataclass(frozen=True)
class Range:
    """A number's valid interval: ``low``/``high`` (``None``: unbounded), closed or open ends, and
    whether it must be finite. ``clamp``: the bounds a learned value is held to in the forward
    pass (``None``: none)."""

    low: float | None = None
    high: float | None = None
    low_closed: bool = True
    high_closed: bool = True
    finite: bool = True
    clamp: tuple[float | None, float | None] | None = None

    def describe(self) -> str:
        """The range as the error message states it: ``in (0, 1]``, ``> 0``, ``a finite number >= 0``."""
        if self.low is not None and self.high is not None:
            opening = "[" if self.low_closed else "("
            closing = "]" if self.high_closed else ")"
            return f"in {opening}{_num(self.low)}, {_num(self.high)}{closing}"
        prefix = "a finite number" if self.finite else ""
        if self.low is not None:
            return f"{prefix} {'>=' if self.low_closed else '>'} {_num(self.low)}".strip()
        if self.high is not None:
            return f"{prefix} {'<=' if self.high_closed else '<'} {_num(self.high)}".strip()
        return prefix or "a number"

    def contains(self, value: float) -> bool:
        if self.finite and not math.isfinite(value):
            return False
        above = self.low is None or (value >= self.low if self.low_closed else value > self.low)
        below = self.high is None or (value <= self.high if self.high_closed else value < self.high)
        return above and below


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def param(default: float, valid: Range, doc: str) -> Any:
    """A per-layer number that the step receives as a tensor (see the module docstring)."""
    return dataclasses.field(default=default, metadata={"kind": "param", "range": valid, "doc": doc})


def number(default: float, valid: Range, doc: str) -> Any:
    """A fixed number of the model (not a tensor, not learnable)."""
    return dataclasses.field(default=default, metadata={"kind": "number", "range": valid, "doc": doc})


def option(default: str, choices: Sequence[str], label: str, doc: str) -> Any:
    """One of ``choices``; ``label`` names what it is in the error message (``a reset mode``)."""
    meta = {"kind": "option", "choices": tuple(choices), "label": label, "doc": doc}
    return dataclasses.field(default=default, metadata=meta)


class NeuronState(NamedTuple):
    """The state every model carries: post-reset membrane and last (not yet emitted) output."""

    inner: Tensor
    outer: Tensor


class RecurrenceOutput(NamedTuple):
    """Delayed activity ``[T, B, H]``, delayed post-reset membrane ``[T, B, H]``, final state."""

    spikes: Tensor
    membrane: Tensor
    state: Any  # the model's state record


@dataclass(frozen=True)
class NeuronModel:
    """Base of every neuron model (see the module docstring).

    Args:
        learnable: train the model's :func:`param` values along with the weights.
    """

    kind: ClassVar[str]
    State: ClassVar[type] = NeuronState
    learnable: bool = False

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value, meta = getattr(self, f.name), f.metadata
            if "range" in meta:
                check_number(f.name, value, meta["range"])
            elif meta.get("kind") == "option" and value not in meta["choices"]:
                raise ConfigError(f"{f.name}={value!r} is not {meta['label']}; use one of {meta['choices']}.")
            elif f.name == "learnable" and not isinstance(value, bool):
                raise ConfigError(f"learnable must be true or false, got {value!r}.")

    def step(self, current: Tensor, state: Any, values: Sequence[Tensor]) -> Any:
        """One time step: the state after step ``t`` from its input current ``[B, H]``."""
        raise NotImplementedError

    @classmethod
    def param_names(cls) -> tuple[str, ...]:
        """The :func:`param` fields, in the order :meth:`step` receives them."""
        return tuple(_param_bounds(cls))

    @classmethod
    def settings(cls) -> dict[str, Any]:
        """Every setting and its default (``kind`` first): what a config file of this model holds."""
        return {"kind": cls.kind, **{f.name: f.default for f in dataclasses.fields(cls)}}

    @classmethod
    def clamp(cls, name: str, value: Tensor) -> Tensor:
        """A learned value held to its declared ``clamp`` bounds (unchanged where there are none)."""
        low, high = _param_bounds(cls)[name]
        return value.clamp(low, high) if low is not None or high is not None else value

    @property
    def fires(self) -> bool:
        """False for a non-firing leaky integrator (infinite threshold)."""
        return math.isfinite(self.threshold)  # type: ignore[attr-defined]


@functools.cache
def _param_bounds(cls: type) -> dict[str, tuple[float | None, float | None]]:
    """Each :func:`param` field of ``cls`` (in order) and its clamp bounds, read once per class
    (a layer asks for them on every forward pass)."""
    return {
        f.name: f.metadata["range"].clamp or (None, None)
        for f in dataclasses.fields(cls)
        if f.metadata.get("kind") == "param"
    }


def check_number(name: str, value: Any, valid: Range) -> None:
    """Raise :class:`ConfigError` unless ``value`` is a number in ``valid``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise ConfigError(f"{name} must be a number, got {value!r}.")
    if not valid.contains(float(value)):
        raise ConfigError(f"{name} must be {valid.describe()}, got {value}.")


def zero_state(model: NeuronModel, like: Tensor) -> Any:
    """The state before step 0: zeros shaped like one step of input current ``[B, H]``."""
    zeros = torch.zeros_like(like)
    return model.State(*(zeros for _ in model.State._fields))


def reference_recurrence(
    current: Tensor, values: Sequence[Tensor], model: NeuronModel, state: Any = None
) -> RecurrenceOutput:
    """The source of truth: walk ``model`` over ``current [T, B, H]`` one step at a time.

    ``values`` are the model's :func:`param` tensors, broadcastable to ``[B, H]`` (scalars or
    per-neuron vectors). ``state`` continues a previous call (streaming); ``None`` starts at zero.
    """
    state = zero_state(model, current[0]) if state is None else state
    spikes, membranes = [], []
    for t in range(current.shape[0]):
        spikes.append(state.outer)
        membranes.append(state.inner)
        state = model.step(current[t], state, values)
    return RecurrenceOutput(torch.stack(spikes), torch.stack(membranes), state)
