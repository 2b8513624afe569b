"""Faults during training: divergence stops with a clear message, Ctrl-C leaves a resumable checkpoint."""

from __future__ import annotations

import pytest

from nmsnn.checkpoint import load_checkpoint
from nmsnn.lit.callbacks import TrainingDiverged
from nmsnn.pipeline import train
from tests.conftest import compose_train

BLOW_UP_AT_EPOCH_2 = [
    "+model.scheduler._target_=torch.optim.lr_scheduler.MultiStepLR",
    "+model.scheduler._partial_=true",
    "+model.scheduler.milestones=[2]",
    "+model.scheduler.gamma=1e30",
]


def test_nan_loss_stops_with_a_clear_message_and_keeps_the_last_good_checkpoint(tmp_path):
    cfg = compose_train(tmp_path, ["data=wine", "trainer.max_epochs=10", "logger=none", *BLOW_UP_AT_EPOCH_2])
    with pytest.raises(TrainingDiverged) as err:
        train(cfg)
    message = str(err.value)
    assert "training diverged" in message and "at epoch 2" in message
    assert "Lower model.optimizer.lr" in message
    last = tmp_path / "checkpoints" / "last.ckpt"
    assert f"The last good checkpoint is {last}" in message
    loaded = load_checkpoint(last)
    x = loaded.preprocessor.transform(__import__("sklearn.datasets").datasets.load_wine(as_frame=True).frame)
    import torch

    probabilities = loaded.module.predict_rows(torch.from_numpy(x))
    assert torch.isfinite(probabilities).all()


def test_ctrl_c_saves_a_resumable_checkpoint(tmp_path):
    interrupt = [
        "+callbacks.interrupt._target_=tests.helpers.InterruptAtEpoch",
        "+callbacks.interrupt.epoch=2",
    ]
    base = ["data=iris", "trainer.max_epochs=4", "logger=none"]
    with pytest.raises(SystemExit):
        train(compose_train(tmp_path / "run", [*base, *interrupt]))
    saved = tmp_path / "run" / "checkpoints" / "interrupted.ckpt"
    assert saved.exists()
    load_checkpoint(saved)  # plain data, loadable
    metrics = train(compose_train(tmp_path / "resumed", [*base, f"ckpt_path={saved}"]))
    assert metrics["epochs"] == 4 and "test/acc" in metrics
