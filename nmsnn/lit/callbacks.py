"""Callbacks: the training budget, spike statistics, a stop on divergence, a checkpoint on Ctrl-C,
an average of the weights."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import EMAWeightAveraging, ModelCheckpoint
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities.exceptions import SIGTERMException
from torch import Tensor

from nmsnn.analysis.activity import ActivityAccumulator, layer_names
from nmsnn.analysis.plots import activity_figure
from nmsnn.errors import NmsnnError
from nmsnn.lit.schedules import budget_epochs

log = logging.getLogger(__name__)


class TrainingDiverged(NmsnnError):
    """The training loss stopped being a finite number."""


def divergence_error(
    what: str, epoch: int, where: str, lrs: list[float], last: str | None
) -> TrainingDiverged:
    """The error a diverged run stops with: what became non-finite, where, the learning rates to
    lower, and the last good checkpoint (``None``: none was saved)."""
    saved = (
        f"The last good checkpoint is {last}." if last else "No checkpoint was saved before the divergence."
    )
    return TrainingDiverged(
        f"training diverged: {what} at epoch {epoch} ({where}), with learning "
        f"rate {', '.join(f'{lr:g}' for lr in lrs)}. Lower model.optimizer.lr (or the scheduler's "
        f"growth), or use fewer time steps or smaller inputs. {saved}"
    )


class StepBudget(L.Callback):
    """Train for about ``steps`` optimizer steps whatever the table's size: sets the run's epochs
    to ``steps / batches per epoch``, rounded up to whole epochs and capped by
    ``trainer.max_epochs`` (so early stopping, validation and checkpoints keep their per-epoch
    rules, and a schedule's ``total_steps`` follows the budget)."""

    def __init__(self, steps: int = 3000) -> None:
        budget_epochs(steps, 1, None)  # validates
        self.steps = int(steps)

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage != "fit" or trainer.datamodule is None:
            return
        loop = trainer.fit_loop
        batches = len(trainer.datamodule.train_dataloader())
        if getattr(self, "_cap", None) is None:
            self._cap = loop.max_epochs  # trainer.max_epochs, kept for a second fit
        loop.max_epochs = budget_epochs(self.steps, batches, self._cap)
        uncapped = budget_epochs(self.steps, batches, None)
        capped = uncapped > loop.max_epochs
        log.info(
            "training budget: %d steps %s %d epochs of %d batches%s",
            self.steps,
            "would be" if capped else "=",
            uncapped,
            batches,
            f"; trainer.max_epochs={self._cap} caps it"
            if capped
            else f" (trainer.max_epochs={self._cap} would cap it)",
        )


class WeightAverage(EMAWeightAveraging):
    """An exponential moving average of the weights (``decay`` per optimizer step), used wherever
    the model is judged: validation (so early stopping and ``best.ckpt`` follow it), the test, and
    every checkpoint's weights (so ``nmsnn-predict``, ``nmsnn-eval`` and export use it too).

    Lightning's ``EMAWeightAveraging`` validates and saves the average but tests the raw weights
    restored beside it in the checkpoint; here the test swaps the average in as well, so a run's
    test metrics and its ``test_predictions.csv`` come from the same weights."""

    def __init__(self, decay: float = 0.99, **kwargs: Any) -> None:
        if not 0.0 < float(decay) < 1.0:
            raise ValueError(f"callbacks.weight_average.decay={decay!r} must be in (0, 1).")
        super().__init__(decay=float(decay), **kwargs)

    def on_test_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._average_model is not None:
            self._swap_models(pl_module)

    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._average_model is not None:
            self._swap_models(pl_module)


class DivergenceGuard(L.Callback):
    """Stop training with a clear error as soon as the training loss is NaN or infinite.

    The error names the epoch and batch, the learning rate to lower, and the last checkpoint saved
    before the divergence (``last.ckpt`` is written at epoch ends only, so it holds good weights).
    """

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        bad_loss = loss is not None and not bool(torch.isfinite(loss.detach()).all())
        bad = [name for name, p in pl_module.named_parameters() if not bool(torch.isfinite(p).all())]
        # decided together, so that under DDP every rank stops (none waits for the others)
        if not trainer.strategy.reduce_boolean_decision(bad_loss or bool(bad), all=False):
            return
        if bad_loss:
            self._stop(trainer, f"the training loss became {float(loss):g}", f"batch {batch_idx}")
        self._stop(
            trainer,
            f"parameter(s) {bad[:3] or 'on another rank'} became NaN or infinite",
            f"batch {batch_idx}",
        )

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
        raise divergence_error(
            what, trainer.current_epoch, where, lrs, last if last and Path(last).exists() else None
        )


class LastCheckpoint(ModelCheckpoint):
    """``<dirpath>/last.ckpt`` at the end of every epoch, whatever the monitored metric does: what a
    requeued or terminated run resumes from. (Lightning's ``save_last`` writes it only on epochs
    that also save a top-k checkpoint, so a plateaued run would resume from its last improvement.)
    Its own class gives it its own checkpoint state key beside the best-checkpoint callback."""

    def __init__(self, dirpath: str, filename: str = "last") -> None:
        super().__init__(
            dirpath=dirpath, filename=filename, monitor=None, save_top_k=1, enable_version_counter=False
        )


class InterruptCheckpoint(L.Callback):
    """On Ctrl-C (KeyboardInterrupt) save a resumable checkpoint to ``<dirpath>/<filename>.ckpt``;
    the same command resumes from it (``resume: auto`` takes the newest of ``last.ckpt`` and this
    file), as does ``nmsnn-train <same overrides> ckpt_path=<that file>``.

    On SIGTERM (Lightning's ``SIGTERMException``: a scheduler's preemption, ``kill``) it saves
    nothing and logs where the run resumes: ``last.ckpt`` of the last completed epoch, from which a
    deterministic run continues exactly (a checkpoint from inside an epoch cannot: the batches
    already seen that epoch are not recorded).
    """

    def __init__(self, dirpath: str, filename: str = "interrupted") -> None:
        self.path = Path(dirpath) / f"{filename}.ckpt"

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        if trainer.state.fn != "fit":
            return
        if isinstance(exception, SIGTERMException):  # nmsnn-train logs where the run resumes
            if trainer.is_global_zero:
                log.debug(
                    "terminated (SIGTERM) in epoch %d: the same command resumes from the last "
                    "completed epoch (last.ckpt)",
                    trainer.current_epoch + 1,
                )
            return
        if not isinstance(exception, KeyboardInterrupt):
            return
        trainer.save_checkpoint(self.path)
        if trainer.is_global_zero:
            log.warning(
                "interrupted at epoch %d: saved a resumable checkpoint to %s; the same command resumes from it",
                trainer.current_epoch,
                self.path,
            )


def tensorboard_writer(trainer: L.Trainer) -> Any | None:
    """The TensorBoard SummaryWriter of the run on rank 0, if a TensorBoardLogger is attached."""
    if not trainer.is_global_zero:
        return None
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            return logger.experiment
    return None


def watched_spike_statistics(trainer: L.Trainer) -> bool:
    """Whether a callback of ``trainer`` watches a ``val/spikes/...`` statistic (its monitor)."""
    return any(str(getattr(c, "monitor", None) or "").startswith("val/spikes/") for c in trainer.callbacks)


class SpikeStatistics(L.Callback):
    """Spike statistics of every firing layer from the validation and test passes.

    Uses the activity that ``validation_step``/``test_step`` return with their loss (no second
    forward pass). Every ``every_n_epochs`` validation epochs it logs, per layer,
    ``val/spikes/<layer>/{firing_rate, mean_output, dead_fraction, saturated_fraction}``; every
    ``histogram_every_n_epochs`` epochs (and at the last) histograms
    ``spikes/<layer>/neuron_rates`` (per-neuron firing rates) and ``membrane/<layer>`` (membrane
    potentials of the first validation batch). At the end of training, and every
    ``figure_every_n_epochs`` epochs if that is > 0, it draws a figure ``spikes/activity``
    (rasters and membrane traces of ``sample_rows`` validation rows). After
    testing it logs the same statistics under ``test/spikes/...`` and the energy estimate
    ``test/synops_per_row``, ``test/ann_macs_per_row``, ``test/synops_per_mac``. Counts are
    summed across DDP ranks; rank 0 writes histograms and figures. The validation statistics are
    also callback metrics (``monitor=val/spikes/layer1/firing_rate`` works); a training run with
    no logger and no callback watching one of them skips them (its test statistics remain).
    """

    def __init__(
        self,
        every_n_epochs: int = 1,
        histogram_every_n_epochs: int = 10,
        figure_every_n_epochs: int = 0,
        sample_rows: int = 3,
        histogram_rows: int = 64,
    ) -> None:
        self.every_n_epochs = every_n_epochs
        self.histogram_every_n_epochs = histogram_every_n_epochs
        self.figure_every_n_epochs = figure_every_n_epochs
        self.sample_rows = sample_rows
        self.histogram_rows = histogram_rows
        self._acc: ActivityAccumulator | None = None
        self._sample: tuple[list[Tensor], list[Tensor]] | None = None
        self._stats: tuple[list, list[str], list[bool], int] | None = None

    # ------------------------------------------------------------------ collecting
    def _start(self, pl_module: L.LightningModule) -> None:
        self._acc = ActivityAccumulator(pl_module.model.network, pl_module.model.head.burn_in)
        self._sample = None

    def _collect(self, outputs: Any) -> None:
        if self._acc is None or not isinstance(outputs, dict) or "activity" not in outputs:
            return
        step = outputs["activity"]
        activity = step.network
        self._acc.update(step.inputs, activity)
        if self._sample is None:
            rows = self.histogram_rows
            self._sample = (
                [out.spikes[:, :rows].detach().float().cpu().clone() for out in activity.layers],
                [out.membrane[:, :rows].detach().float().cpu().clone() for out in activity.layers],
            )

    def _finish(self, trainer: L.Trainer) -> ActivityAccumulator | None:
        acc, self._acc = self._acc, None
        if acc is None or not acc.state:
            return None
        acc.reduce(lambda t: trainer.strategy.reduce(t, reduce_op="sum"))
        return acc

    # ------------------------------------------------------------------ validation
    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or trainer.current_epoch % self.every_n_epochs:
            return
        if trainer.state.fn == "fit" and not (trainer.loggers or watched_spike_statistics(trainer)):
            return  # no logger and no callback would read them (a logger=none run)
        self._start(pl_module)

    def on_validation_batch_end(
        self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0
    ) -> None:
        self._collect(outputs)

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        acc = self._finish(trainer)
        if acc is None:
            return
        stats = acc.layer_stats()
        scalars = {f"val/spikes/{layer.name}/{k}": v for layer in stats for k, v in layer.scalars().items()}
        if trainer.state.fn == "fit":
            # straight to the loggers: each self.log call costs Lightning a walk over every logged
            # value, which on small tabular epochs costs more than the statistics themselves
            # at the step and with the epoch of the epoch's other validation metrics
            step = max(trainer.global_step - 1, 0)
            for logger in trainer.loggers:
                logger.log_metrics({**scalars, "epoch": float(trainer.current_epoch)}, step=step)
            # and to the callbacks that run after this one (checkpoints and early stopping may
            # watch monitor=val/spikes/<layer>/<statistic>)
            trainer.callback_metrics.update({k: torch.tensor(v) for k, v in scalars.items()})
        else:  # a validate() call: return them with its results
            pl_module.log_dict(scalars, sync_dist=True)
        writer = tensorboard_writer(trainer)
        if writer is None or self._sample is None:
            return
        epoch = trainer.current_epoch
        self._stats = (stats, acc.names, acc.fires, epoch)
        if self.histogram_every_n_epochs and epoch % self.histogram_every_n_epochs == 0:
            self._histograms(writer)
        if self.figure_every_n_epochs and epoch % self.figure_every_n_epochs == 0:
            self._figure(writer, acc.names, epoch)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        writer = tensorboard_writer(trainer)
        if writer is not None and self._sample is not None:
            if self._stats is not None and not (
                self.histogram_every_n_epochs and self._stats[3] % self.histogram_every_n_epochs == 0
            ):
                self._histograms(writer)  # the last epoch's, unless already written
            self._figure(writer, layer_names(pl_module.model.network), trainer.current_epoch)

    def _histograms(self, writer: Any) -> None:
        stats, names, fires, epoch = self._stats
        membranes = self._sample[1]
        for i, name in enumerate(names):
            if fires[i]:
                rates = next(s.neuron_rates for s in stats if s.name == name)
                writer.add_histogram(f"spikes/{name}/neuron_rates", rates, epoch)
            writer.add_histogram(f"membrane/{name}", membranes[i], epoch)

    def _figure(self, writer: Any, names: list[str], step: int) -> None:
        spikes, membranes = self._sample
        rows = self.sample_rows
        figure = activity_figure([s[:, :rows] for s in spikes], [m[:, :rows] for m in membranes], names)
        writer.add_figure("spikes/activity", figure, step, close=True)

    # ------------------------------------------------------------------ test
    def on_test_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start(pl_module)

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self._collect(outputs)

    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        acc = self._finish(trainer)
        if acc is None:
            return
        for layer in acc.layer_stats():
            for key, value in layer.scalars().items():
                pl_module.log(f"test/spikes/{layer.name}/{key}", value, sync_dist=True)
        for key, value in acc.energy().items():
            pl_module.log(f"test/{key}", value, sync_dist=True)
