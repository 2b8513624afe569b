"""``nmsnn-predict``: predictions for the raw rows of a CSV or Parquet file, from a checkpoint.

Needs only the checkpoint (model, weights and fitted preprocessing) and the rows; the target
column may be present (it is ignored). Writes one output row per input row, in the input's
order, as CSV (or Parquet for an ``output_path`` ending in ``.parquet``); ``id_column=COL``
copies that input column into the output, as its first column.
"""

from __future__ import annotations

import logging

import hydra
from omegaconf import DictConfig

from nmsnn.cli.common import CONFIG_PATH, entry_point, user_errors
from nmsnn.console import quiet_backend_choice, tidy_third_party_output
from nmsnn.files import reading, refuse_existing

log = logging.getLogger(__name__)


def predict(cfg: DictConfig) -> str:
    """Write the predictions CSV and return its path."""
    with reading({"ckpt_path": cfg.ckpt_path, "input_path": cfg.input_path}):
        return _predict(cfg)


def _predict(cfg: DictConfig) -> str:
    refuse_existing(cfg.output_path, cfg.overwrite)  # before the seconds that loading takes
    from nmsnn.checkpoint import load_checkpoint
    from nmsnn.data.sources import read_table
    from nmsnn.files import write_table
    from nmsnn.predicting import predict_frame

    tidy_third_party_output()
    quiet_backend_choice()
    loaded = load_checkpoint(cfg.ckpt_path)
    rows = read_table(cfg.input_path)
    id_column = cfg.get("id_column")
    if id_column is not None and id_column not in rows.columns and str(id_column) in rows.columns:
        id_column = str(id_column)  # id_column=2024 on the command line names the column "2024"
    predictions = predict_frame(
        loaded.module, loaded.preprocessor, rows, where=str(cfg.input_path), id_column=id_column
    )
    path = write_table(predictions, cfg.output_path, overwrite=cfg.overwrite)
    log.info("wrote %d predictions to %s", len(predictions), path)
    return str(path)


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="predict")
def run(cfg: DictConfig) -> None:
    with user_errors():
        print(predict(cfg))


def main() -> None:
    entry_point(run)


if __name__ == "__main__":
    main()
