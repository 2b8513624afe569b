"""``nmsnn-train``: fit a spiking model, test its best checkpoint, report and save everything.

Writes under the run directory: checkpoints, TensorBoard events, ``metrics.json`` and
``test_predictions.csv``. Returns ``optimized_metric`` for Hydra sweepers.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import hydra
import lightning as L
from hydra.utils import instantiate
from omegaconf import DictConfig

from nmsnn.analysis.plots import close_figures
from nmsnn.analysis.report import evaluation_plots, log_figures, log_hparams_with_metrics, write_summary
from nmsnn.cli.common import CONFIG_PATH, format_table, user_errors
from nmsnn.errors import ConfigError
from nmsnn.predicting import predict_frame, write_csv

log = logging.getLogger(__name__)


def instantiate_group(group: DictConfig | None) -> list[Any]:
    """Instantiate every non-null entry of a config group such as ``callbacks`` or ``logger``."""
    return [instantiate(node) for node in (group or {}).values() if node is not None]


def _scalars(metrics: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items()}


def train(cfg: DictConfig) -> dict[str, float]:
    """Fit, validate and test the configured model; return the metrics of the tested checkpoint."""
    which = cfg.get("test_ckpt", "best")
    if which not in ("best", "last"):
        raise ConfigError(f"test_ckpt={which!r} must be 'best' or 'last'.")
    if cfg.get("seed") is not None:
        L.seed_everything(cfg.seed, workers=True)
    out_dir = Path(cfg.paths.output_dir)
    datamodule = instantiate(cfg.data)
    datamodule.setup("fit")
    model = instantiate(cfg.model, **datamodule.model_kwargs())
    trainer: L.Trainer = instantiate(
        cfg.trainer,
        callbacks=instantiate_group(cfg.get("callbacks")),
        logger=instantiate_group(cfg.get("logger")) or False,
    )
    trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))

    ckpt_path = _test_checkpoint(trainer, which)
    metrics: dict[str, float] = {}
    if "val" in datamodule.tensors:
        metrics.update(
            _scalars(trainer.validate(model, datamodule=datamodule, ckpt_path=ckpt_path, verbose=False)[0])
        )
    metrics.update(
        _scalars(trainer.test(model, datamodule=datamodule, ckpt_path=ckpt_path, verbose=False)[0])
    )
    metrics["epochs"] = float(trainer.current_epoch)

    if trainer.is_global_zero:
        rows = datamodule.split_frame("test")
        predictions = predict_frame(model, datamodule.preprocessor, rows, "test rows")
        write_csv(predictions, out_dir / "test_predictions.csv", overwrite=True)
        plots, figures = evaluation_plots(datamodule.preprocessor, rows, predictions, out_dir / "plots")
        log_figures(trainer, figures, trainer.global_step)
        close_figures(figures)
        params = {"model": dict(model.hparams), "data": dict(datamodule.hparams), "seed": cfg.get("seed")}
        log_hparams_with_metrics(trainer, params, metrics)
        write_summary(out_dir, metrics, ckpt_path, plots)
        print(format_table(metrics, f"nmsnn-train: {out_dir}"))
        print(f"summary: {out_dir / 'summary.md'}")
    return metrics


def _test_checkpoint(trainer: L.Trainer, which: str) -> str | None:
    """Path of the checkpoint to test (``best`` or ``last``); ``None``: the final weights."""
    callback = trainer.checkpoint_callback
    if callback is None:
        log.warning("no checkpoint callback: testing the final weights")
        return None
    path = callback.best_model_path if which == "best" else callback.last_model_path
    return path or callback.last_model_path or None


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="train")
def main(cfg: DictConfig) -> float | None:
    with user_errors():
        metrics = train(cfg)
        value = metrics.get(cfg.get("optimized_metric"))
        return value
    return None


if __name__ == "__main__":
    main()
