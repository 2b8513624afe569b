"""Which callables a checkpoint may name: checkpoints are data, never instructions.

A checkpoint stores the optimizer and scheduler as Hydra configs (``_target_`` plus arguments),
which fine-tuning or resuming a loaded model instantiates. Anything read from a checkpoint is
checked here before it is used: a ``_target_`` may appear only at the top of the stored
``optimizer`` and ``scheduler`` settings, and may name only a torch optimizer, a torch
learning-rate scheduler or one of nmsnn's schedules. Other names are refused without being
imported (importing a module runs its code). The neuron model (``neuron.kind``) must be one
nmsnn knows by name (:mod:`nmsnn.core.neurons`) for the same reason: a model given by import
path is imported. ``NMSNN_ALLOW_TARGETS`` (comma-separated exact names) admits a user's own
optimizer, scheduler or neuron model, for checkpoints the user wrote.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterator
from typing import Any

from nmsnn.errors import CheckpointError

TARGET_KEY = "_target_"
# where a stored hyperparameter may hold a Hydra target, and the modules it may name
TARGET_SETTINGS = ("optimizer", "scheduler")
ALLOWED_MODULES = ("torch.optim", "torch.optim.lr_scheduler", "nmsnn.lit.schedules")
ALLOW_ENV = "NMSNN_ALLOW_TARGETS"
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def find_targets(value: Any, where: str = "") -> Iterator[tuple[str, Any]]:
    """Every ``(key path, target)`` of a ``_target_`` key in nested dicts and lists."""
    if isinstance(value, dict):
        for key, item in value.items():
            path = f"{where}.{key}" if where else str(key)
            if key == TARGET_KEY:
                yield path, item
            else:
                yield from find_targets(item, path)
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            yield from find_targets(item, f"{where}[{i}]")


def _allowed_by_env(name: str) -> bool:
    return name in {n.strip() for n in os.environ.get(ALLOW_ENV, "").split(",") if n.strip()}


def allowed_target(name: Any) -> bool:
    """Whether ``name`` is a torch optimizer, a torch scheduler, an nmsnn schedule, or listed in
    ``NMSNN_ALLOW_TARGETS``; decided without importing anything new."""
    if not isinstance(name, str):
        return False
    if _allowed_by_env(name):
        return True
    module_name, _, attribute = name.rpartition(".")
    if module_name not in ALLOWED_MODULES or not _NAME.fullmatch(attribute) or attribute.startswith("_"):
        return False
    import importlib

    import torch

    obj = getattr(importlib.import_module(module_name), attribute, None)
    if module_name == "nmsnn.lit.schedules":
        return callable(obj) and getattr(obj, "__module__", None) == module_name
    base = torch.optim.Optimizer if module_name == "torch.optim" else torch.optim.lr_scheduler.LRScheduler
    return isinstance(obj, type) and issubclass(obj, base) and obj is not base


def check_checkpoint_targets(checkpoint: dict[str, Any], source: str) -> None:
    """Refuse a checkpoint that names a callable nmsnn would not call: any ``_target_`` outside
    the stored optimizer and scheduler settings, or one there that :func:`allowed_target`
    refuses. One line naming the key and the target."""
    for path, target in find_targets(checkpoint):
        setting = path.split(".")
        permitted = len(setting) == 3 and setting[0] == "hyper_parameters" and setting[1] in TARGET_SETTINGS
        if not permitted or not allowed_target(target):
            raise CheckpointError(
                f"{source}: refused: {path} = {target!r} names a callable that loading or "
                "fine-tuning would call; a checkpoint may name only torch.optim optimizers and "
                "schedulers and nmsnn.lit.schedules (your own, in checkpoints you wrote: "
                f"{ALLOW_ENV}={target if isinstance(target, str) else 'NAME'})."
            )
    _check_neuron_kind(checkpoint, source)


def _check_neuron_kind(checkpoint: dict[str, Any], source: str) -> None:
    """A stored neuron model given by import path is used only when allowed or when this process
    has imported its module already (the run that trained it): nothing new is imported."""
    from nmsnn.core.neurons import NEURON_MODELS

    hparams = checkpoint.get("hyper_parameters")
    neuron = hparams.get("neuron") if isinstance(hparams, dict) else None  # else refused by its checks
    kind = neuron.get("kind") if isinstance(neuron, dict) else None
    if kind is None or (isinstance(kind, str) and (kind in NEURON_MODELS or _allowed_by_env(kind))):
        return
    if isinstance(kind, str) and kind.rpartition(".")[0] in sys.modules:
        return
    raise CheckpointError(
        f"{source}: refused: hyper_parameters.neuron.kind = {kind!r} is not a neuron model nmsnn "
        f"knows ({', '.join(NEURON_MODELS)}), and loading would import it; for your own model, "
        f"in checkpoints you wrote: {ALLOW_ENV}={kind if isinstance(kind, str) else 'NAME'}."
    )
