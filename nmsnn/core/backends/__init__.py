"""Implementations of the multi-step recurrence behind one switch.

Every backend has the signature of :func:`nmsnn.core.neuron.reference_recurrence` and is tested
against it:

* ``reference``: the plain loop over T with autograd recording every step (source of truth);
  any neuron model;
* ``fused``: one custom autograd node per layer, any device and any neuron model: for ``lif``
  plain torch loops with a hand-derived backward that save only the pre-reset membrane, for
  every other model the :mod:`~nmsnn.core.backends.stepwise` node derived from its ``step``;
* ``numba``: the same node with both loops compiled by numba, parallel over neurons, zero-copy on
  the tensors' memory (CPU; optional extra ``nmsnn[fast]``);
* ``triton``: the same node with Triton kernels, one program per block of neurons walking T
  (CUDA, fp32/bf16/fp16; optional extra ``nmsnn[cuda]``; runs on CPU tensors only under
  ``TRITON_INTERPRET=1``, for testing);
* ``auto``: picks per call from the tensors' device: CUDA -> triton, CPU -> numba, falling back
  to ``fused`` with a logged reason when the faster one is not installed, fails, or does not run
  the layer's neuron model (:func:`supports`: the compiled kernels are written for ``lif``).

Every backend also takes the hints ``record`` and ``consume``
(:data:`~nmsnn.core.backends.fused.RECURRENCE_HINTS`): a training step that does not need a
hidden layer's membrane does not have it written, and a layer's freshly formed current is
overwritten with the saved pre-reset membrane instead of a second ``[T, B, H]`` buffer
(``reference`` computes the membrane anyway and drops it, and consumes nothing).

Networks run their layers through :func:`run_layer`, one layer at a time: the backend's
recurrence on the layer's fresh current, or, for numba in training, its node with the layer's
bias and a small next layer folded in (:mod:`~nmsnn.core.backends.numba_layer`).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from torch import Tensor

from nmsnn.core.backends.fused import fused_recurrence
from nmsnn.core.neuron import NeuronModel, RecurrenceOutput, reference_recurrence
from nmsnn.core.neurons.lif import LIF
from nmsnn.errors import ConfigError

log = logging.getLogger(__name__)

Recurrence = Callable[..., RecurrenceOutput]

INSTALL_HINTS = {"numba": "pip install 'nmsnn[fast]'", "triton": "pip install 'nmsnn[cuda]'"}


def _numba_recurrence(*args, **kwargs) -> RecurrenceOutput:
    from nmsnn.core.backends.numba_cpu import numba_recurrence

    return numba_recurrence(*args, **kwargs)


def _triton_recurrence(*args, **kwargs) -> RecurrenceOutput:
    from nmsnn.core.backends.triton_cuda import triton_recurrence

    return triton_recurrence(*args, **kwargs)


def _reference_recurrence(current, values, model, state=None, record=True, consume=False) -> RecurrenceOutput:
    """:func:`~nmsnn.core.neuron.reference_recurrence` with the hints' signature (it consumes
    nothing, and drops the membrane it computed without ``record``)."""
    out = reference_recurrence(current, values, model, state)
    return out if record else out._replace(membrane=None)


BACKENDS: dict[str, Recurrence] = {
    "reference": _reference_recurrence,
    "fused": fused_recurrence,
    "numba": _numba_recurrence,
    "triton": _triton_recurrence,
}


# the backends whose kernels are written for particular models (the others run any model)
RUNS_ONLY: dict[str, tuple[type[NeuronModel], ...]] = {"numba": (LIF,), "triton": (LIF,)}


def supports(backend: str, model: NeuronModel) -> bool:
    """Whether ``backend`` runs ``model`` (a subclass that changes a model's step is another model)."""
    return backend not in RUNS_ONLY or type(model) in RUNS_ONLY[backend]


def check_supports(backend: str, model: NeuronModel) -> None:
    """Raise :class:`ConfigError` when a backend asked for by name cannot run ``model``."""
    if not supports(backend, model):
        kinds = ", ".join(m.kind for m in RUNS_ONLY[backend])
        raise ConfigError(
            f"backend={backend!r} runs the {kinds} neuron only (its kernels are written for it), "
            f"not model.neuron.kind={model.kind!r}; use backend=auto or fused (derived from the "
            "model's step, any device) or reference."
        )


def installed(name: str) -> bool:
    """Whether the optional package a backend needs (``numba``, ``triton``) can be imported."""
    return name not in INSTALL_HINTS or importlib.util.find_spec(name) is not None


def triton_interpreted() -> bool:
    """Whether Triton kernels run in its CPU interpreter (``TRITON_INTERPRET=1``)."""
    return os.environ.get("TRITON_INTERPRET", "0").lower() in ("1", "true", "on", "yes")


def triton_runs_on_cpu() -> bool:
    """Whether Triton kernels can run on CPU tensors in this process (its interpreter).

    Needs ``TRITON_INTERPRET=1`` *before* triton is first imported: triton decorates its own
    language functions at import time (and importing lightning or ``torch._dynamo`` imports it).
    """
    if not (installed("triton") and triton_interpreted()):
        return False
    if "triton" not in sys.modules:
        return True
    from triton.language import standard
    from triton.runtime.interpreter import InterpretedFunction

    return isinstance(standard.zeros, InterpretedFunction)


def available_backends() -> tuple[str, ...]:
    """Names accepted by :func:`get_backend` here (besides ``auto``): those whose package imports."""
    return tuple(name for name in BACKENDS if installed(name))


def cpu_backends() -> tuple[str, ...]:
    """Available backends that run on CPU tensors (``triton`` only in its interpreter)."""
    return tuple(n for n in available_backends() if n != "triton" or triton_runs_on_cpu())


def get_backend(name: str) -> Recurrence:
    """Return the recurrence implementation called ``name`` (``auto`` picks the best one per call)."""
    if name == "auto":
        return auto_recurrence
    if name not in BACKENDS:
        raise ConfigError(f"backend={name!r} is not available; choose one of {('auto', *BACKENDS)}.")
    if not installed(name):
        raise ConfigError(
            f"backend={name!r} needs the {name} package, which is not installed; "
            f"install it with `{INSTALL_HINTS[name]}` or use backend=auto."
        )
    return BACKENDS[name]


_AUTO_CHOICE: dict[str, str] = {}


def auto_choice(device_type: str) -> str:
    """The backend ``auto`` uses for tensors on ``device_type`` (``cpu``, ``cuda``, ...)."""
    if device_type not in _AUTO_CHOICE:
        preferred = {"cuda": "triton", "cpu": "numba"}.get(device_type)
        if preferred is None:
            choice, reason = "fused", f"no compiled backend for device type {device_type!r}"
        elif installed(preferred):
            choice, reason = preferred, "fastest for this device"
        else:
            choice = "fused"
            reason = f"{preferred} is not installed ({INSTALL_HINTS[preferred]})"
        _set_auto(device_type, choice, reason)
    return _AUTO_CHOICE[device_type]


def _set_auto(device_type: str, choice: str, reason: str) -> None:
    _AUTO_CHOICE[device_type] = choice
    level = logging.INFO if choice != "fused" or device_type not in ("cpu", "cuda") else logging.WARNING
    log.log(level, "backend=auto on %s uses %r: %s", device_type, choice, reason)


def reset_auto() -> None:
    """Forget ``auto``'s choices and its per-model fallbacks (they are made again, and logged,
    on the next call)."""
    _AUTO_CHOICE.clear()
    _MODEL_FALLBACKS.clear()


def auto_recurrence(
    current: Tensor,
    values: Sequence[Tensor],
    model: NeuronModel,
    state: Any = None,
    record: bool = True,
    consume: bool = False,
) -> RecurrenceOutput:
    """The ``auto`` backend: the best installed backend for ``current``'s device and ``model``.

    If the chosen compiled backend raises on its first use (a failed compilation, a driver
    problem), ``auto`` logs why and uses ``fused`` for that device from then on. Such a failure
    is raised before the kernel runs (compilation, launch), so even under ``consume`` the
    current is still intact for the fallback. A model the compiled kernels do not run uses
    ``fused`` (logged once per model and device).
    """
    device_type = current.device.type
    choice = auto_choice(device_type)
    hints = {"record": record, "consume": consume}
    if choice != "fused" and not supports(choice, model):
        _note_model_fallback(device_type, choice, model)
        choice = "fused"
    if choice == "fused":
        return fused_recurrence(current, values, model, state, **hints)
    try:
        return BACKENDS[choice](current, values, model, state, **hints)
    except Exception as err:  # a compiled backend failing must not stop training
        _set_auto(device_type, "fused", f"{choice} failed ({type(err).__name__}: {err})")
        return fused_recurrence(current, values, model, state, **hints)


_MODEL_FALLBACKS: set[tuple[str, str]] = set()


def _note_model_fallback(device_type: str, choice: str, model: NeuronModel) -> None:
    if (device_type, model.kind) not in _MODEL_FALLBACKS:
        _MODEL_FALLBACKS.add((device_type, model.kind))
        log.info(
            "backend=auto on %s uses 'fused' for the %s neuron: %s's kernels run lif only",
            device_type, model.kind, choice,
        )  # fmt: skip


class LayerCall(NamedTuple):
    """One spiking layer's work in a forward pass, as a network hands it to :func:`run_layer`.

    ``linear(for_node)`` forms the layer's input current ``[T, B', H]`` from its input ``x``
    (``x``'s dtype and device tell whether the numba node applies). With ``for_node=True`` it is
    formed the way the numba node expects: without the bias when ``bias`` is given (the node adds
    it as it reads the current), otherwise with the bias added as a separate sum (rounded as the
    node rounds it). ``recurrence``: the layer's backend, resolved once by :func:`get_backend`.
    ``following``: the next layer's ``(weight, bias)``, which a backend may fold
    into this layer's node; ``given``: this layer's current, when the previous layer's node
    formed it.
    """

    x: Tensor
    linear: Callable[[bool], Tensor]
    recurrence: Recurrence
    bias: Tensor | None
    values: tuple[Tensor, ...]
    model: NeuronModel
    state: Any
    record: bool
    following: tuple[Tensor, Tensor] | None = None
    given: Tensor | None = None


def run_layer(backend: str, call: LayerCall) -> tuple[RecurrenceOutput, Tensor | None]:
    """Run one layer on ``backend``: its recurrence output and, where the backend formed it (a
    folded next layer), the next layer's current (else ``None``). The one runner behind
    :class:`~nmsnn.core.layers.SpikingNetwork` and the population's stacked network: numba's
    node (with its fold) where it applies, the backend's recurrence on the freshly formed
    current otherwise."""
    from nmsnn.core.backends.numba_layer import numba_node_applies, run_numba_layer

    if numba_node_applies(backend, call.x if call.given is None else call.given, call.model):
        return run_numba_layer(backend, call)
    current = call.linear(False) if call.given is None else call.given
    return call.recurrence(
        current, call.values, call.model, call.state, record=call.record, consume=True
    ), None
