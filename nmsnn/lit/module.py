"""The LightningModule: a :class:`~nmsnn.core.layers.SpikingModel`, its loss, metrics and optimizer.

All constructor arguments are plain values (numbers, strings, lists, dicts), saved with
``save_hyperparameters``: a checkpoint rebuilds the model without unpickling any object.
"""

from __future__ import annotations

import inspect
import logging
import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from omegaconf import DictConfig, ListConfig, OmegaConf
from torch import Tensor
from torchmetrics import MeanMetric

from nmsnn.core.encoders import build_encoder, resolve_encoder
from nmsnn.core.ensemble import check_members, fold_members
from nmsnn.core.layers import (
    ModelOutput,
    NetworkOutput,
    SpikingModel,
    SpikingNetwork,
    TimeAverageHead,
    neuron_configs,
)
from nmsnn.core.neurons import DEFAULT_KIND, neuron_model
from nmsnn.errors import ConfigError
from nmsnn.lit.distributed import destroy_process_group_at_exit
from nmsnn.lit.metrics import MeanStandardError, build_metrics
from nmsnn.lit.targets import check_checkpoint_targets

log = logging.getLogger(__name__)

# The module, not the DataModule, owns the encoder (a checkpoint or an export must carry it), so
# the encoding hook lives here on purpose; Lightning's notice about that is noise.
warnings.filterwarnings("ignore", message=".*overridden `on_after_batch_transfer` in `LightningModule`.*")

TASKS = ("classification", "regression")

DEFAULT_OPTIMIZER: dict[str, Any] = {"_target_": "torch.optim.AdamW", "_partial_": True, "lr": 3e-3}
# The module's settings that default to ``auto``, per task, each measured on the tabular suite
# (README, "Why these defaults"). optimizer.weight_decay: strong shrinkage keeps a classifier's
# logits from chasing the last training rows; a regressor's output must reach the standardized
# target's scale, which strong decay prevents (its hidden units fall silent). ensemble and hidden:
# a regressor averages four networks of 64 (the small tables' variance falls; four of 128 gained
# no more for twice the work), a classifier gained nothing from members and keeps one of 128.
AUTO_WEIGHT_DECAY = {"classification": 3.0, "regression": 0.1}
AUTO_ENSEMBLE = {"classification": 1, "regression": 4}
AUTO_HIDDEN = {"classification": [128], "regression": [64]}
# model.scheduler by name: the built-in schedules (any other value is a Hydra scheduler config)
SCHEDULES: dict[str, dict[str, Any]] = {
    "warmup_cosine": {"_target_": "nmsnn.lit.schedules.warmup_cosine", "interval": "step"},
}


def plain(value: Any) -> Any:
    """Turn OmegaConf containers into plain dicts and lists (checkpoints hold plain values)."""
    if isinstance(value, (DictConfig, ListConfig)):
        return OmegaConf.to_container(value, resolve=True)
    return value


def neuron_settings(given: Mapping[str, Any]) -> dict[str, Any]:
    """The neuron settings a checkpoint records: every setting of the chosen model (``kind``,
    default ``lif``), its own defaults where ``given`` leaves one out."""
    kind = given.get("kind", DEFAULT_KIND)
    return {**neuron_model(kind).settings(), **given, "kind": kind}


def build_model(h: Mapping[str, Any]) -> SpikingModel:
    """Encoder, spiking network and head from a module's (checked) hyperparameters."""
    encoder = build_encoder(h["encoder"], h["time_steps"], settings=h.get("encoder_params"))
    sizes = [h["num_inputs"] * encoder.expansion, *h["hidden"], h["num_outputs"]]
    neurons = neuron_configs(h["neuron"], len(sizes) - 1, h["task"])
    network = SpikingNetwork(
        sizes, neurons, readout=h["readout"], backend=h["backend"], init=h["init"], ensemble=h["ensemble"]
    )
    return SpikingModel(encoder, network, TimeAverageHead(h["burn_in"], h["reduce"]))


def ensemble_size(ensemble: int | str | None, task: str, folds: int) -> int:
    """``model.ensemble`` as a member count: ``auto`` is the task's entry of
    :data:`AUTO_ENSEMBLE`, ``None`` is 1, each raised to the next multiple of ``folds`` (each
    fold is held out by the same number of members); a given count must be such a multiple."""
    if isinstance(folds, bool) or not isinstance(folds, int) or folds < 0 or folds == 1:
        raise ConfigError(f"data.folds must be 0 (one validation split) or an integer >= 2, got {folds!r}.")
    if ensemble in ("auto", None):
        base = AUTO_ENSEMBLE[task] if ensemble == "auto" else 1
        return -(-base // folds) * folds if folds else base
    ensemble = check_members(ensemble)
    if folds and ensemble % folds:
        raise ConfigError(
            f"model.ensemble={ensemble} does not divide into data.folds={folds}: each fold is held "
            f"out by the same number of members; use a multiple of {folds}, or ensemble=auto."
        )
    return ensemble


def check_task(task: str, num_outputs: int) -> None:
    """The task must be known and the output count fit it."""
    if task not in TASKS:
        raise ConfigError(f"task={task!r} is not a task; use one of {TASKS}.")
    if task == "regression" and num_outputs != 1:
        raise ConfigError(f"regression predicts one value; got num_outputs={num_outputs}.")
    if task == "classification" and num_outputs < 2:
        raise ConfigError(f"classification needs at least 2 classes; got {num_outputs}.")


def hidden_sizes(hidden: Any, task: str) -> list[int]:
    """``model.hidden`` as a list of positive layer sizes (one int is one layer; ``auto`` is the
    task's entry of :data:`AUTO_HIDDEN`)."""
    hidden = plain(hidden)
    hidden = AUTO_HIDDEN[task] if hidden == "auto" else hidden
    hidden = [hidden] if isinstance(hidden, int) and not isinstance(hidden, bool) else list(hidden)
    if any(isinstance(h, bool) or not isinstance(h, int) or h < 1 for h in hidden):
        raise ConfigError(
            f"model.hidden must list positive layer sizes, e.g. [128] or [64,64] (or be auto); got {hidden}."
        )
    if not hidden:
        log.warning(
            "model.hidden=[]: no hidden spiking layer; the output layer reads the encoded input "
            "directly (a single-layer network)."
        )
    return hidden


def check_scheduler_name(scheduler: Any) -> None:
    """A scheduler given by name must be a built-in one."""
    if isinstance(scheduler, str) and scheduler not in SCHEDULES:
        raise ConfigError(
            f"model.scheduler={scheduler!r} is not a built-in schedule ({', '.join(SCHEDULES)}); "
            "give a scheduler config instead, e.g. '{_target_:torch.optim.lr_scheduler.StepLR,step_size:20}'."
        )


def check_optimizer_numbers(optimizer: dict[str, Any]) -> None:
    """The optimizer's learning rate must be a positive number and its weight decay a number >= 0
    (or ``auto``): checked here, where the message can name the setting."""
    for key, wanted in (("lr", "a positive number"), ("weight_decay", "a number >= 0 or auto")):
        value = optimizer.get(key)
        if key not in optimizer or (key == "weight_decay" and value == "auto"):
            continue
        number = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        if not number or value < 0 or (key == "lr" and value == 0):
            raise ConfigError(f"model.optimizer.{key}={value!r} must be {wanted}.")


class StepActivity:
    """What one evaluation step computed: the encoded input ``[T, B, F]`` and every layer's
    activity. A plain object on purpose: Lightning walks (and copies) collections returned by a
    step, and this one holds every layer's ``[T, B, H]`` tensors."""

    __slots__ = ("inputs", "network")

    def __init__(self, inputs: Tensor, network: NetworkOutput) -> None:
        self.inputs, self.network = inputs, network


def output_values(
    prediction: Tensor,
    task: str,
    target_mean: float = 0.0,
    target_std: float = 1.0,
    target_transform: str = "none",
) -> Tensor:
    """What a model's raw output means: softmax probabilities ``[B, C]`` for classification,
    ``mean + std * output`` (``[B]``) for regression, mapped back through ``target_transform``.
    An ensemble's output ``[B, K, O]`` means its members' mean probabilities or values."""
    if task == "classification":
        values = torch.softmax(prediction.float(), dim=-1)
    else:
        values = target_values(prediction.float().squeeze(-1), target_mean, target_std, target_transform)
    return values.mean(1) if prediction.dim() == 3 else values


def target_values(scaled: Tensor, target_mean: float, target_std: float, target_transform: str) -> Tensor:
    """Regression values on the target's own scale from the scale the model learns."""
    values = scaled * target_std + target_mean
    if target_transform == "log1p":
        return torch.expm1(values)
    if target_transform != "none":
        raise ValueError(f"unknown target_transform {target_transform!r}")
    return values


class SpikingModule(L.LightningModule):
    """Classification or regression with a spiking network read out by time averaging.

    Args:
        task: ``"classification"`` (softmax cross-entropy) or ``"regression"`` (MSE on the
            standardized target).
        num_inputs: number of input features after preprocessing.
        num_outputs: number of classes, or 1 for regression.
        hidden: sizes of the hidden spiking layers (any depth and width; one int: one layer), or
            ``auto``: the task's entry of :data:`AUTO_HIDDEN` (what is saved is what was built).
        neuron: neuron model settings: ``kind`` (``lif``, ``alif``, ``lif_hard``, see
            :mod:`nmsnn.core.neurons`) and that model's fields; a list value
            gives one value per layer, output layer included.
        encoder: ``direct`` | ``receptive_field`` | ``uniform_noise`` | ``bernoulli``, or ``auto``:
            the task's entry of :data:`nmsnn.core.encoders.BY_TASK` (the chosen one is what is
            saved); or a config mapping ``{kind: ..., <setting>: ...}`` (``conf/model/encoder/``).
        encoder_params: the encoder's settings (``fields``, ``span`` of ``receptive_field``); the
            checkpoint records all of them.
        time_steps: number of simulated steps T.
        burn_in: steps ignored by the time-averaging head.
        readout: ``integrator`` | ``membrane`` | ``spikes`` (see :class:`SpikingNetwork`).
        reduce: ``mean`` or ``sum`` over the kept steps.
        init: ``calibrated`` (every layer fires at any depth) or ``torch`` (PyTorch's default).
        ensemble: K networks of these sizes trained together as one (each on its own loss) and
            averaged at prediction (see :mod:`nmsnn.core.ensemble`); 1: a single network; ``auto``:
            the task's entry of :data:`AUTO_ENSEMBLE`; ``None``: one network, or one per fold
            with ``folds``. ``auto`` and ``None`` round up to a multiple of ``folds``.
        backend: recurrence implementation (``auto``, ``reference``, ...).
        optimizer: Hydra config of a partial optimizer (``_target_``, ``_partial_: true``, ...).
        scheduler: optional LR scheduler: a name of :data:`SCHEDULES` (``warmup_cosine``) or a
            Hydra config of a partial scheduler, with optional ``monitor``, ``interval`` and
            ``frequency`` keys for Lightning.
        target_mean, target_std, target_transform: regression target scaling; predictions and
            metrics are on the original scale ``y = mean + std * output`` (``target_transform``
            ``log1p``: ``y = expm1(mean + std * output)``).
        folds: the data's validation folds (``data.folds``; 0: one validation split). With F
            folds, ensemble member k holds out the rows of fold ``k % F``: it trains on the
            other folds, and validation scores each row by the members that never trained on
            it (see :func:`~nmsnn.core.ensemble.fold_members`).
    """

    def __init__(
        self,
        task: str,
        num_inputs: int,
        num_outputs: int,
        hidden: Sequence[int] | str = (128,),
        neuron: Mapping[str, Any] | None = None,
        encoder: str | Mapping[str, Any] = "uniform_noise",
        encoder_params: Mapping[str, Any] | None = None,
        time_steps: int = 16,
        burn_in: int = 0,
        readout: str = "integrator",
        reduce: str = "mean",
        init: str = "calibrated",
        ensemble: int | str | None = None,
        backend: str = "auto",
        optimizer: Mapping[str, Any] | None = None,
        scheduler: str | Mapping[str, Any] | None = None,
        target_mean: float = 0.0,
        target_std: float = 1.0,
        target_transform: str = "none",
        folds: int = 0,
    ) -> None:
        super().__init__()
        check_task(task, num_outputs)
        hidden = hidden_sizes(hidden, task)
        ensemble = ensemble_size(plain(ensemble), task, folds)
        neuron = neuron_settings(plain(neuron) or {})
        encoder, encoder_params = resolve_encoder(plain(encoder), plain(encoder_params), task)
        optimizer = plain(optimizer) or dict(DEFAULT_OPTIMIZER)
        check_optimizer_numbers(optimizer)
        scheduler = plain(scheduler)
        check_scheduler_name(scheduler)
        target_mean, target_std, target_transform = (
            float(target_mean),
            float(target_std),
            str(target_transform),
        )
        self.save_hyperparameters()  # every argument above, as checked and converted here
        self.model = build_model(self.hparams)
        self.task = task
        self.metrics = torch.nn.ModuleDict(
            {s: build_metrics(task, num_outputs, prefix=f"{s}/") for s in ("val", "test")}
        )
        self.train_metrics = build_metrics(task, num_outputs, prefix="train/")
        # the evaluation loss as a row-weighted mean that syncs its sums across DDP ranks
        # (Lightning's own sync_dist mean came out wrong when ranks held different row counts)
        self.eval_losses = torch.nn.ModuleDict({stage: MeanMetric() for stage in ("val", "test")})
        # and its standard error over rows ({stage}/loss_se: how much of a difference in val/loss
        # between two runs is noise; a sweep's one-standard-error pick reads it)
        self.eval_loss_errors = torch.nn.ModuleDict({stage: MeanStandardError() for stage in ("val", "test")})
        self._seed_noise()
        self._train_loss: list = []  # (loss * rows, rows) pairs of this epoch's steps

    def _seed_noise(self) -> None:
        """The training noise has its own stream, seeded from the global RNG at construction (so
        by ``seed``): no other draw (a DataLoader's base seed, a library) can shift it, and a
        population member reproduces exactly the stream it would see alone."""
        self.noise_seed = int(torch.randint(0, 2**62, ()).item())
        self._noise_generators: dict[str, torch.Generator] = {}

    # ----------------------------------------------------------------------------- forward
    def forward(self, x: Tensor) -> ModelOutput:
        """Rows ``[B, F]`` (or an encoded train ``[T, B, F]``) -> prediction and activity."""
        return self.model(x)

    def on_after_batch_transfer(self, batch: dict[str, Tensor], dataloader_idx: int) -> dict:
        """Encode rows into an input train ``[T, B, F]`` on the device, after the transfer."""
        return {**batch, "x": self.encode(batch["x"])}

    def encode(self, x: Tensor) -> Tensor:
        """Rows ``[B, F]`` -> input train ``[T, B, F]``: training noise from this model's own
        generator (:meth:`noise_generator`), the frozen evaluation table otherwise."""
        generator = self.noise_generator(x.device) if self.model.encoder.training else None
        return self.model.encoder(x, generator)

    def noise_generator(self, device: torch.device | str) -> torch.Generator:
        """The generator of this model's training noise on ``device`` (created on first use)."""
        device = torch.device(device)
        key = str(device)
        if key not in self._noise_generators:
            generator = torch.Generator(device=device)
            generator.manual_seed(self.noise_seed)
            self._noise_generators[key] = generator
        return self._noise_generators[key]

    def __getstate__(self) -> dict[str, Any]:
        # generators cannot be pickled (ddp_spawn pickles the module): the copy starts its
        # streams afresh from noise_seed, as this model would
        state = super().__getstate__()
        return {**state, "_noise_generators": {}}

    def predict_values(self, prediction: Tensor) -> Tensor:
        """Class probabilities ``[B, C]``, or regression values ``[B]`` on the original scale."""
        h = self.hparams
        return output_values(prediction, self.task, h.target_mean, h.target_std, h.target_transform)

    @torch.no_grad()
    def predict_rows(self, x: Tensor, batch_size: int = 4096) -> Tensor:
        """Deterministic predictions for preprocessed rows ``x [N, F]`` (see :meth:`predict_values`)."""
        was_training = self.training
        self.eval()
        try:
            parts = [
                self.predict_values(self(chunk.to(self.device)).prediction).cpu()
                for chunk in x.split(batch_size)
            ]
        finally:
            self.train(was_training)
        return torch.cat(parts)

    # ----------------------------------------------------------------------------- steps
    def loss(self, prediction: Tensor, y: Tensor) -> Tensor:
        """Cross-entropy or MSE, the mean over rows; an ensemble's ``[B, K, O]``: the mean of
        its members' losses (each member learns on its own, as TabM's members do)."""
        return self._losses(prediction, y, "mean")

    def row_losses(self, prediction: Tensor, y: Tensor) -> Tensor:
        """Each row's term of :meth:`loss`, ``[B]`` (an ensemble's: the mean over its members)."""
        rows = self._losses(prediction, y, "none")
        return rows.reshape(prediction.shape[0], -1).mean(1) if prediction.dim() == 3 else rows

    def _losses(self, prediction: Tensor, y: Tensor, reduction: str) -> Tensor:
        if prediction.dim() == 3:
            y = y.unsqueeze(1).expand(-1, prediction.shape[1])
            if self.task == "classification":
                prediction, y = prediction.flatten(0, 1), y.flatten()
        if self.task == "classification":
            return F.cross_entropy(prediction.float(), y, reduction=reduction)
        return F.mse_loss(prediction.float().squeeze(-1), y, reduction=reduction)

    def fold_view(self, prediction: Tensor, fold: Tensor | None, training: bool) -> Tensor:
        """The outputs that learn from (``training``) or score (otherwise) rows of folds
        ``fold``: the members that train on each row, or those that hold it out. Rows without a
        fold (the test split, new rows) and a model without folds: every member."""
        if fold is None or not self.hparams.get("folds"):
            return prediction
        return fold_members(prediction, fold, self.hparams.folds, held_out=not training)

    def _step(self, batch: dict[str, Tensor], stage: str) -> dict[str, Any]:
        out = self(batch["x"])
        prediction = self.fold_view(out.prediction, batch.get("fold"), training=stage == "train")
        loss = self.loss(prediction, batch["y"])
        metrics = self.train_metrics if stage == "train" else self.metrics[stage]
        metrics.update(self.predict_values(prediction), self.metric_target(batch["y"]))
        batch_size = batch["y"].shape[0]
        if stage == "train":  # logged once per epoch, in on_train_epoch_end
            self._train_loss += (loss.detach() * batch_size, batch_size)
        else:  # the loss and the metrics sync themselves across ranks
            self.eval_losses[stage].update(loss.detach(), weight=batch_size)
            self.log(f"{stage}/loss", self.eval_losses[stage], on_step=False, on_epoch=True, prog_bar=True)
            # the rows' terms again rather than the loss as their mean: a mean of the terms may
            # round apart from the reduced loss, and val/loss picks the checkpoint
            self.eval_loss_errors[stage].update(self.row_losses(prediction, batch["y"]))
            self.log(f"{stage}/loss_se", self.eval_loss_errors[stage], on_step=False, on_epoch=True)
            self.log_dict(metrics, on_step=False, on_epoch=True, prog_bar=True, batch_size=batch_size)
        # the activity goes to callbacks (spike statistics) without a second forward pass
        return {"loss": loss, "activity": StepActivity(batch["x"], out.network)}

    def metric_target(self, y: Tensor) -> Tensor:
        """Targets on the scale the metrics use (original scale for regression)."""
        if self.task == "classification":
            return y
        h = self.hparams
        return target_values(y, h.target_mean, h.target_std, h.target_transform)

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        with self.model.network.hidden_activity(False):  # only the loss is kept
            return self._step(batch, "train")["loss"]

    def on_train_epoch_start(self) -> None:
        self._train_loss = []

    def _reset_evaluation(self, stage: str) -> None:
        """Start an evaluation epoch from empty metric and loss sums. After a fit in spawned DDP
        workers, the main process's metric objects came back holding the workers' last sums, and
        a later validate() in new workers added them to its own and reported wrong values."""
        self.metrics[stage].reset()
        self.eval_losses[stage].reset()
        self.eval_loss_errors[stage].reset()

    def on_validation_epoch_start(self) -> None:
        self._reset_evaluation("val")

    def on_test_epoch_start(self) -> None:
        self._reset_evaluation("test")

    def on_train_epoch_end(self) -> None:
        """Log the epoch's training loss (mean over rows, this rank's) and metrics. Logging them
        at every step, as the evaluation steps do, cost a fifth of a CPU training step on the
        seed's setting (Lightning moves every logged Metric to the device at each call); the
        logged epoch values are the same."""
        losses, rows = self._train_loss[0::2], sum(self._train_loss[1::2])
        if rows:
            self.log("train/loss", torch.stack(losses).sum() / rows, prog_bar=True)
        if any(metric.update_called for metric in self.train_metrics.values()):
            self.log_dict(self.train_metrics.compute())
        self.train_metrics.reset()
        self._train_loss = []

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> dict[str, Any]:
        return self._step(batch, "val")

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> dict[str, Any]:
        return self._step(batch, "test")

    def predict_step(self, batch: dict[str, Tensor], batch_idx: int, dataloader_idx: int = 0) -> Tensor:
        return self.predict_values(self(batch["x"]).prediction)

    # ----------------------------------------------------------------------------- state
    def setup(self, stage: str) -> None:
        """In a distributed run, destroy the process group when this process exits (see
        :mod:`nmsnn.lit.distributed`: gloo's workers can otherwise abort the exit)."""
        destroy_process_group_at_exit()

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Save the training noise's generator states (and torch's global RNG state) so that a
        resumed run continues exactly."""
        checkpoint["nmsnn_rng"] = {
            "torch": torch.get_rng_state(),
            "noise_seed": self.noise_seed,
            "noise": {key: g.get_state() for key, g in self._noise_generators.items()},
        }
        if torch.cuda.is_available():
            checkpoint["nmsnn_rng"]["cuda"] = torch.cuda.get_rng_state_all()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Refuse a checkpoint that names a callable (:mod:`nmsnn.lit.targets`), also when Lightning
        loads it (``load_from_checkpoint``, resuming); restore the noise generators when fitting."""
        check_checkpoint_targets(checkpoint, "the checkpoint")
        state = checkpoint.get("nmsnn_rng")
        if not state or self._trainer is None or self._trainer.state.fn != "fit":
            return
        torch.set_rng_state(state["torch"])
        if "cuda" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])
        self.noise_seed = int(state.get("noise_seed", self.noise_seed))
        self._noise_generators = {}
        for key, generator_state in state.get("noise", {}).items():
            if key.startswith("cuda") and not torch.cuda.is_available():
                continue
            self.noise_generator(key).set_state(generator_state)

    def widest_layer(self) -> int:
        """Neurons (or inputs) of the widest layer, an ensemble's members together."""
        h = self.hparams
        return max(int(h.num_inputs), int(h.ensemble) * max(int(n) for n in [h.num_outputs, *h.hidden]))

    def epoch_metric_names(self) -> set[str]:
        """The per-epoch metrics this module logs (what ``monitor`` may watch; the spike
        statistics callback adds ``val/spikes/...``)."""
        return {"train/loss", "val/loss", *self.train_metrics.keys(), *self.metrics["val"].keys()}

    # ----------------------------------------------------------------------------- optim
    def configure_optimizers(self) -> Any:
        optimizer = self.make_optimizer()
        if not self.hparams.scheduler:
            return optimizer
        scheduler, lightning_keys = self.make_scheduler(
            optimizer, lambda: int(self.trainer.estimated_stepping_batches)
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, **lightning_keys}}

    def make_optimizer(self) -> torch.optim.Optimizer:
        """The configured optimizer over this module's parameters (``weight_decay: auto``: the
        task's value in :data:`AUTO_WEIGHT_DECAY`)."""
        settings = dict(self.hparams.optimizer)
        if settings.get("weight_decay") == "auto":
            settings["weight_decay"] = AUTO_WEIGHT_DECAY[self.task]
        # only the top-level target is called: nested configs stay plain values
        return instantiate(settings, _recursive_=False)(params=self.parameters())

    def make_scheduler(
        self, optimizer: torch.optim.Optimizer, total_steps: Callable[[], int]
    ) -> tuple[Any, dict[str, Any]]:
        """The configured scheduler over ``optimizer`` and its Lightning keys (``monitor``,
        ``interval``, ``frequency``); a scheduler target with a ``total_steps`` parameter gets the
        run's optimizer steps (``total_steps()``, asked only then)."""
        scheduler = self.hparams.scheduler
        scheduler = SCHEDULES[scheduler] if isinstance(scheduler, str) else scheduler
        scheduler_cfg = {"_partial_": True, **scheduler}  # the optimizer is passed below
        lightning_keys = {
            k: scheduler_cfg.pop(k) for k in ("monitor", "interval", "frequency") if k in scheduler_cfg
        }
        make = instantiate(scheduler_cfg, _recursive_=False)
        extra = {}
        if "total_steps" in inspect.signature(make).parameters and "total_steps" not in scheduler_cfg:
            extra["total_steps"] = int(total_steps())
        return make(optimizer=optimizer, **extra), lightning_keys
