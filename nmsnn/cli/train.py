"""``nmsnn-train``: fit a spiking model, test its best checkpoint, report and save everything.

Writes under the run directory: checkpoints, TensorBoard events, ``metrics.json`` and
``test_predictions.csv``. Returns ``optimized_metric`` for Hydra sweepers.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import hydra
import lightning as L
from hydra.utils import instantiate
from omegaconf import DictConfig

from nmsnn.cli.common import CONFIG_PATH, format_table, user_errors
from nmsnn.errors import ConfigError
from nmsnn.predicting import predict_frame, write_atomic, write_csv

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
        predictions = predict_frame(
            model, datamodule.preprocessor, datamodule.split_frame("test"), "test rows"
        )
        write_csv(predictions, out_dir / "test_predictions.csv", overwrite=True)
        summary = {"metrics": metrics, "checkpoint": ckpt_path, "run_dir": str(out_dir)}
        write_atomic(
            out_dir / "metrics.json", lambda tmp: Path(tmp).write_text(json.dumps(summary, indent=2)), True
        )
        print(format_table(metrics, f"nmsnn-train: {out_dir}"))
        if ckpt_path:
            print(f"checkpoint: {ckpt_path}")
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
