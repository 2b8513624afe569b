"""Train a population: K ordinary models that share every forward and backward pass, in
Lightning's fit loop (:class:`PopulationLoop`, manual optimization).

Each member is exactly what ``nmsnn-train`` would build for its configuration (same seed, same
data split and preprocessing, same initial weights, same training-noise stream) and trains as it
would alone:

* its own batches (its own shuffle seed) and its own noise (its own generator);
* its own optimizer, so its own learning rate and weight decay (Adam-type optimizers are
  elementwise: nothing is shared between members);
* the loss is the sum of the members' losses, so each member's gradient is its own;
* its own validation metrics, early stopping (its own Lightning ``EarlyStopping`` object, built
  from its config as alone, decides: see :func:`should_stop`), best and last checkpoint (by
  ``ModelCheckpoint``'s rule); a stopped member leaves the batched pass, the others go on;
* a member whose loss or weights stop being finite fails alone, with the message the single run
  would give.

Members whose configuration cannot be trained this way (see :func:`unsupported`) are refused with a
reason; the launcher then runs them as ordinary jobs.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate
from lightning.pytorch.callbacks import EarlyStopping
from omegaconf import DictConfig
from torch import Tensor

from nmsnn.analysis.activity import ActivityAccumulator
from nmsnn.checkpoint import DATAMODULE_KEY
from nmsnn.core.layers import NetworkOutput
from nmsnn.core.neuron import RecurrenceOutput
from nmsnn.data.datamodule import TabularDataModule
from nmsnn.errors import ConfigError
from nmsnn.files import write_atomic
from nmsnn.lit.callbacks import divergence_error
from nmsnn.lit.module import SpikingModule
from nmsnn.lit.schedules import budget_epochs
from nmsnn.population.network import PopulationNetwork

log = logging.getLogger(__name__)


@dataclass
class Member:
    """One configuration of a population: its model, data, run directory and training record."""

    cfg: DictConfig
    module: SpikingModule
    datamodule: TabularDataModule
    out_dir: Path
    loggers: list[Any] = field(default_factory=list)
    # where its best and last checkpoints go (see checkpoint_paths; resolved in its Hydra job)
    paths: tuple[Path, Path | None] | None = None
    setup_seconds: float = 0.0
    epochs: int = 0
    global_step: int = 0
    best_score: float | None = None
    best_checkpoint: dict[str, Any] | None = None
    last_checkpoint: dict[str, Any] | None = None
    stopping: EarlyStopping | None = None  # its early-stopping rule and state (see should_stop)
    error: Exception | None = None
    stopped: bool = False


def unsupported(cfg: DictConfig) -> str | None:
    """Why ``cfg`` cannot train as a population member (``None`` if it can)."""
    trainer = cfg.trainer
    checks = {
        "ckpt_path": cfg.get("ckpt_path") is not None,
        "model.scheduler.monitor": isinstance(cfg.model.get("scheduler"), Mapping)
        and "monitor" in cfg.model.scheduler,
        "trainer.precision": str(trainer.get("precision", "32-true")) not in ("32", "32-true"),
        "trainer.devices": trainer.get("devices", 1) not in (1, "1", "auto"),
        "trainer.num_nodes": trainer.get("num_nodes", 1) != 1,
        "trainer.strategy": str(trainer.get("strategy", "auto")) not in ("auto", "single_device"),
        "trainer.gradient_clip_val": trainer.get("gradient_clip_val") is not None,
        "trainer.accumulate_grad_batches": trainer.get("accumulate_grad_batches", 1) != 1,
        "trainer.max_steps": trainer.get("max_steps", -1) not in (-1, None),
        "trainer.min_epochs": trainer.get("min_epochs") not in (None, 0),
        "trainer.limit_train_batches": trainer.get("limit_train_batches") not in (None, 1, 1.0),
        "trainer.val_check_interval": trainer.get("val_check_interval") not in (None, 1, 1.0),
        "trainer.fast_dev_run": bool(trainer.get("fast_dev_run", False)),
        "test_ckpt": cfg.get("test_ckpt", "best") != "best",
    }
    stopping = (cfg.get("callbacks") or {}).get("early_stopping") or {}
    for key in ("stopping_threshold", "divergence_threshold"):
        checks[f"callbacks.early_stopping.{key}"] = stopping.get(key) is not None
    bad = [key for key, failed in checks.items() if failed]
    if bad:
        return f"population training does not support {', '.join(bad)} as set"
    callbacks = cfg.get("callbacks") or {}
    known = {
        "model_checkpoint",
        "last_checkpoint",  # the members' last.ckpt is written at the end (populations do not resume)
        "early_stopping",
        "divergence_guard",
        "interrupt_checkpoint",
        "spike_statistics",
        "training_budget",
        "progress",
    }
    extra = [name for name, node in callbacks.items() if node is not None and name not in known]
    if extra:
        return f"population training cannot run the extra callbacks {extra} during training"
    return None


def merged_groups(groups: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The members' parameter groups, those with equal settings merged into one, with the
    multi-tensor (``foreach``) implementation where the optimizer left the choice to torch.

    An optimizer's update is per parameter; a group only carries settings. One group per
    setting, updated with one multi-tensor call per operation, replaces a Python loop over every
    member's every tensor: the same updates (the equivalence test compares whole runs) for
    fewer, larger operations.
    """
    merged: dict[str, dict[str, Any]] = {}
    for group in groups:
        settings = {k: v for k, v in group.items() if k != "params"}
        torch_chooses = "foreach" in settings and settings["foreach"] is None
        if torch_chooses and not settings.get("fused") and not settings.get("differentiable"):
            settings["foreach"] = True
        key = repr(sorted(settings.items()))
        merged.setdefault(key, {**settings, "params": []})["params"].extend(group["params"])
    return list(merged.values())


def device_for(cfg: DictConfig) -> torch.device:
    """The one device the population trains on (the trainer's accelerator)."""
    accelerator = str(cfg.trainer.get("accelerator", "auto"))
    if accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available()):
        return torch.device("cuda", 0)
    return torch.device("cpu")


def improves(current: float, best: float | None, mode: str) -> bool:
    """ModelCheckpoint's rule (``save_top_k=1``): strictly better by ``mode``; NaN never is."""
    if best is None:
        return not math.isnan(current)
    return current < best if mode == "min" else current > best


def should_stop(stopping: EarlyStopping, current: float) -> bool:
    """One epoch's early-stopping decision for one member, on the member's own ``EarlyStopping``
    object (the one its single run would build from the same config): its ``monitor_op``,
    signed ``min_delta`` and ``patience`` decide, and its ``best_score`` and ``wait_count`` keep
    the member's state, as the callback does after each validation."""
    value = torch.tensor(float(current))
    if stopping.monitor_op(value - stopping.min_delta, stopping.best_score):
        stopping.best_score, stopping.wait_count = value, 0
        return False
    stopping.wait_count += 1
    return stopping.wait_count >= stopping.patience


class PopulationTrainer:
    """Train ``members`` together (see the module docstring) and keep each one's checkpoints."""

    def __init__(self, members: list[Member]) -> None:
        self.members = members
        cfg = members[0].cfg
        self.device = device_for(cfg)
        self.max_epochs = cfg.trainer.get("max_epochs")
        if self.max_epochs in (None, -1):
            self.max_epochs = 1000 if self.max_epochs is None else 10**9  # Lightning's defaults
        self.val_every = int(cfg.trainer.get("check_val_every_n_epoch") or 1)
        callbacks = cfg.get("callbacks") or {}
        checkpoint = callbacks.get("model_checkpoint")
        self.checkpointing = checkpoint is not None
        self.monitor = checkpoint.get("monitor") if self.checkpointing else cfg.get("monitor")
        self.mode = checkpoint.get("mode", "min") if self.checkpointing else cfg.get("monitor_mode", "min")
        for m in members:  # each member's own EarlyStopping, built from its config as alone
            node = (m.cfg.get("callbacks") or {}).get("early_stopping")
            m.stopping = None if node is None else instantiate(node)
        spike_statistics = callbacks.get("spike_statistics")
        self.spike_every = 0 if spike_statistics is None else int(spike_statistics.get("every_n_epochs", 1))
        progress = callbacks.get("progress")
        self.progress_every = None if progress is None else float(progress.get("every_s", 5.0))
        self._progress_at = -math.inf
        self.burn_in = int(members[0].module.hparams.burn_in)
        if cfg.trainer.get("deterministic"):
            torch.use_deterministic_algorithms(True, warn_only=True)
        self.network = PopulationNetwork([m.module for m in members])
        for m in members:
            m.module.to(self.device)
            m.module.train()
        # each member's state tensors, gathered once: the optimizer updates them in place, so a
        # checkpoint copies these without walking the module tree every epoch
        self._states = {id(m): m.module.state_dict() for m in members}
        # each member's own optimizer settings, as its own parameter groups of one optimizer:
        # per-parameter updates as alone, without one optimizer call per member
        optimizers = [m.module.make_optimizer() for m in members]
        kinds = {type(o).__name__ for o in optimizers}
        if len(kinds) != 1:
            raise ConfigError(f"population members must share one optimizer class, got {sorted(kinds)}")
        self.member_groups = [o.param_groups for o in optimizers]
        self.optimizer = type(optimizers[0])(merged_groups([g for o in optimizers for g in o.param_groups]))
        self.data = [self._tensors(m.datamodule) for m in members]
        batches = len(self.data[0]["train"][2])
        budget = callbacks.get("training_budget")
        if budget is not None:  # the StepBudget callback's rule
            self.max_epochs = budget_epochs(int(budget.get("steps", 3000)), batches, self.max_epochs)
        self.scheduler, self.scheduler_interval = self._scheduler(self.max_epochs * batches)
        self._epoch_logs: dict[int, dict[str, float]] = {}

    def _scheduler(self, total_steps: int) -> tuple[Any, str]:
        """One scheduler over the merged optimizer (the members must share its settings: it
        scales every group's own learning rate by the same factor), and when it steps."""
        settings = {repr(m.module.hparams.scheduler) for m in self.members}
        if len(settings) != 1:
            raise ConfigError("population members must share one model.scheduler setting")
        if not self.members[0].module.hparams.scheduler:
            return None, "epoch"
        scheduler, keys = self.members[0].module.make_scheduler(self.optimizer, lambda: total_steps)
        if int(keys.get("frequency", 1)) != 1:
            raise ConfigError("population training steps its scheduler with frequency 1 only")
        return scheduler, str(keys.get("interval", "epoch"))

    def _tensors(self, dm: TabularDataModule) -> dict[str, tuple[Tensor, Tensor, list, Tensor | None]]:
        """Each split's whole tensors on the device, with the split's batch sampler and, with
        ``data.folds``, each row's fold."""
        out, moved = {}, {}  # with folds, train and val are the same rows: moved once
        for split, loader in (("train", dm.train_dataloader()), ("val", dm.val_dataloader())):
            if split in dm.tensors and loader:
                rows = dm.tensors[split]
                if id(rows) not in moved:
                    fold = None if rows.fold is None else rows.fold.to(self.device)
                    moved[id(rows)] = (rows.x.to(self.device), rows.y.to(self.device), fold)
                x, y, fold = moved[id(rows)]
                out[split] = (x, y, loader.sampler, fold)
        return out

    def active(self) -> list[int]:
        return [k for k, m in enumerate(self.members) if not m.stopped]

    def loop_trainer(self, max_epochs: int) -> L.Trainer:
        """Lightning's Trainer as the population's fit loop alone: each member's logs,
        checkpoints, validation and stopping are its own (see :meth:`end_epoch`)."""
        cuda = self.device.type == "cuda"
        return L.Trainer(
            accelerator="gpu" if cuda else "cpu",
            devices=[self.device.index or 0] if cuda else 1,
            max_epochs=max_epochs,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            limit_val_batches=0,
            num_sanity_val_steps=0,
            default_root_dir=str(self.members[0].out_dir),
        )

    def fit(self) -> None:
        """Train every member to its end, in Lightning's fit loop (see :class:`PopulationLoop`)."""
        start = time.perf_counter()
        trainer = self.loop_trainer(self.max_epochs)
        # Lightning's "`Trainer.fit` stopped: ..." says what the line below says, per member
        lightning_info = logging.getLogger("lightning.pytorch.utilities.rank_zero")
        level = lightning_info.level
        lightning_info.setLevel(logging.WARNING)
        try:
            trainer.fit(PopulationLoop(self))
        finally:
            lightning_info.setLevel(level)
        for member in self.members:
            member.stopped = True
        log.info(
            "population of %d trained in %.1f s (epochs: %s)",
            len(self.members),
            time.perf_counter() - start,
            [m.epochs for m in self.members],
        )

    def end_epoch(self, epoch: int, seconds: float) -> None:
        """After an epoch's training: validation (its epoch), each running member's logs,
        checkpoints and stopping rules, and the progress line."""
        active = self.active()
        validate = (epoch + 1) % self.val_every == 0 and "val" in self.data[0]
        if validate and active:
            self._validate(epoch, active)
        for k in active:
            member = self.members[k]
            if member.stopped:
                continue
            member.epochs = epoch + 1
            if not validate:
                self._log(member, self._epoch_logs.get(k, {}))
            if self.checkpointing:
                member.last_checkpoint = self._checkpoint(member, epoch)
                if not validate or self.monitor is None:
                    member.best_checkpoint = member.last_checkpoint
        self._progress(epoch, seconds)

    def _progress(self, epoch: int, seconds: float) -> None:
        """The population's line for ``callbacks.progress``: at most every ``every_s`` seconds (and
        for the first and last epoch), with the best member so far by the monitored metric."""
        if self.progress_every is None:
            return
        active = self.active()
        last = not active or epoch + 1 >= self.max_epochs
        if not (epoch == 0 or last or seconds - self._progress_at >= self.progress_every):
            return
        self._progress_at = seconds
        parts = [
            f"population of {len(self.members)}: epoch {epoch + 1}/{self.max_epochs}",
            f"{len(active)} training",
        ]
        scored = [m for m in self.members if m.best_score is not None and math.isfinite(m.best_score)]
        if scored and self.monitor:
            pick = min if self.mode == "min" else max
            best = pick(scored, key=lambda m: m.best_score)
            parts.append(f"best {self.monitor} {best.best_score:.4g} (job {best.out_dir.name})")
        parts.append(f"{seconds:.1f} s")
        log.info(" · ".join(parts))

    # ------------------------------------------------------------------------------- training
    def epoch_batches(self, epoch: int, active: list[int]) -> dict[int, list]:
        """Each active member's batches of this epoch (its own sampler, seeded by the epoch)."""
        batches = {}
        for k in active:
            sampler = self.data[k]["train"][2]
            sampler.set_epoch(epoch)
            batches[k] = list(sampler)
        if len({len(b) for b in batches.values()}) != 1:
            raise RuntimeError("population members have different numbers of training batches")
        return batches

    def train_step(
        self,
        epoch: int,
        step: int,
        batches: dict[int, list],
        sums: dict[int, list],
        seen: dict[int, list[tuple[Tensor, Tensor]]],
    ) -> bool:
        """One optimizer step of every running member on its ``step``-th batch, adding each one's
        loss and outputs to ``sums`` and ``seen``; ``False`` when no member is running."""
        running = [k for k in batches if not self.members[k].stopped]
        if not running:
            return False
        inputs, targets, folds = [], [], []
        for k in running:
            x, y, _, fold = self.data[k]["train"]
            index = torch.as_tensor(batches[k][step], device=self.device)
            inputs.append(self.members[k].module.encode(x[index]))
            targets.append(y[index])
            folds.append(None if fold is None else fold[index])
        self.optimizer.zero_grad(set_to_none=True)
        predictions = [  # the members that learn from each row (all, without data.folds)
            self.members[k].module.fold_view(p, folds[i], training=True)
            for i, (k, p) in enumerate(zip(running, self.network(inputs, running)))
        ]
        losses = [self.members[k].module.loss(predictions[i], targets[i]) for i, k in enumerate(running)]
        stacked = torch.stack(losses)
        stacked.sum().backward()
        values = stacked.detach().tolist()  # every member's loss in one transfer
        finite = [math.isfinite(value) for value in values]
        for i, k in enumerate(running):
            if not finite[i]:
                self._fail(k, f"the training loss became {values[i]:g}", epoch, f"batch {step}")
                for p in self.members[k].module.parameters():
                    p.grad = None  # a failed member is not updated
        self.optimizer.step()
        if self.scheduler is not None and self.scheduler_interval == "step":
            self.scheduler.step()
        for i, k in enumerate(running):
            member = self.members[k]
            if not finite[i]:
                continue
            member.global_step += 1
            batch = targets[i].shape[0]
            sums[k][0] += values[i] * batch
            sums[k][1] += batch
            seen[k].append((predictions[i].detach(), targets[i]))
        return True

    def end_train_epoch(
        self,
        epoch: int,
        active: list[int],
        sums: dict[int, list],
        seen: dict[int, list[tuple[Tensor, Tensor]]],
    ) -> None:
        """Each running member's epoch logs (its loss and training metrics), after checking that
        its parameters stayed finite; the scheduler's step if it steps per epoch."""
        if self.scheduler is not None and self.scheduler_interval == "epoch":
            self.scheduler.step()
        self._epoch_logs = {}
        not_finite = self._not_finite_parameters(active)
        for k in active:
            member = self.members[k]
            if member.stopped:
                continue
            bad = not_finite[k]
            if bad:
                self._fail(k, f"parameter(s) {bad[:3]} became NaN or infinite", epoch, "end of epoch")
                continue
            logs = {"train/loss": sums[k][0] / max(sums[k][1], 1), "epoch": float(epoch)}
            # the epoch's training metrics from one update (the same counts and curves as one
            # update per step, for less work per step)
            module = member.module
            with torch.no_grad():
                module.train_metrics.update(
                    module.predict_values(torch.cat([p for p, _ in seen[k]])),
                    module.metric_target(torch.cat([t for _, t in seen[k]])),
                )
            logs.update({n: float(v) for n, v in member.module.train_metrics.compute().items()})
            member.module.train_metrics.reset()
            self._epoch_logs[k] = logs

    def _not_finite_parameters(self, active: list[int]) -> dict[int, list[str]]:
        """Each member's parameters that are not finite (all checks read in one transfer)."""
        params = {k: list(self.members[k].module.named_parameters()) for k in active}
        checks = [torch.isfinite(p).all() for k in active for _, p in params[k]]
        finite = iter(torch.stack(checks).tolist() if checks else [])
        return {k: [n for n, _ in params[k] if not next(finite)] for k in active}

    def _fail(self, k: int, what: str, epoch: int, where: str) -> None:
        """Member ``k`` diverged: it stops, and its job fails with a single run's message (its
        last good checkpoint is still written, as a single run's would be)."""
        member = self.members[k]
        lrs = [group["lr"] for group in self.member_groups[k]]
        paths = member.paths
        last = str(paths[1]) if paths and paths[1] and member.last_checkpoint is not None else None
        member.error = divergence_error(what, epoch, where, lrs, last)
        member.stopped = True
        log.warning("population member %s failed: %s", member.out_dir.name, member.error)

    # ------------------------------------------------------------------------------- validation
    @torch.no_grad()
    def _validate(self, epoch: int, active: list[int]) -> None:
        for k in active:  # the model (its encoder's noise): the metric modules need no mode
            self.members[k].module.model.eval()
        batches = []
        for k in active:
            batches.append(list(self.data[k]["val"][2]))
        sums = {k: [0.0, 0] for k in active}
        stats = self.spike_every and epoch % self.spike_every == 0
        activity = {
            k: ActivityAccumulator(self.members[k].module.model.network, self.burn_in) for k in active
        }
        for step in range(len(batches[0])):
            inputs, targets, folds = [], [], []
            for i, k in enumerate(active):
                x, y, _, fold = self.data[k]["val"]
                index = torch.as_tensor(batches[i][step], device=self.device)
                inputs.append(self.members[k].module.encode(x[index]))
                targets.append(y[index])
                folds.append(None if fold is None else fold[index])
            layer_spikes: list[Tensor] = []
            predictions = [  # the members that score each row (with data.folds: out of fold)
                self.members[k].module.fold_view(p, folds[i], training=False)
                for i, (k, p) in enumerate(
                    zip(active, self.network(inputs, active, layer_spikes if stats else None))
                )
            ]
            if stats:  # each member's share of every layer's spikes, as its spike statistics see them
                batch = targets[0].shape[0]
                for i, k in enumerate(active):
                    layers = [
                        RecurrenceOutput(s[:, i * batch : (i + 1) * batch], None, None) for s in layer_spikes
                    ]
                    activity[k].update(inputs[i], NetworkOutput(layers[-1].spikes, layers))
            values = torch.stack(
                [self.members[k].module.loss(predictions[i], targets[i]) for i, k in enumerate(active)]
            ).tolist()
            for i, k in enumerate(active):
                module = self.members[k].module
                batch = targets[i].shape[0]
                sums[k][0] += values[i] * batch
                sums[k][1] += batch
                module.eval_loss_errors["val"].update(module.row_losses(predictions[i], targets[i]))
                module.metrics["val"].update(
                    module.predict_values(predictions[i]), module.metric_target(targets[i])
                )
        self._end_validation(epoch, active, sums, activity if stats else None)

    def _end_validation(
        self, epoch: int, active: list[int], sums: dict[int, list], activity: dict[int, Any] | None
    ) -> None:
        """Each member's validation logs and spike statistics, then its checkpoint and stopping
        rules (a member whose validation loss is not finite fails)."""
        for k in active:
            member = self.members[k]
            module = member.module
            module.model.train()
            logs = dict(self._epoch_logs.get(k, {}))
            logs["val/loss"] = sums[k][0] / max(sums[k][1], 1)
            logs["val/loss_se"] = float(module.eval_loss_errors["val"].compute())
            module.eval_loss_errors["val"].reset()
            logs.update({n: float(v) for n, v in module.metrics["val"].compute().items()})
            module.metrics["val"].reset()
            self._log(member, logs)
            if activity is not None and activity[k].state:
                scalars = {
                    f"val/spikes/{layer.name}/{key}": value
                    for layer in activity[k].layer_stats()
                    for key, value in layer.scalars().items()
                }
                for logger in member.loggers:  # as the SpikeStatistics callback logs them
                    logger.log_metrics(
                        {**scalars, "epoch": float(epoch)}, step=max(member.global_step - 1, 0)
                    )
            if not math.isfinite(logs["val/loss"]):
                self._fail(k, f"the validation loss became {logs['val/loss']:g}", epoch, "validation")
                continue
            self._after_validation(member, epoch, logs)

    def _after_validation(self, member: Member, epoch: int, logs: dict[str, float]) -> None:
        """Lightning's ModelCheckpoint (best by ``monitor``) and EarlyStopping rules, per member."""
        if self.monitor is not None and self.monitor not in logs:
            raise KeyError(f"monitor={self.monitor!r} is not a validation metric; have {sorted(logs)}")
        if self.checkpointing and self.monitor is not None:
            current = logs[self.monitor]
            current = (math.inf if self.mode == "min" else -math.inf) if math.isnan(current) else current
            if member.best_checkpoint is None or improves(current, member.best_score, self.mode):
                member.best_score = current
                member.best_checkpoint = self._checkpoint(member, epoch)
        if member.stopping is not None and should_stop(member.stopping, logs[member.stopping.monitor]):
            member.epochs = epoch + 1
            if self.checkpointing:
                member.last_checkpoint = self._checkpoint(member, epoch)
            member.stopped = True

    # ------------------------------------------------------------------------------- output
    def _log(self, member: Member, logs: dict[str, float]) -> None:
        # at the step Lightning uses for epoch-end metrics (the epoch's last batch)
        for logger in member.loggers:
            logger.log_metrics(logs, step=max(member.global_step - 1, 0))

    def _checkpoint(self, member: Member, epoch: int) -> dict[str, Any]:
        """What changes between a member's checkpoints: epoch, step, weights (copied to the CPU)
        and the noise generator's state. :func:`checkpoint_dict` adds the rest when it is saved."""
        module = member.module
        snapshot: dict[str, Any] = {
            "epoch": epoch,
            "global_step": member.global_step,
            "state_dict": {k: v.detach().to("cpu", copy=True) for k, v in self._states[id(member)].items()},
        }
        module.on_save_checkpoint(snapshot)
        return snapshot


class PopulationLoop(L.LightningModule):
    """A population inside Lightning's fit loop, with manual optimization: each batch index is
    one optimizer step of every running member (:meth:`PopulationTrainer.train_step`, on each
    member's own batch of that epoch); an epoch's end runs the members' training metrics,
    validation, checkpoint and early-stopping rules (:meth:`PopulationTrainer.end_epoch`), and
    the fit stops when no member is left running. The members' modules stay the population's:
    this module holds no parameters of its own."""

    def __init__(self, population: PopulationTrainer) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.population = population
        self.epoch_state: tuple[list[int], dict[int, list], dict[int, list], dict[int, list]] | None = None
        self.start = time.perf_counter()

    def train_dataloader(self) -> torch.utils.data.DataLoader:
        steps = len(self.population.data[0]["train"][2])
        return torch.utils.data.DataLoader(range(steps), batch_size=None)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return self.population.optimizer

    def on_train_epoch_start(self) -> None:
        active = self.population.active()
        batches = self.population.epoch_batches(self.current_epoch, active)
        self.epoch_state = (active, batches, {k: [0.0, 0] for k in active}, {k: [] for k in active})

    def on_train_batch_start(self, batch: int, batch_idx: int) -> int | None:
        members = self.population.members
        return None if any(not members[k].stopped for k in self.epoch_state[0]) else -1  # -1: epoch over

    def training_step(self, batch: int, batch_idx: int) -> None:
        _, batches, sums, seen = self.epoch_state
        self.population.train_step(self.current_epoch, int(batch), batches, sums, seen)

    def on_train_epoch_end(self) -> None:
        active, _, sums, seen = self.epoch_state
        self.population.end_train_epoch(self.current_epoch, active, sums, seen)
        self.population.end_epoch(self.current_epoch, time.perf_counter() - self.start)
        self.trainer.should_stop = not self.population.active()


def checkpoint_dict(member: Member, snapshot: dict[str, Any]) -> dict[str, Any]:
    """A snapshot as the Lightning checkpoint of a single model (what ``nmsnn-train`` writes,
    less the training-loop and optimizer states)."""
    module, dm = member.module, member.datamodule
    return {
        "pytorch-lightning_version": L.__version__,
        "hparams_name": None,
        "hyper_parameters": dict(module.hparams),
        "datamodule_hparams_name": None,
        "datamodule_hyper_parameters": dict(dm.hparams),
        DATAMODULE_KEY: dm.state_dict(),
        **snapshot,
    }


def checkpoint_paths(cfg: DictConfig, out_dir: Path) -> tuple[Path, Path | None] | None:
    """Where a job's ``model_checkpoint`` config puts its best and last checkpoints (last: ``None``
    without ``save_last``); ``None`` without checkpointing. Resolve it inside the job (its paths
    refer to Hydra's job directory)."""
    node = (cfg.get("callbacks") or {}).get("model_checkpoint")
    if node is None:
        return None
    directory = Path(node.get("dirpath") or out_dir / "checkpoints")
    best = directory / f"{node.get('filename') or 'best'}.ckpt"
    return best, directory / "last.ckpt" if node.get("save_last") else None


def save_checkpoints(member: Member) -> str | None:
    """Write the member's best and last checkpoints (see :func:`checkpoint_paths`); return the path
    to test (best), or ``None`` without checkpointing."""
    paths = member.paths
    if paths is None or member.best_checkpoint is None:
        return None
    best, last = paths
    # written beside their names and renamed (a full disk or a kill leaves no partial file)
    write_atomic(
        best, lambda tmp: torch.save(checkpoint_dict(member, member.best_checkpoint), tmp), overwrite=True
    )
    if last is not None and member.last_checkpoint is not None:
        write_atomic(
            last, lambda tmp: torch.save(checkpoint_dict(member, member.last_checkpoint), tmp), overwrite=True
        )
    return str(best)
