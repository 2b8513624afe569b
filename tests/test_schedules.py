"""The training budget (StepBudget) and the warm-up + cosine schedule, in real training runs."""

from __future__ import annotations

import itertools
import math

import lightning as L
import pytest
import torch

from nmsnn.data.batching import auto_batch_size
from nmsnn.data.datamodule import TabularDataModule
from nmsnn.errors import ConfigError
from nmsnn.lit.callbacks import StepBudget
from nmsnn.lit.module import SpikingModule
from nmsnn.lit.schedules import budget_epochs, warmup_cosine
from nmsnn.pipeline import train
from tests.conftest import compose_train


def test_budget_epochs_round_up_and_respect_the_cap():
    assert budget_epochs(3000, 4, None) == 750
    assert budget_epochs(3000, 4, 300) == 300
    assert budget_epochs(3000, 7, -1) == 429  # 428.6 epochs, rounded up
    assert budget_epochs(10, 100, 50) == 1  # at least one epoch
    with pytest.raises(ConfigError, match="at least one step"):
        budget_epochs(0, 4, 10)


def test_warmup_cosine_ramps_up_then_decays_to_final():
    weight = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([weight], lr=1.0)
    scheduler = warmup_cosine(optimizer, total_steps=100, warmup=0.1, final=0.1)
    lrs = []
    for _ in range(100):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert all(a <= b for a, b in itertools.pairwise(lrs[:10]))  # warm-up rises
    assert all(a >= b for a, b in itertools.pairwise(lrs[9:]))  # then it only falls
    assert lrs[-1] == pytest.approx(0.1, abs=1e-3)
    with pytest.raises(ConfigError, match="warmup"):
        warmup_cosine(optimizer, total_steps=10, warmup=1.5)


def test_auto_batch_size_follows_the_training_rows():
    assert auto_batch_size(100) == 32
    assert auto_batch_size(4000) == 128
    assert auto_batch_size(50_000) == 512


class _Recorder(L.Callback):
    def __init__(self) -> None:
        self.lrs: list[float] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.lrs.append(trainer.optimizers[0].param_groups[0]["lr"])


def test_step_budget_sets_the_epochs_and_the_schedule_spans_them():
    """iris: 96 training rows in batches of 32 = 3 batches an epoch; 30 steps = 10 epochs, and
    the cosine schedule reaches its end at the last of those 30 steps."""
    dm = TabularDataModule(dataset="iris", batch_size="auto", val_size=0.2, test_size=0.2)
    module = SpikingModule(
        "classification",
        4,
        3,
        hidden=[8],
        time_steps=4,
        scheduler={"_target_": "nmsnn.lit.schedules.warmup_cosine", "interval": "step", "final": 0.0},
    )
    recorder = _Recorder()
    trainer = L.Trainer(
        max_epochs=100,
        callbacks=[StepBudget(steps=30), recorder],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(module, datamodule=dm)
    assert dm.train_batch_size() == 32 and trainer.current_epoch == 10 and trainer.global_step == 30
    assert len(recorder.lrs) == 30 and recorder.lrs[0] < recorder.lrs[3]  # warm-up
    # two warm-up steps (5% of 30, rounded), then the cosine over the other 28
    assert recorder.lrs[-1] == pytest.approx(0.003 * 0.5 * (1 + math.cos(math.pi * 27 / 28)))

    capped = L.Trainer(
        max_epochs=4,
        callbacks=[StepBudget(steps=30)],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    capped.fit(SpikingModule("classification", 4, 3, hidden=[8], time_steps=4), datamodule=dm)
    assert capped.current_epoch == 4  # trainer.max_epochs caps the budget


def test_default_run_trains_for_the_budget(tmp_path):
    """The default config: the budget in steps, capped by trainer.max_epochs, recorded in
    metrics.json as the epochs run."""
    metrics = train(
        compose_train(
            tmp_path,
            [
                "data=iris",
                "logger=none",
                "callbacks.early_stopping=null",
                "callbacks.training_budget.steps=12",
                "trainer.enable_progress_bar=false",
            ],
        )
    )
    assert metrics["epochs"] == 4  # 96 rows in batches of 32: 3 steps an epoch
