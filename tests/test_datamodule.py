"""The tabular DataModule: sources, task inference, splits, preprocessing, batches, bad input."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest
import torch

from nmsnn.data.datamodule import TabularDataModule
from nmsnn.data.preprocessing import TabularPreprocessor
from nmsnn.data.sources import BUNDLED
from nmsnn.errors import DataError


@pytest.mark.parametrize(
    ("name", "task", "outputs"),
    [
        ("breast_cancer", "classification", 2),
        ("iris", "classification", 3),
        ("wine", "classification", 3),
        ("digits", "classification", 10),
        ("diabetes", "regression", 1),
        ("seed_iris", "classification", 3),
        ("seed_house", "regression", 1),
    ],
)
def test_bundled_sources(name, task, outputs):
    dm = TabularDataModule(dataset=name)
    dm.setup()
    assert dm.task == task and dm.num_outputs == outputs
    assert dm.tensors["train"].x.dtype == torch.float32
    assert "synthetic_binary" in BUNDLED


def test_seed_splits_match_the_original_notebooks():
    house = TabularDataModule(dataset="seed_house", test_size=0.3, split_seed=1, val_split_seed=2)
    house.setup()
    assert [len(house.split_index[s]) for s in ("train", "val", "test")] == [231, 58, 125]
    iris = TabularDataModule(dataset="seed_iris", val_size=0.0, split_seed=2, stratify=False)
    iris.setup()
    assert [len(iris.split_index[s]) for s in ("train", "val", "test")] == [120, 0, 30]
    assert "val" not in iris.tensors


def test_splits_are_disjoint_cover_all_rows_and_are_stratified():
    dm = TabularDataModule(dataset="breast_cancer", split_seed=3)
    dm.setup()
    parts = [set(dm.split_index[s].tolist()) for s in ("train", "val", "test")]
    assert not (parts[0] & parts[1]) and not (parts[0] & parts[2]) and not (parts[1] & parts[2])
    assert set.union(*parts) == set(range(569))
    overall = 357 / 569
    for split in ("train", "val", "test"):
        share = float((dm.tensors[split].y == dm.preprocessor.classes.index("benign")).float().mean())
        assert abs(share - overall) < 0.02, split


def test_preprocessing_is_fitted_on_training_rows_only():
    dm = TabularDataModule(dataset="wine", split_seed=1)
    dm.setup()
    raw = dm.split_frame("train")
    column = dm.preprocessor.numeric[0]
    assert dm.preprocessor.center[0] == pytest.approx(raw[column].mean())
    assert dm.preprocessor.center[0] != pytest.approx(dm.load_frame()[0][column].mean())
    train_x = dm.tensors["train"].x
    torch.testing.assert_close(train_x.mean(0), torch.zeros(train_x.shape[1]), atol=1e-5, rtol=0)


def test_regression_target_is_scaled_and_reported_on_original_scale():
    dm = TabularDataModule(dataset="diabetes")
    dm.setup()
    pre = dm.preprocessor
    y = dm.tensors["train"].y
    assert abs(float(y.mean())) < 1e-5 and pre.target_std > 1
    kwargs = dm.model_kwargs()
    assert kwargs["target_mean"] == pre.target_mean and kwargs["num_outputs"] == 1


def test_mixed_csv_imputes_and_one_hot_encodes(fixtures, caplog):
    with caplog.at_level(logging.WARNING):
        dm = TabularDataModule(path=str(fixtures / "mixed_classification.csv"), target="label")
        dm.setup()
    assert "imputed" in caplog.text
    pre = dm.preprocessor
    assert pre.numeric == ["a", "b", "c"] and pre.categorical == ["color"]
    assert pre.feature_names[3:] == ["color=blue", "color=green", "color=red"]
    assert pre.classes == ["no", "yes"]
    assert not torch.isnan(dm.tensors["train"].x).any()


def test_task_inference_and_override(tmp_path, caplog):
    frame = pd.DataFrame({"x": np.arange(40.0), "y": [0, 1, 2, 3] * 10})
    with caplog.at_level(logging.INFO):
        dm = TabularDataModule(frame=frame, target="y")
        dm.setup()
    assert dm.task == "classification" and "inferred" in caplog.text
    dm = TabularDataModule(frame=frame, target="y", task="regression")
    dm.setup()
    assert dm.task == "regression"
    continuous = pd.DataFrame({"x": np.arange(40.0), "y": np.linspace(0, 1, 40)})
    dm = TabularDataModule(frame=continuous, target="y")
    dm.setup()
    assert dm.task == "regression"


def test_batches_are_index_slices_and_cover_the_epoch():
    dm = TabularDataModule(dataset="iris", batch_size=16)
    dm.setup()
    loader = dm.train_dataloader()
    batches = list(loader)
    assert all(set(b) == {"x", "y", "row"} for b in batches)
    assert sorted(torch.cat([b["row"] for b in batches]).tolist()) == list(range(len(dm.tensors["train"])))
    assert sum(len(b["y"]) for b in batches) == len(dm.tensors["train"])
    rows = torch.cat([b["x"] for b in batches])
    assert sorted(map(tuple, rows.tolist())) == sorted(map(tuple, dm.tensors["train"].x.tolist()))
    loader.sampler.set_epoch(1)
    again = torch.cat([b["x"] for b in loader])
    assert not torch.equal(rows, again), "each epoch has its own order"


def test_batch_size_larger_than_data_uses_the_whole_split(caplog):
    dm = TabularDataModule(dataset="iris", batch_size=10_000)
    dm.setup()
    with caplog.at_level(logging.WARNING):
        batches = list(dm.train_dataloader())
    assert len(batches) == 1 and "larger than" in caplog.text


def test_state_dict_round_trip_is_plain_values(tmp_path):
    dm = TabularDataModule(dataset="wine")
    dm.setup()
    state = dm.state_dict()
    path = tmp_path / "state.pt"
    torch.save(state, path)
    loaded = torch.load(path, weights_only=True)
    pre = TabularPreprocessor.from_state_dict(loaded["preprocessor"])
    frame = dm.split_frame("test")
    np.testing.assert_array_equal(pre.transform(frame), dm.preprocessor.transform(frame))


# ----------------------------------------------------------------------------- bad input
def write(tmp_path, name, text, mode="w"):
    path = tmp_path / name
    if mode == "wb":
        path.write_bytes(text)
    else:
        path.write_text(text)
    return str(path)


def frame_rows(n=40, **columns):
    rng = np.random.default_rng(0)
    base = {"x": rng.normal(size=n), "y": ["a", "b"] * (n // 2)}
    base.update(columns)
    return pd.DataFrame(base)


BAD_INPUTS = [
    ("missing file", lambda p: {"path": str(p / "nope.csv"), "target": "y"}, "nope.csv: file not found"),
    ("empty file", lambda p: {"path": write(p, "e.csv", ""), "target": "y"}, "the file is empty"),
    ("header only", lambda p: {"path": write(p, "h.csv", "x,y\n"), "target": "y"}, "header but no data rows"),
    (
        "binary file",
        lambda p: {"path": write(p, "b.csv", bytes(range(256)) * 4, "wb"), "target": "y"},
        "not a text file",
    ),
    (
        "latin-1 text",
        lambda p: {
            "path": write(p, "l.csv", "x,y\n1,caf\xe9\n2,th\xe9\n".encode("latin-1"), "wb"),
            "target": "y",
        },
        "not UTF-8 text (byte 0xe9 at offset 9)",
    ),
    (
        "latin-1 past the first chunk",
        lambda p: {
            "path": write(
                p, "late.csv", ("x,y\n" + "1,a\n" * 300_000 + "2,caf\xe9\n").encode("latin-1"), "wb"
            ),
            "target": "y",
        },
        "not UTF-8 text (byte 0xe9 at offset 1200009)",
    ),
    (
        "wrong delimiter",
        lambda p: {"path": write(p, "d.csv", "x;y\n1;2\n3;4\n"), "target": "y"},
        "';' as delimiter",
    ),
    (
        "duplicate columns",
        lambda p: {"path": write(p, "dup.csv", "x,x,y\n1,2,a\n"), "target": "y"},
        "duplicate column names ['x']",
    ),
    (
        "unknown suffix",
        lambda p: {"path": write(p, "f.xlsx", "x"), "target": "y"},
        "unknown file type '.xlsx'",
    ),
    (
        "target not found",
        lambda p: {"frame": frame_rows(), "target": "label"},
        "target column 'label' not found; the columns are ['x', 'y']",
    ),
    ("no target given", lambda p: {"frame": frame_rows()}, "no target column given"),
    (
        "target all missing",
        lambda p: {"frame": frame_rows(y=[None] * 40), "target": "y"},
        "is entirely empty",
    ),
    (
        "target has missing",
        lambda p: {"frame": frame_rows(y=["a", None] * 20), "target": "y"},
        "20 missing value(s)",
    ),
    (
        "single class",
        lambda p: {"frame": frame_rows(y=["a"] * 40), "target": "y"},
        "has a single value ('a')",
    ),
    (
        "class with one row",
        lambda p: {"frame": frame_rows(y=["a"] * 20 + ["b"] * 19 + ["c"]), "target": "y"},
        "class(es) ['c']",
    ),
    (
        "infinite values",
        lambda p: {"frame": frame_rows(x=[1.0] * 39 + [np.inf]), "target": "y"},
        "column 'x' has infinite values (rows 39)",
    ),
    (
        "stray words",
        lambda p: {"frame": frame_rows(x=["1.5"] * 39 + ["oops"]), "target": "y"},
        "'oops' in row 39",
    ),
    (
        "numbers with many stray words",
        lambda p: {"frame": frame_rows(n=100, x=[str(i) for i in range(90)] + ["n/a"] * 10), "target": "y"},
        "column 'x' mostly holds numbers, but 10 value(s) are not numbers, e.g. 'n/a' in row 90",
    ),
    (
        "unusable text",
        lambda p: {
            "frame": frame_rows(name=[f"id{i}" for i in range(40)]),
            "target": "y",
            "max_categories": 10,
        },
        "text column 'name' has 40 distinct values",
    ),
    ("too few rows", lambda p: {"frame": frame_rows(n=6), "target": "y"}, "only 6 rows"),
    (
        "nested column",
        lambda p: {"frame": frame_rows(z=[[1, 2]] * 40), "target": "y"},
        "column 'z' holds nested values",
    ),
    (
        "regression on text",
        lambda p: {"frame": frame_rows(), "target": "y", "task": "regression"},
        "task=regression needs a numeric target",
    ),
    (
        "numeric target with a stray word",
        lambda p: {"frame": frame_rows(y=[f"{i}.5" for i in range(39)] + ["unknown"]), "target": "y"},
        "target column 'y' holds numbers, but 1 value(s) are not numbers, e.g. 'unknown' in row 39",
    ),
    (
        "unknown drop",
        lambda p: {"frame": frame_rows(), "target": "y", "drop": ["q"]},
        "data.drop names column(s) ['q']",
    ),
    (
        "two sources",
        lambda p: {"frame": frame_rows(), "dataset": "iris", "target": "y"},
        "exactly one data source",
    ),
    ("bad test size", lambda p: {"dataset": "iris", "test_size": 1.2}, "data.test_size must be in [0, 1)"),
    ("unknown dataset", lambda p: {"dataset": "mnist"}, "unknown bundled dataset 'mnist'"),
    (
        "bad batch size",
        lambda p: {"dataset": "iris", "batch_size": 0},
        "data.batch_size must be a positive integer",
    ),
]


@pytest.mark.parametrize(("case", "make", "message"), BAD_INPUTS, ids=[c[0] for c in BAD_INPUTS])
def test_bad_input_gets_one_clear_error(tmp_path, case, make, message):
    with pytest.raises(DataError) as err:
        dm = TabularDataModule(**make(tmp_path))
        dm.setup()
    assert message in str(err.value)


def test_prediction_rows_missing_training_columns_are_named(fixtures):
    dm = TabularDataModule(path=str(fixtures / "mixed_classification.csv"), target="label")
    dm.setup()
    rows = pd.read_csv(fixtures / "mixed_classification.csv").drop(columns=["b", "color"])
    with pytest.raises(DataError, match=r"missing column\(s\) \['b', 'color'\]"):
        dm.preprocessor.transform(rows, "new.csv")


def test_prediction_rows_with_extra_columns_and_unseen_categories(fixtures, caplog):
    dm = TabularDataModule(path=str(fixtures / "mixed_classification.csv"), target="label")
    dm.setup()
    rows = pd.read_csv(fixtures / "mixed_classification.csv").head(3).assign(extra=1, color="purple")
    with caplog.at_level(logging.INFO):
        x = dm.preprocessor.transform(rows, "new.csv")
    assert "ignoring column(s) not used in training: ['extra']" in caplog.text
    assert "not seen in training" in caplog.text
    assert np.all(x[:, 3:] == 0)


def test_null_seeds_split_and_shuffle_as_seed_zero():
    unseeded = TabularDataModule(dataset="iris", split_seed=None, shuffle_seed=None)
    seeded = TabularDataModule(dataset="iris", split_seed=0, shuffle_seed=0)
    for dm in (unseeded, seeded):
        dm.setup()
    assert unseeded.hparams.split_seed == 0 and unseeded.hparams.shuffle_seed == 0
    for split in ("train", "val", "test"):
        np.testing.assert_array_equal(unseeded.split_index[split], seeded.split_index[split])


def test_a_rare_class_outside_the_training_split_is_still_a_class():
    frame = frame_rows(y=["a"] * 20 + ["b"] * 19 + ["c"])
    where = set()
    for seed in range(8):
        dm = TabularDataModule(frame=frame, target="y", stratify=False, split_seed=seed)
        dm.setup()
        assert dm.preprocessor.classes == ["a", "b", "c"] and dm.num_outputs == 3
        where |= {s for s, rows in dm.split_index.items() if 39 in rows}
    assert where - {"train"}, "some seed puts the rare row outside the training split"


def test_prediction_rows_with_text_in_a_numeric_column_get_one_clear_error(fixtures):
    dm = TabularDataModule(path=str(fixtures / "mixed_classification.csv"), target="label")
    dm.setup()
    column = dm.preprocessor.numeric[0]
    rows = pd.read_csv(fixtures / "mixed_classification.csv").head(8)
    rows[column] = rows[column].astype(object)
    rows.loc[rows.index[2:5], column] = "unknown"
    with pytest.raises(DataError, match=rf"column '{column}' was numeric in training, but 3 of its 8 values"):
        dm.preprocessor.transform(rows, "new.csv")


def test_dates_are_seconds_whatever_their_stored_resolution():
    stamps = pd.date_range("2024-01-01", periods=40, freq="37h")
    frame = frame_rows(when=stamps.as_unit("us"), span=(stamps - stamps[0]).as_unit("ms"))
    dm = TabularDataModule(frame=frame, target="y")
    dm.setup()
    pre = dm.preprocessor
    assert pre.numeric == ["x", "when", "span"]
    train = frame.iloc[dm.split_index["train"]]
    assert pre.center[1] == pytest.approx(train["when"].astype("int64").mean() / 1e6)
    assert pre.center[2] == pytest.approx(train["span"].dt.total_seconds().mean())
    other = frame.assign(
        when=frame["when"].astype("datetime64[ns]"), span=frame["span"].astype("timedelta64[s]")
    )
    np.testing.assert_array_equal(pre.transform(other), pre.transform(frame))


def test_category_codes_read_back_as_numbers_match_their_training_text(caplog):
    frame = frame_rows(code=["1", "2", "3", "x"] * 10)
    dm = TabularDataModule(frame=frame, target="y")
    dm.setup()
    as_text = frame.head(6)
    as_numbers = as_text.assign(code=[1.0, 2.0, 3.0, np.nan, 1.0, 2.0])
    with caplog.at_level(logging.WARNING):
        x = dm.preprocessor.transform(as_numbers)
    assert "not seen in training" not in caplog.text
    expected = dm.preprocessor.transform(
        as_text.assign(code=["1", "2", "3", dm.preprocessor.category_fill[0], "1", "2"])
    )
    np.testing.assert_array_equal(x, expected)


def test_an_unnamed_column_such_as_a_saved_index_is_pointed_out(tmp_path, caplog):
    path = tmp_path / "with_index.csv"
    frame_rows().to_csv(path)  # index=True: an unnamed first column
    with caplog.at_level(logging.WARNING):
        TabularDataModule(path=str(path), target="y").setup()
    assert "column 'Unnamed: 0' has no name in the file's header" in caplog.text
