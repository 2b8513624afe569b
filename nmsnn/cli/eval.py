"""``nmsnn-eval``: score a checkpoint on a dataset with its own fitted preprocessing.

By default it scores the test split of the data the checkpoint was trained on (the split is
rebuilt from the saved seeds); ``+data.*`` overrides point it at other data, ``split=all``
scores every row in the file's order (no split, so no minimum row count or class counts: only
labels the model does not know are refused). Rows without a target value are skipped (as in
training), and counted: ``skipped_rows`` in the metrics.
"""

from __future__ import annotations

import json
import logging
import warnings
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

from nmsnn.cli.common import CONFIG_PATH, entry_point, user_errors
from nmsnn.console import format_table, quiet_backend_choice, tidy_third_party_output
from nmsnn.errors import ConfigError
from nmsnn.files import reading, refuse_existing

log = logging.getLogger(__name__)

EVAL_SPLITS = ("train", "val", "test", "all")


def evaluate(cfg: DictConfig) -> dict[str, float | int]:
    """Metrics of the checkpoint on the chosen rows, keyed ``<split>/<metric>``."""
    with reading({"ckpt_path": cfg.ckpt_path, "data.path": (cfg.data or {}).get("path")}):
        return _evaluate(cfg)


def _evaluate(cfg: DictConfig) -> dict[str, float | int]:
    if cfg.split not in EVAL_SPLITS:
        raise ConfigError(f"split={cfg.split!r} must be one of {EVAL_SPLITS}.")
    if cfg.get("predictions_path"):
        refuse_existing(cfg.predictions_path, cfg.overwrite)
    from nmsnn.checkpoint import load_checkpoint

    tidy_third_party_output()
    quiet_backend_choice()
    loaded = load_checkpoint(cfg.ckpt_path)
    overrides = OmegaConf.to_container(cfg.data, resolve=True) if cfg.data else {}
    if cfg.split == "all":  # no split: every row lands in "train", in the file's order
        overrides = {**overrides, "test_size": 0.0, "val_size": 0.0}
    datamodule = loaded.datamodule(**overrides)
    with reading({"data.path": datamodule.hparams.get("path")}):
        if cfg.get("predictions_path"):
            refuse_existing(cfg.predictions_path, cfg.overwrite)
        return _score(cfg, loaded, datamodule)


def _score(cfg: DictConfig, loaded: Any, datamodule: Any) -> dict[str, float | int]:
    import lightning as L

    from nmsnn.files import write_table
    from nmsnn.predicting import labelled_predictions, predict_frame

    datamodule.setup("test")
    if cfg.split == "all":
        rows, frames = datamodule.tensors["train"], [datamodule.split_frame("train")]
    else:
        if cfg.split not in datamodule.tensors:
            raise ConfigError(f"the data has no {cfg.split!r} split (its size is 0).")
        rows, frames = datamodule.tensors[cfg.split], [datamodule.split_frame(cfg.split)]
    datamodule.tensors = {"test": rows}
    trainer = L.Trainer(
        logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False
    )
    one_class = loaded.preprocessor.task == "classification" and len(rows.y.unique()) < 2
    with warnings.catch_warnings():
        if one_class:  # torchmetrics warns per missing class and reports AUROC 0; it is undefined
            warnings.filterwarnings("ignore", message="No (positive|negative) samples in targets")
        results = trainer.test(loaded.module, datamodule=datamodule, verbose=False)[0]
    if one_class:
        results = {k: v for k, v in results.items() if k != "test/auroc"}
        log.warning(
            "%s: the scored rows hold one class only; AUROC is undefined there and not reported.",
            datamodule.source_name,
        )
    metrics: dict[str, float | int] = {
        k.replace("test/", f"{cfg.split}/", 1): float(v) for k, v in results.items()
    }
    metrics["skipped_rows"] = int(datamodule.skipped_rows or 0)
    log.info(
        "%s: scored %d row(s) of split %r; skipped %d row(s) without a value in target column %r",
        datamodule.source_name,
        len(rows),
        cfg.split,
        datamodule.skipped_rows or 0,
        loaded.preprocessor.target,
    )
    if cfg.get("predictions_path"):
        import pandas as pd

        frame = pd.concat(frames)
        predictions = predict_frame(loaded.module, loaded.preprocessor, frame, "rows", report=False)
        labelled = labelled_predictions(predictions, frame, loaded.preprocessor.target)
        write_table(labelled, cfg.predictions_path, cfg.overwrite)
    return metrics


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="eval")
def run(cfg: DictConfig) -> None:
    with user_errors():
        metrics = evaluate(cfg)
        print(format_table(metrics, f"nmsnn-eval: {cfg.ckpt_path}"))
        print(json.dumps(metrics))


def main() -> None:
    entry_point(run)


if __name__ == "__main__":
    main()
