"""Training end to end: fast_dev_run, checkpoints, predicting and evaluating from a checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch

from nmsnn.checkpoint import load_checkpoint
from nmsnn.data.datamodule import TabularDataModule
from nmsnn.errors import CheckpointError
from nmsnn.lit.callbacks import WeightAverage
from nmsnn.pipeline import train
from nmsnn.predicting import predict_frame
from tests.conftest import compose_train, run_cli

SEED_CSVS = Path(__file__).parents[1] / "nmsnn" / "data" / "files"


@pytest.mark.parametrize(
    "data",
    [
        ["data=iris"],
        ["data=diabetes"],
        ["data=csv", f"data.path={SEED_CSVS / 'house_price_data.csv'}", "data.target=house_price"],
        ["data=csv", f"data.path={SEED_CSVS / 'iris_data.csv'}", "data.target=target"],
    ],
    ids=["iris", "diabetes", "seed_house_csv", "seed_iris_csv"],
)
def test_fast_dev_run(tmp_path, data):
    metrics = train(compose_train(tmp_path, [*data, "+trainer.fast_dev_run=true", "logger=none"]))
    key = "test/rmse" if "house" in str(data) or "diabetes" in str(data) else "test/acc"
    assert key in metrics and torch.isfinite(torch.tensor(metrics[key]))
    assert (tmp_path / "metrics.json").exists()


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """A short real run on the mixed fixture CSV (missing values, a text column)."""
    out = tmp_path_factory.mktemp("run")
    csv = Path(__file__).parent / "fixtures" / "mixed_classification.csv"
    cfg = compose_train(
        out, ["data=csv", f"data.path={csv}", "data.target=label", "trainer.max_epochs=4", "seed=0"]
    )
    metrics = train(cfg)
    return out, csv, metrics


def test_run_directory_contents(trained_run):
    out, _, metrics = trained_run
    assert (out / "checkpoints" / "best.ckpt").exists() and (out / "checkpoints" / "last.ckpt").exists()
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))
    assert f"TensorBoard: `tensorboard --logdir {out}`" in (out / "summary.md").read_text()
    summary = json.loads((out / "metrics.json").read_text())
    assert summary["metrics"]["test/acc"] == pytest.approx(metrics["test/acc"])
    assert {"val/acc", "val/f1_macro", "val/auroc", "test/acc", "test/f1_macro", "test/auroc"} <= set(metrics)


def test_checkpoint_is_plain_data(trained_run):
    out, _, _ = trained_run
    ckpt = torch.load(out / "checkpoints" / "best.ckpt", weights_only=True)
    pre = ckpt["TabularDataModule"]["preprocessor"]
    assert pre["categorical"] == ["color"] and pre["classes"] == ["no", "yes"]
    assert ckpt["hyper_parameters"]["task"] == "classification"


def test_checkpoint_predictions_reproduce_the_test_split(trained_run):
    out, csv, metrics = trained_run
    loaded = load_checkpoint(out / "checkpoints" / "best.ckpt")
    dm = TabularDataModule(path=str(csv), target="label", split_seed=0)
    dm.setup()
    test_rows = dm.split_frame("test")
    expected = pd.read_csv(out / "test_predictions.csv")
    # each test row's number in the file and its label, in front of the predictions
    assert expected["row"].tolist() == test_rows.index.tolist()
    assert expected["label"].tolist() == test_rows["label"].tolist()
    again = predict_frame(loaded.module, loaded.preprocessor, test_rows).reset_index(drop=True)
    pd.testing.assert_frame_equal(again, expected.drop(columns=["row", "label"]), check_exact=True)
    accuracy = (again["prediction"].to_numpy() == test_rows["label"].to_numpy()).mean()
    assert accuracy == pytest.approx(metrics["test/acc"], abs=1e-6)
    repeated = predict_frame(loaded.module, loaded.preprocessor, test_rows).reset_index(drop=True)
    pd.testing.assert_frame_equal(repeated, again, check_exact=True)


def test_cli_train_predict_eval_round_trip(tmp_path, fixtures):
    csv = fixtures / "mixed_regression.csv"
    run_cli(
        "nmsnn-train",
        "data=csv",
        f"data.path={csv}",
        "data.target=price",
        "trainer.max_epochs=3",
        cwd=tmp_path,
    )
    (run_dir,) = (tmp_path / "logs" / "train" / "runs").iterdir()
    ckpt = run_dir / "checkpoints" / "best.ckpt"
    metrics = json.loads((run_dir / "metrics.json").read_text())["metrics"]
    assert "final metrics (also in metrics.json)" in (run_dir / "train.log").read_text()

    dm = TabularDataModule(path=str(csv), target="price", split_seed=0)
    dm.setup()
    dm.split_frame("test").to_csv(tmp_path / "rows.csv", index=False)
    run_cli("nmsnn-predict", f"ckpt_path={ckpt}", "input_path=rows.csv", "output_path=out.csv", cwd=tmp_path)
    predicted = pd.read_csv(tmp_path / "out.csv")
    expected = pd.read_csv(run_dir / "test_predictions.csv").drop(columns=["row", "price"])
    pd.testing.assert_frame_equal(predicted, expected, check_exact=True)
    assert not list(tmp_path.glob("*.log")), "predict leaves no log files behind"

    result = run_cli("nmsnn-eval", f"ckpt_path={ckpt}", cwd=tmp_path)
    scored = json.loads(result.stdout.strip().splitlines()[-1])
    assert scored["test/rmse"] == pytest.approx(metrics["test/rmse"], rel=1e-5)

    refused = run_cli(
        "nmsnn-predict",
        f"ckpt_path={ckpt}",
        "input_path=rows.csv",
        "output_path=out.csv",
        cwd=tmp_path,
        check=False,
    )
    assert refused.returncode == 2 and "file exists" in refused.stderr
    assert "Traceback" not in refused.stderr + refused.stdout


def test_cli_reports_bad_input_without_traceback(tmp_path):
    result = run_cli(
        "nmsnn-train", "data=csv", "data.path=missing.csv", "data.target=y", cwd=tmp_path, check=False
    )
    assert result.returncode == 2
    assert "missing.csv: file not found" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    missing = run_cli("nmsnn-predict", "ckpt_path=x.ckpt", cwd=tmp_path, check=False)
    assert missing.returncode == 2 and "error: input_path is required" in missing.stderr
    assert "Traceback" not in missing.stderr + missing.stdout
    (log_file,) = (tmp_path / "logs" / "train" / "runs").glob("*/train.log")
    assert "[ERROR] - error: missing.csv: file not found" in log_file.read_text(), "the run's log says why"


class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_malicious_checkpoint_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "pwned"
    bad = tmp_path / "bad.ckpt"
    torch.save({"hyper_parameters": _Payload(marker), "state_dict": {}}, bad)
    with pytest.raises(CheckpointError, match="refused to load") as refused:
        load_checkpoint(bad)
    assert "GLOBAL" in str(refused.value) and "weights_only` set to `False`" not in str(refused.value)
    assert not marker.exists()
    torch.load(bad, weights_only=False)  # the payload is real: plain unpickling runs it
    assert marker.exists()


def test_truncated_and_foreign_checkpoints(tmp_path, trained_run):
    out, _, _ = trained_run
    data = (out / "checkpoints" / "best.ckpt").read_bytes()
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint"):
        load_checkpoint(truncated)
    foreign = tmp_path / "foreign.ckpt"
    torch.save({"weights": torch.zeros(3)}, foreign)
    with pytest.raises(CheckpointError, match="not an nmsnn checkpoint"):
        load_checkpoint(foreign)
    with pytest.raises(CheckpointError, match="checkpoint file not found"):
        load_checkpoint(tmp_path / "nope.ckpt")
    garbage = tmp_path / "garbage.ckpt"
    garbage.write_text("garbage")
    with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint") as refused:
        load_checkpoint(garbage)
    assert "refused" not in str(refused.value)


def test_eval_scores_every_row_of_another_file(trained_run):
    from hydra import compose, initialize_config_module

    from nmsnn.cli.eval import evaluate

    out, csv, _ = trained_run
    ckpt = out / "checkpoints" / "best.ckpt"
    with initialize_config_module("nmsnn.conf", version_base="1.3"):
        cfg = compose("eval", overrides=[f"ckpt_path={ckpt}", f"+data.path={csv}", "split=all"])
    metrics = evaluate(cfg)
    loaded = load_checkpoint(ckpt)
    rows = pd.read_csv(csv)
    predicted = predict_frame(loaded.module, loaded.preprocessor, rows)["prediction"]
    assert metrics["all/acc"] == pytest.approx((predicted == rows["label"]).mean(), abs=1e-6)


def test_eval_of_every_row_keeps_the_file_order_and_skips_training_checks(trained_run, tmp_path):
    """A few rows of a single class cannot be split for training, but can be scored."""
    from hydra import compose, initialize_config_module

    from nmsnn.cli.eval import evaluate

    out, csv, _ = trained_run
    ckpt = out / "checkpoints" / "best.ckpt"
    rows = pd.read_csv(csv)
    rows = rows[rows["label"] == "yes"].head(7).iloc[::-1]
    rows.to_csv(tmp_path / "few.csv", index=False)
    with initialize_config_module("nmsnn.conf", version_base="1.3"):
        cfg = compose(
            "eval",
            overrides=[
                f"ckpt_path={ckpt}",
                f"+data.path={tmp_path / 'few.csv'}",
                "split=all",
                f"predictions_path={tmp_path / 'scored.parquet'}",
            ],
        )
    metrics = evaluate(cfg)
    loaded = load_checkpoint(ckpt)
    expected = predict_frame(loaded.module, loaded.preprocessor, rows.reset_index(drop=True))
    written = pd.read_parquet(tmp_path / "scored.parquet")
    assert written["row"].tolist() == list(range(len(rows)))  # few.csv's rows, in its order
    pd.testing.assert_frame_equal(written.drop(columns=["row", "label"]), expected, check_exact=True)
    assert metrics["all/acc"] == pytest.approx((expected["prediction"] == "yes").mean(), abs=1e-6)


def test_training_without_a_validation_split_watches_the_training_loss(tmp_path, fixtures, caplog):
    csv = fixtures / "mixed_classification.csv"
    cfg = compose_train(
        tmp_path,
        ["data=csv", f"data.path={csv}", "data.target=label", "data.val_size=0", "trainer.max_epochs=2"],
    )
    with caplog.at_level("INFO"):
        metrics = train(cfg)
    assert "watch train/loss instead of monitor=val/loss" in caplog.text
    assert cfg.callbacks.model_checkpoint.monitor == "train/loss"
    assert (tmp_path / "checkpoints" / "best.ckpt").exists() and "test/acc" in metrics
    assert not any(k.startswith("val/") for k in metrics)
    progress = [r.getMessage() for r in caplog.records if r.name == "nmsnn.progress"]
    assert progress and all(line.count("train/loss") == 1 for line in progress), progress

    # trained for a number of optimizer steps instead (no epoch limit): the progress lines say
    # neither "epoch 1/-1" nor "stopped early"
    args = ["data=csv", f"data.path={csv}", "data.target=label", "data.val_size=0", "run_name=steps"]
    args += ["trainer.max_epochs=-1", "+trainer.max_steps=3", "callbacks.training_budget=null"]
    caplog.clear()
    with caplog.at_level("INFO"):
        train(compose_train(tmp_path / "steps", args))
    progress = [r.getMessage() for r in caplog.records if r.name == "nmsnn.progress"]
    assert progress and progress[0].startswith("epoch 1 · train/loss"), progress
    assert not any("/-1" in line or "stopped early" in line for line in progress), progress


def test_predict_writes_parquet_keeps_permissions_and_never_replaces_its_input(trained_run, tmp_path):
    from hydra import compose, initialize_config_module

    from nmsnn.cli.predict import predict
    from nmsnn.errors import NmsnnError

    out, csv, _ = trained_run
    rows = tmp_path / "rows.csv"
    pd.read_csv(csv).head(5).to_csv(rows, index=False)

    def run(output: Path):
        args = [
            f"ckpt_path={out / 'checkpoints' / 'best.ckpt'}",
            f"input_path={rows}",
            f"output_path={output}",
        ]
        with initialize_config_module("nmsnn.conf", version_base="1.3"):
            return predict(compose("predict", overrides=[*args, "overwrite=true"]))

    (tmp_path / "old.parquet").write_text("old")
    (tmp_path / "old.parquet").chmod(0o640)
    run(tmp_path / "old.parquet")
    assert len(pd.read_parquet(tmp_path / "old.parquet")) == 5
    assert (tmp_path / "old.parquet").stat().st_mode & 0o777 == 0o640
    run(tmp_path / "new.csv")
    assert (tmp_path / "new.csv").stat().st_mode & 0o777 == 0o666 & ~_umask()
    for output, message in (
        (rows, r"is the file this command reads \(input_path\)"),
        (tmp_path, "is a directory"),
    ):
        with pytest.raises(NmsnnError, match=message):
            run(output)
    assert len(pd.read_csv(rows)) == 5


def test_resuming_with_changed_settings_or_rows_is_refused(tmp_path, fixtures):
    from nmsnn.errors import ConfigError, DataError

    csv = tmp_path / "rows.csv"
    rows = pd.read_csv(fixtures / "mixed_classification.csv")
    rows.to_csv(csv, index=False)
    common = ["data=csv", f"data.path={csv}", "data.target=label", "logger=none"]
    train(compose_train(tmp_path / "run", [*common, "trainer.max_epochs=1"]))
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    before = last.read_bytes()
    common.append(f"ckpt_path={last}")  # the run finished: training it further names its checkpoint
    with pytest.raises(ConfigError, match=r"model.neuron.decay: 0.9 -> 0.5; model.time_steps: 16 -> 8\)"):
        train(
            compose_train(
                tmp_path / "run",
                [*common, "trainer.max_epochs=2", "model.neuron.decay=0.5", "model.time_steps=8"],
            )
        )
    rows.assign(a=rows["a"] * 2).to_csv(csv, index=False)
    with pytest.raises(DataError, match="not the ones the checkpoint being resumed was trained on"):
        train(compose_train(tmp_path / "run", [*common, "trainer.max_epochs=2"]))
    assert last.read_bytes() == before, "the run's checkpoint is left as it was"
    rows.to_csv(csv, index=False)
    metrics = train(
        compose_train(tmp_path / "run", [*common, "trainer.max_epochs=2", "model.backend=reference"])
    )
    assert metrics["epochs"] == 2, "a resume may change what does not change the training (the backend)"
    assert "TensorBoard" not in (tmp_path / "run" / "summary.md").read_text(), "logger=none: no TensorBoard"


def _umask() -> int:
    import os

    mask = os.umask(0)
    os.umask(mask)
    return mask


@pytest.mark.slow
def test_readme_first_command_reaches_its_promise(tmp_path):
    """`nmsnn-train` with every default: breast cancer, seed 0, test accuracy >= 0.95."""
    metrics = train(compose_train(tmp_path, ["logger=none"]))
    assert metrics["test/acc"] >= 0.95


def test_a_weight_average_is_what_a_run_validates_tests_saves_and_predicts_with(tmp_path, fixtures):
    """callbacks.weight_average: best.ckpt holds the averaged weights (the raw ones beside them),
    and the run's test metric is the one its test_predictions.csv (made from best.ckpt) gives."""
    from sklearn.metrics import r2_score

    csv = fixtures / "mixed_regression.csv"
    args = ["data=csv", f"data.path={csv}", "data.target=price", "trainer.max_epochs=6"]
    args += ["callbacks.weight_average={_target_:nmsnn.lit.callbacks.WeightAverage,decay:0.9}"]
    metrics = train(compose_train(tmp_path, args))
    saved = torch.load(tmp_path / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=False)
    raw, averaged = saved["current_model_state"], saved["state_dict"]
    assert raw.keys() == averaged.keys()
    assert any(not torch.equal(raw[k], averaged[k]) for k in raw if raw[k].is_floating_point())
    datamodule = load_checkpoint(tmp_path / "checkpoints" / "best.ckpt").datamodule()
    datamodule.setup("fit")
    truth = datamodule.split_frame("test")["price"].to_numpy()
    predicted = pd.read_csv(tmp_path / "test_predictions.csv")["prediction"].to_numpy()
    assert metrics["test/r2"] == pytest.approx(r2_score(truth, predicted), abs=1e-5)
    with pytest.raises(ValueError, match=r"decay=1\.0 must be in"):
        WeightAverage(decay=1.0)
