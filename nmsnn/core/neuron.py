r"""What a neuron model is, and the reference recurrence that walks any model over T steps.

A neuron model is a frozen dataclass that subclasses :class:`NeuronModel`. Its fields are its
settings, each declared once with its default and valid range:

* :func:`param`: a number per layer that enters the math as a tensor (``decay``, ``threshold``,
  ...): learnable with ``learnable=true``, and one of the values population members may differ in;
* :func:`number`: a fixed number (``surrogate_slope``);
* :func:`option`: one of a few names (``spike_fn``, ``reset``); an option may name the value
  ``auto`` picks for each task (``by_task``): configs then say ``auto`` and the model is built
  with the task's value (:meth:`NeuronModel.resolve`).

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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

import torch
from torch import Tensor

from nmsnn.core.settings import (
    AUTO,
    Range,
    check_fields,
    check_number,
    number,
    option,
    param,
    resolve_auto,
    settings_of,
)
from nmsnn.errors import ConfigError

__all__ = [  # the declaration helpers live in nmsnn.core.settings; a model file imports them from here
    "AUTO", "NeuronModel", "NeuronState", "Range", "RecurrenceOutput", "check_number", "number",
    "option", "param", "reference_recurrence", "zero_state",
]  # fmt: skip


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
        check_fields(self)
        if not isinstance(self.learnable, bool):
            raise ConfigError(f"learnable must be true or false, got {self.learnable!r}.")

    def step(self, current: Tensor, state: Any, values: Sequence[Tensor]) -> Any:
        """One time step: the state after step ``t`` from its input current ``[B, H]``."""
        raise NotImplementedError

    @classmethod
    def param_names(cls) -> tuple[str, ...]:
        """The :func:`param` fields, in the order :meth:`step` receives them."""
        return tuple(_param_bounds(cls))

    @classmethod
    def settings(cls) -> dict[str, Any]:
        """Every setting and its default (``kind`` first): what a config file of this model holds
        (``auto`` for an option that picks its value per task)."""
        return {"kind": cls.kind, **settings_of(cls)}

    @classmethod
    def resolve(cls, settings: Mapping[str, Any], task: str | None) -> dict[str, Any]:
        """``settings`` with every ``auto`` option replaced by its value for ``task`` (``None``:
        the option's plain default); a list (one value per layer) is resolved value by value."""
        return resolve_auto(cls, settings, task)

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
