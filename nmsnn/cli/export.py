"""``nmsnn-export``: a checkpoint to TorchScript and ONNX, with its preprocessing as JSON."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from nmsnn.checkpoint import load_checkpoint
from nmsnn.cli.common import CONFIG_PATH, user_errors
from nmsnn.export import export


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="export")
def main(cfg: DictConfig) -> None:
    with user_errors():
        loaded = load_checkpoint(cfg.ckpt_path)
        paths = export(loaded.module, loaded.preprocessor, cfg.output_dir, cfg.formats, cfg.overwrite)
        for path in paths.values():
            print(path)


if __name__ == "__main__":
    main()
