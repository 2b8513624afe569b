"""One configured run: build the data and the model, fit, test the chosen checkpoint, report.

What ``nmsnn-train`` runs (``nmsnn.cli.train`` is its entry point), and what ``nmsnn-compare``,
the population launcher and the experiments call. Writes under ``cfg.paths.output_dir``:
checkpoints, TensorBoard events, ``metrics.json``, ``summary.md``, ``test_predictions.csv``, plots.
"""

from __future__ import annotations

import logging
import os
import re
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig, ListConfig, OmegaConf

from nmsnn.analysis.plots import close_figures
from nmsnn.analysis.report import evaluation_plots, log_figures, log_hparams_with_metrics, write_summary
from nmsnn.checkpoint import read_checkpoint
from nmsnn.console import results_table, to_log_files
from nmsnn.data.datamodule import TabularDataModule
from nmsnn.errors import ConfigError, Terminated
from nmsnn.files import reading, write_csv
from nmsnn.lit.checkpoint_io import AtomicCheckpointIO
from nmsnn.lit.module import SpikingModule
from nmsnn.predicting import labelled_predictions, predict_frame
from nmsnn.sweeps import in_multirun, parallel_jobs
from nmsnn.threads import apply_threads

log = logging.getLogger(__name__)


def instantiate_setting(node: Any, key: str, **kwargs: Any) -> Any:
    """``instantiate(node, **kwargs)``; a key its target does not take (``+trainer.max_epoch=5``)
    is a :class:`ConfigError` naming ``key``, not Hydra's multi-line instantiation error."""
    try:
        return instantiate(node, **kwargs)
    except Exception as err:
        cause = err
        while cause.__cause__ is not None and not isinstance(cause, TypeError):
            cause = cause.__cause__
        match = re.search(r"unexpected keyword argument '(\w+)'", str(cause))
        if isinstance(cause, TypeError) and match and match[1] in node:
            target = node.get("_target_", "its target")
            raise ConfigError(
                f"{key}.{match[1]} is not an argument of {target} (a typo?); remove it or use one "
                "that it takes."
            ) from None
        raise


def instantiate_group(group: DictConfig | None, name: str = "callbacks") -> list[Any]:
    """Instantiate every non-null entry of a config group such as ``callbacks`` or ``logger``."""
    return [
        instantiate_setting(node, f"{name}.{key}") for key, node in (group or {}).items() if node is not None
    ]


def _scalars(metrics: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items()}


def describe(model: SpikingModule) -> str:
    """One line for the log: layer sizes, time steps, neuron, encoder and parameter count."""
    h = model.hparams
    sizes = " -> ".join(str(n) for n in [h.num_inputs, *(h.hidden or []), h.num_outputs])
    neuron = model.model.network.layers[0].neuron  # as built (an ``auto`` option resolved)
    params = sum(p.numel() for p in model.parameters())
    kind = neuron.kind
    spikes = f"{neuron.spike_fn} spikes" if hasattr(neuron, "spike_fn") else "spikes"
    reset = f", {neuron.reset} reset" if hasattr(neuron, "reset") else ""
    members = f", an ensemble of {h.ensemble} such networks" if h.ensemble > 1 else ""
    if h.get("folds"):
        holding = "one member" if h.ensemble == h.folds else f"{h.ensemble // h.folds} members"
        members += f" ({h.folds} validation folds, {holding} holding out each)"
    return (
        f"{sizes} ({h.task}){members}, T={h.time_steps}, {kind} neuron ({spikes}{reset}), "
        f"{h.encoder} encoder, {params:,} parameters"
    )


def build(
    cfg: DictConfig, datamodule: TabularDataModule | None = None
) -> tuple[TabularDataModule, SpikingModule]:
    """Seed, then set up the data and build the model, in this order (the seed decides both).
    ``datamodule``: one already set up from these data settings, to share instead of reading
    the table again (its split and preprocessing use only its own seeds)."""
    check_run_settings(cfg)
    if cfg.get("seed") is not None:
        L.seed_everything(cfg.seed, workers=True)
    if datamodule is None:
        datamodule = instantiate(cfg.data)
    ensemble = cfg.model.get("ensemble", "auto")
    if _whole(ensemble):  # data.folds=auto must fit it (see TabularDataModule.members)
        datamodule.members = ensemble
    datamodule.setup("fit")
    if "test" not in datamodule.tensors:
        raise ConfigError("data.test_size must be > 0 for nmsnn-train: it tests the trained model.")
    monitor = cfg.get("monitor")
    if "val" not in datamodule.tensors and monitor and str(monitor).startswith("val/"):
        fallback = "train/" + str(monitor).removeprefix("val/")
        log.warning(
            "data.val_size=0 leaves no validation split: checkpoints and early stopping watch %s "
            "instead of monitor=%s.",
            fallback,
            monitor,
        )
        cfg.monitor = monitor = fallback  # the callbacks' ${monitor} (and optimized_metric) follow
    model = instantiate(cfg.model, **datamodule.model_kwargs())
    log.info("model: %s", describe(model))
    known = model.epoch_metric_names()
    if monitor and monitor not in known and not str(monitor).startswith("val/spikes/"):
        raise ConfigError(
            f"monitor={monitor} is not a metric this model logs; use one of {sorted(known)} "
            "(or a val/spikes/<layer>/<statistic>)."
        )
    return datamodule, model


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_run_settings(cfg: DictConfig) -> None:
    """The run's own settings that Hydra accepts as any type: the seed, and a length of training."""
    seed = cfg.get("seed")
    if seed is not None and not (_whole(seed) and 0 <= seed < 2**32):
        raise ConfigError(
            f"seed={seed!r} must be a whole number from 0 to {2**32 - 1} (or null: a random seed)."
        )
    trainer = cfg.get("trainer") or {}
    for key in ("max_epochs", "max_steps"):
        value = trainer.get(key)
        if value is None or value == -1:
            continue
        if not _whole(value) or value < 1:
            raise ConfigError(
                f"trainer.{key}={value!r} must be a whole number >= 1 (or -1: no limit); a run that "
                "trains nothing would report its untrained model."
            )


def build_trainer(cfg: DictConfig, datamodule: TabularDataModule, loggers: Any = None) -> L.Trainer:
    """The configured Trainer with its callbacks and loggers (``loggers``: those to use instead of
    the configured ones; no validation without a validation split)."""
    no_validation = {} if "val" in datamodule.tensors else {"limit_val_batches": 0}
    if loggers is None:
        loggers = instantiate_group(cfg.get("logger"), "logger") or False
    plugins = {} if cfg.trainer.get("plugins") else {"plugins": [AtomicCheckpointIO()]}
    return instantiate_setting(
        cfg.trainer,
        "trainer",
        callbacks=instantiate_group(cfg.get("callbacks")),
        logger=loggers,
        **no_validation,
        **plugins,
    )


def step_work(datamodule: TabularDataModule, model: SpikingModule, members: int = 1) -> int:
    """Elements one time step of the recurrence touches: training rows per batch x the widest
    layer x population members (what the thread count is chosen from)."""
    return datamodule.train_batch_size() * model.widest_layer() * members


def train(cfg: DictConfig) -> dict[str, float]:
    """Fit, validate and test the configured model; return the metrics of the tested checkpoint
    (no file it writes may replace the data file it reads)."""
    with reading({"data.path": (cfg.get("data") or {}).get("path")}):
        return _train(cfg)


def _train(cfg: DictConfig) -> dict[str, float]:
    which = cfg.get("test_ckpt", "best")
    if which not in ("best", "last"):
        raise ConfigError(f"test_ckpt={which!r} must be 'best' or 'last'.")
    out_dir = Path(cfg.paths.output_dir)
    check_launch(cfg)
    resume_from = resume_checkpoint(cfg, out_dir)
    datamodule, model = build(cfg)
    apply_threads(cfg.get("threads"), step_work(datamodule, model), parallel_jobs())
    if resume_from:
        check_resumable(resume_from, model, datamodule)
    trainer = build_trainer(cfg, datamodule)
    start = time.perf_counter()
    try:
        trainer.fit(model, datamodule=datamodule, ckpt_path=resume_from)
    except SIGTERMException:
        last = out_dir / "checkpoints" / "last.ckpt"
        resumes = f"the same command resumes from {last}" if last.exists() else "no epoch had completed"
        message = f"terminated by SIGTERM in epoch {trainer.current_epoch + 1}; {resumes}."
        log.error(message)
        raise Terminated(message) from None
    fit_seconds = time.perf_counter() - start

    ckpt_path = _test_checkpoint(trainer, which)
    return report(cfg, trainer, model, datamodule, ckpt_path, completed_epochs(trainer), fit_seconds)


def wants_plots(cfg: DictConfig) -> bool:
    """``plots``: true, false, or auto (a single run's evaluation plots, none for each job of a
    sweep, whose summary figure compares the jobs instead)."""
    setting = cfg.get("plots", "auto")
    if setting not in (True, False, "auto"):
        raise ConfigError(f"plots={setting!r} must be true, false or auto.")
    return (not in_multirun()) if setting == "auto" else bool(setting)


def report(
    cfg: DictConfig,
    trainer: L.Trainer,
    model: SpikingModule,
    datamodule: TabularDataModule,
    ckpt_path: str | None,
    epochs: int,
    fit_seconds: float | None = None,
    step: int | None = None,
) -> dict[str, float]:
    """Validate and test ``ckpt_path`` (or the model's weights), then write the run's report:
    ``test_predictions.csv``, plots, logged hyperparameters, ``metrics.json`` (with a ``run``
    record: epochs, the tested checkpoint's epoch, seconds) and ``summary.md``.
    Returns the metrics (validation, test and ``epochs``)."""
    start = time.perf_counter()
    step = trainer.global_step if step is None else step
    metrics = _evaluate(trainer, model, datamodule, ckpt_path, step)
    metrics["epochs"] = float(epochs)
    tested_epoch = epochs
    if ckpt_path:  # the tested weights, also in this process when the strategy spawned workers
        saved = torch.load(ckpt_path, map_location="cpu", weights_only=True)
        model.load_state_dict(saved["state_dict"])
        tested_epoch = int(saved["epoch"]) + 1
    if not trainer.is_global_zero:
        return metrics
    out_dir = Path(cfg.paths.output_dir)
    plots = _write_predictions_and_plots(cfg, trainer, model, datamodule, step)
    params = {"model": dict(model.hparams), "data": dict(datamodule.hparams), "seed": cfg.get("seed")}
    log_hparams_with_metrics(trainer, params, metrics)
    run = {
        "epochs": epochs,
        "tested_epoch": tested_epoch,
        "fit_seconds": None if fit_seconds is None else round(fit_seconds, 3),
        "report_seconds": round(time.perf_counter() - start, 3),
    }
    write_summary(out_dir, metrics, ckpt_path, plots, extra={"run": run})
    tested = Path(ckpt_path).name if ckpt_path else "the final weights"
    fit = "" if fit_seconds is None else f", fit in {fit_seconds:.1f} s"
    notes = [f"tested {tested} from epoch {tested_epoch} of {epochs}{fit}"]
    table = results_table(metrics, f"nmsnn-{cfg.get('task_name', 'train')}: {out_dir}", notes)
    to_log_files(f"final metrics (also in metrics.json):\n{table}")
    if in_multirun():  # one line per job; the sweep's table comes at its end
        main = [k for k in metrics if k.startswith("test/") and "/spikes/" not in k and "_per_" not in k]
        log.info("job %s: %s; %s", out_dir.name, notes[0], ", ".join(f"{k} {metrics[k]:.4g}" for k in main))
        return metrics
    print(table)
    print(f"summary: {out_dir / 'summary.md'}")
    if (out_dir / "tensorboard").is_dir():
        print(f"curves:  tensorboard --logdir {out_dir}")
    return metrics


def _evaluate(
    trainer: L.Trainer, model: SpikingModule, datamodule: TabularDataModule, ckpt_path: str | None, step: int
) -> dict[str, float]:
    """Validation (not logged: a point after the last epoch would end the val/* curves with the
    best epoch's values again; they are in metrics.json and the HPARAMS tab) and test metrics,
    the test ones logged at ``step``, the run's last optimizer step (a run trained outside this
    trainer, which has not fitted, passes its own)."""
    loggers, trainer.loggers = trainer.loggers, []
    metrics: dict[str, float] = {}
    try:
        if "val" in datamodule.tensors:
            metrics.update(
                _scalars(
                    trainer.validate(model, datamodule=datamodule, ckpt_path=ckpt_path, verbose=False)[0]
                )
            )
        tested = _scalars(trainer.test(model, datamodule=datamodule, ckpt_path=ckpt_path, verbose=False)[0])
    finally:
        trainer.loggers = loggers
    for logger in loggers:
        logger.log_metrics(tested, step)
        logger.save()
    return {**metrics, **tested}


def _write_predictions_and_plots(
    cfg: DictConfig, trainer: L.Trainer, model: SpikingModule, datamodule: TabularDataModule, step: int
) -> dict[str, Path]:
    """``test_predictions.csv`` and, where plots are wanted, the plots (also to TensorBoard)."""
    out_dir = Path(cfg.paths.output_dir)
    rows = datamodule.split_frame("test")
    predictions = predict_frame(model, datamodule.preprocessor, rows, "test rows", report=False)
    labelled = labelled_predictions(predictions, rows, datamodule.preprocessor.target)
    write_csv(labelled, out_dir / "test_predictions.csv", overwrite=True)
    if not wants_plots(cfg):
        return {}
    plots, figures = evaluation_plots(datamodule.preprocessor, rows, predictions, out_dir / "plots")
    log_figures(trainer, plots, step)
    close_figures(figures)
    return plots


def completed_epochs(trainer: L.Trainer) -> int:
    """Epochs trained (read from last.ckpt when the fit ran in spawned worker processes)."""
    last = last_checkpoint(trainer)
    if trainer.current_epoch == 0 and last:
        return int(torch.load(last, map_location="cpu", weights_only=True)["epoch"]) + 1
    return trainer.current_epoch


def last_checkpoint(trainer: L.Trainer) -> str | None:
    """``last.ckpt`` of the checkpoint callback (after spawned workers too, which do not report it)."""
    callback = trainer.checkpoint_callback
    if callback is None:
        return None
    for path in (callback.last_model_path, Path(callback.dirpath or ".") / "last.ckpt"):
        if path and Path(path).is_file():
            return str(path)
    return None


def resume_checkpoint(cfg: DictConfig, out_dir: Path) -> str | None:
    """The checkpoint to resume from: ``ckpt_path`` if given, else with ``resume: auto`` the newest
    of the run directory's ``last.ckpt`` and ``interrupted.ckpt`` (a rerun of the same command with
    the same ``run_name``, or a requeued cluster job), else none."""
    if cfg.get("ckpt_path"):
        return str(cfg.ckpt_path)
    resume = cfg.get("resume", "auto")
    if resume not in ("auto", False, None, "never"):
        raise ConfigError(f"resume={resume!r} must be 'auto' or 'never' (or give ckpt_path=...).")
    if resume != "auto":
        return None
    found = [
        p for p in (out_dir / "checkpoints" / n for n in ("last.ckpt", "interrupted.ckpt")) if p.exists()
    ]
    if not found:
        return None
    newest = max(found, key=lambda p: p.stat().st_mtime)
    finished = out_dir / "metrics.json"  # written after the fit and the test: the run ended
    if finished.exists() and finished.stat().st_mtime >= newest.stat().st_mtime:
        raise ConfigError(
            f"{out_dir} holds a finished run (its results are in {finished}); nothing to resume. "
            "Use another run_name, resume=never to train it again from the start, or "
            f"ckpt_path={out_dir / 'checkpoints' / 'last.ckpt'} to train it further (e.g. with a "
            "larger trainer.max_epochs)."
        )
    log.info("resuming from %s (resume=auto; set resume=never to start over)", newest)
    return str(newest)


# settings a resumed run may change: they do not change what is trained
RESUMABLE_CHANGES = frozenset({"model.backend", "data.eval_batch_size"})


def _flat(settings: Any, prefix: str) -> dict[str, Any]:
    if isinstance(settings, (DictConfig, ListConfig)):
        settings = OmegaConf.to_container(settings, resolve=True)
    if isinstance(settings, dict):
        return {k: v for key, value in settings.items() for k, v in _flat(value, f"{prefix}.{key}").items()}
    return {prefix: settings}


def check_resumable(ckpt_path: str, model: SpikingModule, datamodule: TabularDataModule) -> None:
    """Refuse to resume a checkpoint whose model or data settings differ from this run's: the
    checkpoint's weights, neuron buffers and optimizer state would silently win over some of the new
    settings, and the run's recorded configuration would describe neither."""
    saved = read_checkpoint(ckpt_path)
    changed = []
    for prefix, now, before in (
        ("model", model.hparams, saved.get("hyper_parameters")),
        ("data", datamodule.hparams, saved.get("datamodule_hyper_parameters")),
    ):
        if before is None:
            continue
        new, old = _flat(dict(now), prefix), _flat(dict(before), prefix)
        changed += [
            f"{key}: {old.get(key)!r} -> {new.get(key)!r}"
            for key in sorted(set(new) | set(old))
            if new.get(key) != old.get(key) and key not in RESUMABLE_CHANGES
        ]
    if changed:
        raise ConfigError(
            f"{ckpt_path}: cannot resume with settings that differ from the checkpoint's "
            f"({'; '.join(changed)}). Start a new run (another run_name, or resume=never), or "
            "resume with the checkpoint's settings."
        )


def check_launch(cfg: DictConfig) -> None:
    """Refuse the one combination that cannot work: a local multirun with script-relaunching DDP."""
    strategy = str(cfg.trainer.get("strategy", "auto"))
    relaunches = strategy.startswith("ddp") and not any(k in strategy for k in ("spawn", "fork", "notebook"))
    if in_multirun() and relaunches and "SLURM_NTASKS" not in os.environ and "LOCAL_RANK" not in os.environ:
        raise ConfigError(
            f"trainer.strategy={strategy} re-launches this script once per device, which would re-run "
            "the whole sweep in every process. For a sweep on one machine use trainer=ddp_sim-style "
            "trainer.strategy=ddp_spawn, or run each job as a cluster job with "
            "hydra/launcher=submitit_slurm (one task per device); a single run (no --multirun) works with strategy=ddp."
        )


def _test_checkpoint(trainer: L.Trainer, which: str) -> str | None:
    """Path of the checkpoint to test (``best`` or ``last``); ``None``: the final weights."""
    callback = trainer.checkpoint_callback
    if callback is None:
        log.warning("no checkpoint callback: testing the final weights")
        return None
    path = callback.best_model_path if which == "best" else last_checkpoint(trainer)
    return path or last_checkpoint(trainer)
