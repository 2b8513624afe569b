"""nmsnn-compare: the spiking model and the non-spiking baselines on one split, in one table."""

from __future__ import annotations

import importlib.util

import pandas as pd
from PIL import Image

from nmsnn.tools.compare import compare
from tests.conftest import compose_train


def test_compare_iris_writes_table_and_chart(tmp_path, caplog, capsys):
    caplog.set_level("INFO")
    cfg = compose_train(
        tmp_path, ["data=iris", "trainer.max_epochs=2", "logger=none", "timing_repeats=1"], config="compare"
    )
    table = compare(cfg, command="nmsnn-compare data=iris trainer.max_epochs=2")

    written = pd.read_csv(tmp_path / "comparison.csv")
    expected = 5 if importlib.util.find_spec("xgboost") else 4
    assert len(written) == len(table) == expected
    assert written["model"].str.startswith("spiking").sum() == 1
    assert {"accuracy", "f1_macro", "auroc", "fit_s", "infer_ms", "ops_per_row", "op_kind"} <= set(written)
    spiking = written[written["model"].str.startswith("spiking")].iloc[0]
    assert spiking["ops_per_row"] > 0 and spiking["op_kind"] == "synaptic ops"
    mlp = written[written["model"].str.startswith("MLP")].iloc[0]
    assert mlp["ops_per_row"] == 4 * 128 + 128 * 3  # iris: 4 features, 3 classes, hidden [128]
    assert written[["accuracy", "fit_s", "infer_ms"]].notna().all().all()
    assert (written["accuracy"].between(0, 1)).all()

    png = tmp_path / "comparison.png"
    assert png.stat().st_size > 0
    with Image.open(png) as image:
        assert image.format == "PNG" and min(image.size) > 100
    markdown = (tmp_path / "comparison.md").read_text()
    assert "nmsnn-compare data=iris" in markdown and "multipl" in markdown
    assert (tmp_path / "spiking" / "checkpoints" / "best.ckpt").is_file()
    assert spiking["model"].startswith("spiking [128]")  # hidden=auto, as built for classification
    # the console names the command that ran, and the split is logged once, by the training run
    assert f"nmsnn-compare: {tmp_path / 'spiking'}" in capsys.readouterr().out
    assert sum("rows -> train" in r.getMessage() for r in caplog.records) == 1


def test_the_baselines_get_the_scaled_columns_without_the_spiking_models_bins():
    """data.bins encodes the spiking model's inputs; the classical models get the same split and
    scaling without those columns (a Ridge on them would be another model)."""
    from nmsnn.data.datamodule import TabularDataModule
    from nmsnn.tools.compare import classical_rows, split_rows

    binned = TabularDataModule(dataset="diabetes", bins=8)
    binned.setup("fit")
    plain = TabularDataModule(dataset="diabetes", bins=0)
    plain.setup("fit")
    rows, pre = classical_rows(binned)
    want = split_rows(plain)
    assert binned.preprocessor.bin_edges and not pre.bin_edges
    assert split_rows(binned).x_fit.shape[1] > rows.x_fit.shape[1] == plain.num_features
    for got, expected in ((rows.x_fit, want.x_fit), (rows.y_fit, want.y_fit), (rows.x_test, want.x_test)):
        assert (got == expected).all()
    assert pre.target_mean == plain.preprocessor.target_mean
