"""TensorBoard and CSV logs are written and readable; seed=0 seeds the whole run."""

from __future__ import annotations

import pandas as pd
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from nmsnn.pipeline import train
from tests.conftest import compose_train


def test_tensorboard_and_csv_logs(tmp_path):
    train(
        compose_train(
            tmp_path, ["data=iris", "trainer.max_epochs=2", "logger=many", "trainer.log_every_n_steps=1"]
        )
    )
    events = EventAccumulator(str(tmp_path / "tensorboard")).Reload()
    tags = set(events.Tags()["scalars"])
    for tag in ("train/loss", "train/acc", "val/loss", "val/acc", "val/f1_macro", "val/auroc", "test/acc"):
        assert tag in tags, tag
    assert len(events.Scalars("val/loss")) >= 2  # one per epoch (+ the final validation)
    hparams = (tmp_path / "tensorboard" / "hparams.yaml").read_text()
    assert "decay: 0.9" in hparams and "time_steps:" in hparams and "dataset: iris" in hparams
    metrics = pd.read_csv(tmp_path / "csv" / "metrics.csv")
    assert {"train/loss", "val/loss", "val/acc"} <= set(metrics.columns)


def test_seed_zero_makes_runs_repeatable(tmp_path):
    overrides = ["data=wine", "trainer.max_epochs=2", "logger=none", "seed=0"]
    first = train(compose_train(tmp_path / "a", overrides))
    second = train(compose_train(tmp_path / "b", overrides))
    assert first == second
    other = train(compose_train(tmp_path / "c", [*overrides[:-1], "seed=1"]))
    assert other != first
