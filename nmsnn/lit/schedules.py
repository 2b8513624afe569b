"""Learning-rate schedules and the training budget, sized from the run's own step count.

A schedule here is a plain function ``(optimizer, total_steps, ...) -> LRScheduler``. The module
fills in ``total_steps`` (Lightning's ``estimated_stepping_batches``) for any scheduler target
that takes it, so a schedule follows the budget however many rows the table has.
"""

from __future__ import annotations

import math

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

from nmsnn.errors import ConfigError


def warmup_cosine(
    optimizer: Optimizer, total_steps: int, warmup: float = 0.05, final: float = 0.0
) -> LambdaLR:
    """Linear warm-up over the first ``warmup`` fraction of ``total_steps``, then a cosine decay
    from the optimizer's learning rate to ``final`` times it at the last step (stepped per
    optimizer step: use ``interval: step``)."""
    if not 0.0 <= warmup < 1.0:
        raise ConfigError(f"warmup_cosine: warmup={warmup} must be a fraction in [0, 1).")
    if not 0.0 <= final <= 1.0:
        raise ConfigError(f"warmup_cosine: final={final} must be in [0, 1].")
    total = max(1, int(total_steps))
    ramp = max(1, round(warmup * total)) if warmup > 0 else 0

    def factor(step: int) -> float:
        if step < ramp:
            return (step + 1) / ramp
        progress = min(1.0, (step - ramp) / max(1, total - ramp))
        return final + (1.0 - final) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return LambdaLR(optimizer, factor)


def budget_epochs(steps: int, batches_per_epoch: int, max_epochs: int | None) -> int:
    """The epochs a budget of ``steps`` optimizer steps takes, rounded up to a whole epoch and
    capped by ``max_epochs`` (``None`` or -1: no cap)."""
    if int(steps) < 1:
        raise ConfigError(f"the training budget must be at least one step, got steps={steps}.")
    epochs = max(1, math.ceil(int(steps) / max(1, int(batches_per_epoch))))
    return epochs if max_epochs in (None, -1) else min(epochs, int(max_epochs))
