"""nmsnn-compare: the spiking model and the non-spiking baselines on one split, in one table."""

from __future__ import annotations

import importlib.util

import pandas as pd
from PIL import Image

from nmsnn.tools.compare import compare
from tests.conftest import compose_train


def test_compare_iris_writes_table_and_chart(tmp_path):
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
