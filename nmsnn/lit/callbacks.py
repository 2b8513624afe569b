"""Callbacks that keep long runs safe: stop on divergence, save a checkpoint on Ctrl-C."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import lightning as L
import torch

from nmsnn.errors import NmsnnError

log = logging.getLogger(__name__)


class TrainingDiverged(NmsnnError):
    """The training loss stopped being a finite number."""


class DivergenceGuard(L.Callback):
    """Stop training with a clear error as soon as the training loss is NaN or infinite.

    The error names the epoch and batch, the learning rate to lower, and the last checkpoint saved
    before the divergence (``last.ckpt`` is written at epoch ends only, so it holds good weights).
    """

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if loss is not None and not bool(torch.isfinite(loss.detach()).all()):
            self._stop(trainer, f"the training loss became {float(loss):g}", f"batch {batch_idx}")
        bad = [name for name, p in pl_module.named_parameters() if not bool(torch.isfinite(p).all())]
        if bad:
            self._stop(trainer, f"parameter(s) {bad[:3]} became NaN or infinite", f"batch {batch_idx}")

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # runs before ModelCheckpoint (Lightning orders checkpoint callbacks last): a diverged
        # epoch is never saved as last.ckpt
        loss = trainer.callback_metrics.get("val/loss")
        if loss is not None and not trainer.sanity_checking and not bool(torch.isfinite(loss).all()):
            self._stop(trainer, f"the validation loss became {float(loss):g}", "validation")

    @staticmethod
    def _stop(trainer: L.Trainer, what: str, where: str) -> None:
        lrs = [group["lr"] for opt in trainer.optimizers for group in opt.param_groups]
        callback = trainer.checkpoint_callback
        last = getattr(callback, "last_model_path", "") if callback is not None else ""
        saved = (
            f"The last good checkpoint is {last}."
            if last and Path(last).exists()
            else "No checkpoint was saved before the divergence."
        )
        raise TrainingDiverged(
            f"training diverged: {what} at epoch {trainer.current_epoch} ({where}), with learning "
            f"rate {', '.join(f'{lr:g}' for lr in lrs)}. Lower model.optimizer.lr (or the scheduler's "
            f"growth), or use fewer time steps or smaller inputs. {saved}"
        )


class InterruptCheckpoint(L.Callback):
    """On Ctrl-C (KeyboardInterrupt) save a resumable checkpoint to ``<dirpath>/<filename>.ckpt``.

    Resume with ``nmsnn-train <same overrides> ckpt_path=<that file>``.
    """

    def __init__(self, dirpath: str, filename: str = "interrupted") -> None:
        self.path = Path(dirpath) / f"{filename}.ckpt"

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        if not isinstance(exception, KeyboardInterrupt) or trainer.state.fn != "fit":
            return
        trainer.save_checkpoint(self.path)
        if trainer.is_global_zero:
            log.warning(
                "interrupted at epoch %d: saved a resumable checkpoint to %s; resume with the same "
                "command plus ckpt_path=%s",
                trainer.current_epoch,
                self.path,
                self.path,
            )
