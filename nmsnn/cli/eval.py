"""``nmsnn-eval``: score a checkpoint on a dataset with its own fitted preprocessing.

By default it scores the test split of the data the checkpoint was trained on (the split is
rebuilt from the saved seeds); ``data.*`` overrides point it at other data, ``split=all``
scores every row.
"""

from __future__ import annotations

import json
import logging

import hydra
import lightning as L
import torch
from omegaconf import DictConfig, OmegaConf

from nmsnn.checkpoint import load_checkpoint
from nmsnn.cli.common import CONFIG_PATH, format_table, user_errors
from nmsnn.data.batching import TensorRows
from nmsnn.errors import ConfigError
from nmsnn.predicting import predict_frame, write_csv

log = logging.getLogger(__name__)

EVAL_SPLITS = ("train", "val", "test", "all")


def evaluate(cfg: DictConfig) -> dict[str, float]:
    """Metrics of the checkpoint on the chosen rows, keyed ``<split>/<metric>``."""
    if cfg.split not in EVAL_SPLITS:
        raise ConfigError(f"split={cfg.split!r} must be one of {EVAL_SPLITS}.")
    loaded = load_checkpoint(cfg.ckpt_path)
    overrides = OmegaConf.to_container(cfg.data, resolve=True) if cfg.data else {}
    datamodule = loaded.datamodule(**overrides)
    datamodule.setup("test")
    if cfg.split == "all":
        parts = [datamodule.tensors[s] for s in ("train", "val", "test") if s in datamodule.tensors]
        rows = TensorRows(torch.cat([p.x for p in parts]), torch.cat([p.y for p in parts]))
        frames = [datamodule.split_frame(s) for s in ("train", "val", "test") if s in datamodule.tensors]
    else:
        if cfg.split not in datamodule.tensors:
            raise ConfigError(f"the data has no {cfg.split!r} split (its size is 0).")
        rows, frames = datamodule.tensors[cfg.split], [datamodule.split_frame(cfg.split)]
    datamodule.tensors = {"test": rows}
    trainer = L.Trainer(
        logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False
    )
    results = trainer.test(loaded.module, datamodule=datamodule, verbose=False)[0]
    metrics = {k.replace("test/", f"{cfg.split}/", 1): float(v) for k, v in results.items()}
    if cfg.get("predictions_path"):
        import pandas as pd

        frame = pd.concat(frames)
        write_csv(
            predict_frame(loaded.module, loaded.preprocessor, frame, "rows"),
            cfg.predictions_path,
            cfg.overwrite,
        )
    return metrics


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="eval")
def main(cfg: DictConfig) -> None:
    with user_errors():
        metrics = evaluate(cfg)
        print(format_table(metrics, f"nmsnn-eval: {cfg.ckpt_path}"))
        print(json.dumps(metrics))


if __name__ == "__main__":
    main()
