"""The neuron models nmsnn knows, by name (``model.neuron.kind``).

``kind`` is a registered name (``lif``, ``alif``, ``lif_hard``, or one added with
:func:`register`) or the import path of a :class:`~nmsnn.core.neuron.NeuronModel` subclass
(``my_package.neurons.QuadraticLIF``), imported when first asked for.
"""

from __future__ import annotations

import importlib

from nmsnn.core.neuron import NeuronModel
from nmsnn.core.neurons.alif import ALIF
from nmsnn.core.neurons.lif import LIF
from nmsnn.core.neurons.lif_hard import HardResetLIF
from nmsnn.core.settings import setting_notes, yaml_value
from nmsnn.errors import ConfigError

NEURON_MODELS: dict[str, type[NeuronModel]] = {m.kind: m for m in (LIF, ALIF, HardResetLIF)}
DEFAULT_KIND = LIF.kind


def register(model: type[NeuronModel]) -> type[NeuronModel]:
    """Make ``model`` known by its ``kind`` (usable as a class decorator)."""
    NEURON_MODELS[model.kind] = model
    return model


def neuron_model(kind: str) -> type[NeuronModel]:
    """The model class named ``kind`` (see the module docstring)."""
    if not isinstance(kind, str):
        raise ConfigError(f"model.neuron.kind must be a name, got {kind!r}.")
    if kind in NEURON_MODELS:
        return NEURON_MODELS[kind]
    known = ", ".join(NEURON_MODELS)
    if "." not in kind:
        raise ConfigError(
            f"model.neuron.kind={kind!r} is not a neuron model; use one of {known}, "
            "or the import path of a NeuronModel class (my_package.module.MyNeuron)."
        )
    module, _, name = kind.rpartition(".")
    try:
        found = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as err:
        raise ConfigError(f"model.neuron.kind={kind!r} cannot be imported: {err}") from None
    if not (isinstance(found, type) and issubclass(found, NeuronModel)):
        raise ConfigError(f"model.neuron.kind={kind!r} is not a NeuronModel subclass.")
    return found


def config_text(model: type[NeuronModel]) -> str:
    """The Hydra config file of ``model`` (``conf/model/neuron/<kind>.yaml``), written from its
    fields: every setting with its default, valid range and meaning."""
    lines = [
        f"# The {model.kind} neuron ({model.__module__}.{model.__qualname__}), written from its fields by",
        "# nmsnn.core.neurons.config_text: every setting, its default and valid range.",
        f"kind: {model.kind}",
    ]
    for name, default, note in setting_notes(model):
        lines.append(f"{f'{name}: {yaml_value(default)}':<24} # {note}")
    return "\n".join(lines) + "\n"
