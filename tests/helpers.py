"""Test-only callbacks used through Hydra config overrides."""

from __future__ import annotations

import lightning as L


class InterruptAtEpoch(L.Callback):
    """Raise KeyboardInterrupt (as Ctrl-C would) before batch ``batch`` of epoch ``epoch``."""

    def __init__(self, epoch: int, batch: int = 1) -> None:
        self.epoch, self.batch = epoch, batch

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx: int
    ) -> None:
        if trainer.current_epoch == self.epoch and batch_idx == self.batch:
            raise KeyboardInterrupt
