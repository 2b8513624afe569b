"""One log line per epoch, at most every few seconds: what a run prints while it trains.

Lightning's progress bars redraw a terminal line; in a log file, a CI console or a narrow terminal
they wrap the metrics over several lines and repeat the last epoch. This callback logs plain
lines instead (to the console and ``train.log`` alike), so a run's console reads as a record.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

import lightning as L

log = logging.getLogger("nmsnn.progress")


def _value(metrics: dict[str, Any], key: str) -> float | None:
    value = metrics.get(key)
    return None if value is None else float(value)


def _stopped_early(trainer: L.Trainer, epoch: int) -> bool:
    """Training ended before its epoch limit and not at its step limit (``trainer.max_steps``)."""
    at_step_limit = trainer.max_steps not in (None, -1) and trainer.global_step >= trainer.max_steps
    return trainer.max_epochs not in (None, -1) and epoch + 1 < trainer.max_epochs and not at_step_limit


class ProgressLog(L.Callback):
    """Log ``epoch E/N · train/loss · <monitor> (best so far, at epoch) · other val metrics · time``
    for the first epoch, then at most every ``every_s`` seconds, and for the last epoch."""

    def __init__(self, every_s: float = 5.0, monitor: str | None = "val/loss", mode: str = "min") -> None:
        if not every_s >= 0:
            raise ValueError(f"every_s={every_s!r} must be >= 0 seconds.")
        self.every_s = float(every_s)
        self.monitor = monitor
        self.mode = mode
        self._restored: tuple[float, int] | None = None  # the best so far, from a resumed checkpoint
        self._reset()

    def _reset(self) -> None:
        self.start = self.last = 0.0
        self.best: tuple[float, int] | None = None
        self.logged_epoch = -1
        self.first_epoch = 0

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._reset()
        self.best, self._restored = self._restored, None
        self.start = self.last = time.perf_counter()
        self.first_epoch = trainer.current_epoch  # > 0 when resuming

    # The best so far travels in checkpoints, so a resumed run's lines compare with the epochs
    # before the interruption too.
    def state_dict(self) -> dict[str, Any]:
        return {"best": list(self.best) if self.best else None}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        best = state_dict.get("best")
        self._restored = (float(best[0]), int(best[1])) if best else None

    # An epoch's line is written when the next epoch starts (or training ends): only then does
    # ``callback_metrics`` hold that epoch's train/loss as well as its validation metrics.
    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        done = trainer.current_epoch - 1
        if done < self.first_epoch or not trainer.is_global_zero:
            return
        self._track(trainer, done)
        now = time.perf_counter()
        if done == self.first_epoch or now - self.last >= self.every_s:
            self._log(trainer, done, now)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        done = trainer.current_epoch - 1
        if not trainer.is_global_zero or done < self.first_epoch or done == self.logged_epoch:
            return
        self._track(trainer, done)
        self._log(trainer, done, time.perf_counter(), end=True)

    def _track(self, trainer: L.Trainer, epoch: int) -> None:
        watched = _value(trainer.callback_metrics, self.monitor) if self.monitor else None
        if watched is None or not math.isfinite(watched):
            return
        if self.best is None or (watched < self.best[0] if self.mode == "min" else watched > self.best[0]):
            self.best = (watched, epoch)

    def _log(self, trainer: L.Trainer, epoch: int, now: float, end: bool = False) -> None:
        self.last, self.logged_epoch = now, epoch
        line = self.line(trainer, epoch, trainer.callback_metrics, now - self.start)
        if end and _stopped_early(trainer, epoch):
            line += " · stopped early"
        log.info(line)

    def line(self, trainer: L.Trainer, epoch: int, metrics: dict[str, Any], seconds: float) -> str:
        limit = trainer.max_epochs
        parts = [f"epoch {epoch + 1}/{limit}" if limit not in (None, -1) else f"epoch {epoch + 1}"]
        loss = _value(metrics, "train/loss")
        if loss is not None and self.monitor != "train/loss":  # else the monitor's part shows it
            parts.append(f"train/loss {loss:.4g}")
        if self.monitor and _value(metrics, self.monitor) is not None:
            text = f"{self.monitor} {_value(metrics, self.monitor):.4g}"
            if self.best is not None:
                text += f" (best {self.best[0]:.4g} at epoch {self.best[1] + 1})"
            parts.append(text)
        # the epoch's validation metrics (not the spike statistics under val/spikes/...)
        others = sorted(k for k in metrics if k.startswith("val/") and k != self.monitor and "/" not in k[4:])
        parts += [f"{k} {_value(metrics, k):.4g}" for k in others]
        parts.append(f"{seconds:.1f} s")
        return " · ".join(parts)
