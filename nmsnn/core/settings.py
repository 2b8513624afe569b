"""Settings declared once: each setting of a neuron model or an encoder is a dataclass field
made by :func:`param`, :func:`number` or :func:`option`, carrying its default, its valid range
or choices and its meaning. Checks, error messages, the Hydra config files, the estimators'
parameters and the population's variable keys are all read from these declarations.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from nmsnn.errors import ConfigError

AUTO = "auto"  # an option's per-task value (see option's ``by_task``)


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


def number(default: float, valid: Range, doc: str, integer: bool = False) -> Any:
    """A fixed number of the model (not a tensor, not learnable); ``integer``: a whole number."""
    meta = {"kind": "number", "range": valid, "doc": doc, "integer": integer}
    return dataclasses.field(default=default, metadata=meta)


def option(
    default: str, choices: Sequence[str], label: str, doc: str, by_task: Mapping[str, str] | None = None
) -> Any:
    """One of ``choices``; ``label`` names what it is in the error message (``a reset mode``).
    ``by_task``: the value ``auto`` (then the configs' default) picks for each task, e.g.
    ``{"classification": "relu", "regression": "heaviside"}``; ``default`` is the value of a model
    built without a task."""
    meta = {
        "kind": "option",
        "choices": tuple(choices),
        "label": label,
        "doc": doc,
        "by_task": dict(by_task or {}),
    }
    return dataclasses.field(default=default, metadata=meta)


def check_number(name: str, value: Any, valid: Range, integer: bool = False) -> None:
    """Raise :class:`ConfigError` unless ``value`` is a number (``integer``: a whole one) in ``valid``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise ConfigError(f"{name} must be a number, got {value!r}.")
    if integer and not isinstance(value, int):
        raise ConfigError(f"{name} must be a whole number, got {value!r}.")
    if not valid.contains(float(value)):
        whole = "a whole number " if integer else ""
        raise ConfigError(f"{name} must be {whole}{valid.describe()}, got {value}.")


def check_fields(settings: Any) -> None:
    """Raise :class:`ConfigError` for the first field of ``settings`` (a dataclass instance of
    declared fields) whose value is out of its range or not one of its choices."""
    for f in dataclasses.fields(settings):
        value, meta = getattr(settings, f.name), f.metadata
        if "range" in meta:
            check_number(f.name, value, meta["range"], meta.get("integer", False))
        elif meta.get("kind") == "option" and value not in meta["choices"]:
            if value == AUTO and meta["by_task"]:
                raise ConfigError(
                    f"{f.name}=auto picks a value per task; resolve it with "
                    f"{type(settings).__name__}.resolve(settings, task) before building the model."
                )
            raise ConfigError(f"{f.name}={value!r} is not {meta['label']}; use one of {meta['choices']}.")


def settings_of(cls: type) -> dict[str, Any]:
    """Every field of ``cls`` and its default, as a config file holds it (``auto`` for an option
    that picks its value per task)."""
    return {f.name: AUTO if f.metadata.get("by_task") else f.default for f in dataclasses.fields(cls)}


def resolve_auto(cls: type, settings: Mapping[str, Any], task: str | None) -> dict[str, Any]:
    """``settings`` with every ``auto`` option of ``cls`` replaced by its value for ``task``
    (``None``: the option's plain default); a list (one value per layer) is resolved value by value."""
    picks = {
        f.name: f.metadata["by_task"].get(task, f.default)
        for f in dataclasses.fields(cls)
        if f.metadata.get("by_task")
    }

    def pick(name: str, value: Any) -> Any:
        if isinstance(value, (list, tuple)):
            return [pick(name, v) for v in value]
        return picks[name] if name in picks and value == AUTO else value

    return {name: pick(name, value) for name, value in settings.items()}


def setting_notes(cls: type) -> list[tuple[str, Any, str]]:
    """``(name, config default, note)`` for every field of ``cls``: the lines of its config file."""
    defaults = settings_of(cls)
    notes = []
    for f in dataclasses.fields(cls):
        meta = f.metadata
        if meta.get("kind") == "option":
            note = f"{meta['doc']}"
            if meta["by_task"]:
                note += "; auto: " + ", ".join(f"{v} for {task}" for task, v in meta["by_task"].items())
        elif "range" in meta:
            note = (
                f"{meta['doc']}; {'a whole number ' if meta.get('integer') else ''}{meta['range'].describe()}"
            )
            if meta["kind"] == "param":
                note += "; a list gives one value per layer"
        else:
            note = "train the model's parameters with the weights"
        notes.append((f.name, defaults[f.name], note))
    return notes


def yaml_value(value: object) -> str:
    """A default as YAML writes it (``true``, ``0.9``, ``relu``)."""
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)
