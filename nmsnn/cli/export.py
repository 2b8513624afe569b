"""``nmsnn-export``: a checkpoint to TorchScript and ONNX, with its preprocessing as JSON."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from nmsnn.cli.common import CONFIG_PATH, entry_point, user_errors
from nmsnn.console import quiet_backend_choice, tidy_third_party_output
from nmsnn.export_targets import export_targets
from nmsnn.files import reading


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="export")
def run(cfg: DictConfig) -> None:
    with user_errors(), reading({"ckpt_path": cfg.ckpt_path}):
        export_targets(cfg.output_dir, cfg.formats, cfg.overwrite)  # before loading anything
        from nmsnn.checkpoint import load_checkpoint
        from nmsnn.export import export

        tidy_third_party_output()
        quiet_backend_choice()
        loaded = load_checkpoint(cfg.ckpt_path)
        paths = export(loaded.module, loaded.preprocessor, cfg.output_dir, cfg.formats, cfg.overwrite)
        for path in paths.values():
            print(path)


def main() -> None:
    entry_point(run)


if __name__ == "__main__":
    main()
