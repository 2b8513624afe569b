"""data.folds=F: every non-test row trains and validates; ensemble member k holds out fold k % F."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from hydra import compose, initialize_config_module

from nmsnn.checkpoint import load_checkpoint
from nmsnn.cli.eval import evaluate
from nmsnn.core.ensemble import fold_members
from nmsnn.data.datamodule import TabularDataModule
from nmsnn.errors import ConfigError, DataError
from nmsnn.lit.module import SpikingModule
from nmsnn.pipeline import describe, train
from tests.conftest import compose_train, run_cli


@pytest.mark.parametrize("held_out", [True, False])
def test_fold_members_keeps_each_rows_holding_out_or_training_members(held_out):
    members, folds = 6, 3
    prediction = torch.arange(5 * members * 2, dtype=torch.float32).reshape(5, members, 2)
    fold = torch.tensor([0, 1, 2, 1, 0])
    got = fold_members(prediction, fold, folds, held_out)
    for row, f in enumerate(fold.tolist()):
        kept = [k for k in range(members) if (k % folds == f) == held_out]
        torch.testing.assert_close(got[row], prediction[row, kept])
    with pytest.raises(ValueError, match="5 ensemble members do not divide into 3 folds"):
        fold_members(prediction[:, :5], fold, folds, held_out)


def test_folds_deal_the_non_test_rows_and_keep_the_test_split():
    one_split = TabularDataModule(dataset="wine", split_seed=3)
    one_split.setup()
    dm = TabularDataModule(dataset="wine", split_seed=3, folds=4)
    dm.setup()
    index = dm.split_index
    np.testing.assert_array_equal(index["test"], one_split.split_index["test"])
    np.testing.assert_array_equal(index["train"], index["val"])
    rest = np.concatenate([one_split.split_index["train"], one_split.split_index["val"]])
    assert sorted(index["train"]) == sorted(rest)
    # every row in one fold, each class spread evenly over the folds
    labels = dm.tensors["train"].y.numpy()
    counts = pd.crosstab(labels, dm.fold_of)
    assert counts.shape == (3, 4) and (counts.max(axis=1) - counts.min(axis=1)).max() <= 1
    batch = dm.tensors["val"][[0, 1, 2]]
    torch.testing.assert_close(batch["fold"], torch.from_numpy(dm.fold_of[:3]))
    assert "fold" not in dm.tensors["test"][[0]]
    assert dm.model_kwargs()["folds"] == 4 and one_split.model_kwargs()["folds"] == 0


@pytest.mark.parametrize("folds", [1, -2, 2.5, "two"])
def test_a_fold_count_other_than_0_or_at_least_2_is_refused(folds):
    with pytest.raises(
        DataError, match=r"data\.folds must be auto, 0 \(one validation split\) or an integer >= 2"
    ):
        TabularDataModule(dataset="wine", folds=folds)


def test_folds_auto_is_four_for_regression_and_none_for_classification_or_without_validation():
    def folds(dataset, **kwargs):
        dm = TabularDataModule(dataset=dataset, **kwargs)
        dm.setup()
        return dm.hparams.folds, dm.model_kwargs()["folds"], sorted(dm.tensors)

    assert folds("diabetes") == (4, 4, ["test", "train", "val"])
    assert folds("wine") == (0, 0, ["test", "train", "val"])
    assert folds("diabetes", folds=0) == (0, 0, ["test", "train", "val"])
    assert folds("diabetes", val_size=0.0) == (0, 0, ["test", "train"])


def test_a_checkpoint_from_before_folds_rebuilds_its_one_validation_split(tmp_path):
    cfg = compose_train(tmp_path, ["data=diabetes", "data.folds=0", "trainer.max_epochs=1", "logger=none"])
    train(cfg)
    ckpt = tmp_path / "checkpoints" / "best.ckpt"
    checkpoint = torch.load(ckpt, weights_only=True)
    for key in ("TabularDataModule", "datamodule_hyper_parameters"):
        checkpoint.get(key, {}).pop("folds", None)
    older = tmp_path / "older.ckpt"
    torch.save(checkpoint, older)
    dm = load_checkpoint(older).datamodule()
    dm.setup()
    assert (
        dm.hparams.folds == 0
        and dm.fold_of is None
        and len(dm.split_index["val"]) < len(dm.split_index["train"])
    )


def test_too_few_rows_for_the_folds_are_refused_with_the_counts():
    frame = pd.DataFrame({"a": np.arange(12.0), "y": np.arange(12.0)})
    with pytest.raises(DataError, match=r"9 rows left for training cannot fill data\.folds=5 folds"):
        TabularDataModule(frame=frame, target="y", task="regression", folds=5, test_size=0.25).setup()


def test_ensemble_auto_becomes_a_multiple_of_the_folds():
    def members(task, outputs, **kwargs):
        return SpikingModule(task, 5, outputs, hidden=[4], **kwargs).hparams.ensemble

    assert members("classification", 3, ensemble="auto", folds=4) == 4
    assert members("regression", 1, ensemble="auto", folds=3) == 6
    assert members("regression", 1, ensemble="auto", folds=2) == 4
    assert members("regression", 1, ensemble="auto", folds=0) == 4
    assert members("classification", 3, ensemble=6, folds=3) == 6
    assert members("regression", 1, folds=4) == 4 and members("regression", 1) == 1  # None: 1 per fold
    with pytest.raises(ConfigError, match=r"model\.ensemble=3 does not divide into data\.folds=2"):
        members("classification", 3, ensemble=3, folds=2)


@pytest.mark.filterwarnings(r"ignore:You are trying to `self.log\(\)`")
def test_a_member_never_learns_from_the_rows_it_holds_out():
    torch.manual_seed(0)
    module = SpikingModule("regression", 5, 1, hidden=[8], ensemble=2, folds=2, backend="reference")
    x, y = torch.randn(6, 5), torch.randn(6)
    batch = {"x": module.encode(x), "y": y, "fold": torch.zeros(6, dtype=torch.long)}  # all fold 0
    module.training_step(batch, 0).backward()
    first = module.model.network.layers[0].linear
    assert torch.all(first.weight.grad[:8] == 0), "member 0 holds out fold 0"
    assert first.weight.grad[8:].abs().sum() > 0, "member 1 trains on it"
    # validation scores the rows by member 0 alone
    module.eval()
    with torch.no_grad():
        prediction = module(batch["x"]).prediction
        module.on_validation_epoch_start()
        module.validation_step(batch, 0)
    torch.testing.assert_close(module.eval_losses["val"].compute(), module.loss(prediction[:, 0], y))


def test_a_run_with_folds_validates_out_of_fold_and_its_checkpoint_predicts(tmp_path):
    cfg = compose_train(tmp_path, ["data=diabetes", "data.folds=2", "trainer.max_epochs=4", "logger=none"])
    metrics = train(cfg)
    ckpt = tmp_path / "checkpoints" / "best.ckpt"
    loaded = load_checkpoint(ckpt)
    assert loaded.module.hparams.folds == 2 and loaded.module.hparams.ensemble == 4
    assert "an ensemble of 4 such networks (2 validation folds, 2 members holding out each)" in describe(
        loaded.module
    )
    with initialize_config_module("nmsnn.conf", version_base="1.3"):
        val = evaluate(compose("eval", overrides=[f"ckpt_path={ckpt}", "split=val"]))
        test = evaluate(compose("eval", overrides=[f"ckpt_path={ckpt}"]))
    # nmsnn-eval rebuilds the folds and scores each row by the members that held it out
    assert val["val/loss"] == pytest.approx(metrics["val/loss"], rel=1e-5)
    assert test["test/r2"] == pytest.approx(metrics["test/r2"], abs=1e-6)
    dm = loaded.datamodule()
    dm.setup()
    rows = dm.tensors["val"]
    prediction = loaded.module.eval()(rows.x).prediction.detach()
    out_of_fold = loaded.module.loss(fold_members(prediction, rows.fold, 2, held_out=True), rows.y)
    every_member = loaded.module.loss(prediction, rows.y)
    assert float(out_of_fold) == pytest.approx(val["val/loss"], rel=1e-5)
    assert float(every_member) < float(out_of_fold), "each row's own training members fit it better"


def test_a_population_sweep_with_folds_equals_the_one_by_one_sweep(tmp_path):
    grid = [
        "model.neuron.decay=0.8,0.9",
        "data=iris",
        "data.folds=2",
        "trainer.max_epochs=4",
        "trainer.deterministic=true",
        "trainer.enable_progress_bar=false",
    ]
    for name, launcher in (("basic", []), ("population", ["hydra/launcher=population"])):
        (tmp_path / name).mkdir()
        run_cli("nmsnn-train", "--multirun", *launcher, *grid, cwd=tmp_path / name)
    basic, population = (
        pd.read_csv(next((tmp_path / name / "logs" / "train" / "multiruns").iterdir()) / "summary.csv")
        for name in ("basic", "population")
    )
    columns = [c for c in basic.columns if c.startswith(("val/loss", "val/acc", "test/"))]
    assert "val/loss" in columns and "test/acc" in columns
    pd.testing.assert_frame_equal(population[columns], basic[columns], atol=1e-5, rtol=0)


def test_folds_auto_gives_way_to_an_ensemble_they_do_not_divide(tmp_path, caplog):
    cfg = compose_train(
        tmp_path, ["data=diabetes", "model.ensemble=1", "trainer.max_epochs=1", "logger=none"]
    )
    with caplog.at_level("INFO"):
        train(cfg)
    module = load_checkpoint(tmp_path / "checkpoints" / "best.ckpt").module
    assert module.hparams.folds == 0 and module.hparams.ensemble == 1
    assert "model.ensemble=1 members cannot hold out 4 folds" in caplog.text
    # folds given as a number are the user's: the model refuses the count (through Hydra)
    with pytest.raises(Exception, match=r"model\.ensemble=1 does not divide into data\.folds=4"):
        train(compose_train(tmp_path / "given", ["data=diabetes", "data.folds=4", "model.ensemble=1"]))
