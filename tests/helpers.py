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


class KillOnce(L.Callback):
    """Send this process ``signal`` (SIGKILL) before batch 1 of epoch ``epoch``, once (a marker
    file remembers)."""

    def __init__(self, epoch: int, marker: str, signal: str = "SIGKILL") -> None:
        self.epoch, self.marker, self.signal = epoch, marker, signal

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx: int
    ) -> None:
        import os
        import signal
        from pathlib import Path

        if trainer.current_epoch == self.epoch and batch_idx == 1 and not Path(self.marker).exists():
            Path(self.marker).touch()
            os.kill(os.getpid(), getattr(signal, self.signal))


class RecordRows(L.Callback):
    """Write the training rows each rank saw, per epoch, to ``<directory>/rows_rank<r>_epoch<e>.json``."""

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self.rows: list[int] = []

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.rows = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        self.rows += batch["row"].tolist()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        import json
        from pathlib import Path

        path = Path(self.directory) / f"rows_rank{trainer.global_rank}_epoch{trainer.current_epoch}.json"
        path.write_text(json.dumps(self.rows))


class SleepPerEpoch(L.Callback):
    """Sleep ``seconds`` after each training epoch (a run slow enough to interrupt)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        import time

        time.sleep(self.seconds)
