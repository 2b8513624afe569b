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
    house = TabularDataModule(dataset="seed_house", test_size=0.3, split_seed=1, val_split_seed=2, folds=0)
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
        "zip of two files",
        lambda p: {
            "path": zipped(p, "two.zip", {"a.csv": "x,y\n1,2\n", "b.csv": "x,y\n1,2\n"}),
            "target": "y",
        },
        "the zip archive holds 2 files (a.csv, b.csv); nmsnn reads an archive of one CSV file",
    ),
    (
        "zip of a spreadsheet",
        lambda p: {"path": zipped(p, "sheet.zip", {"data.xlsx": "x"}), "target": "y"},
        "holds a '.xlsx' file; a compressed file is read as the CSV it holds",
    ),
    (
        "broken gzip",
        lambda p: {"path": write(p, "broken.csv.gz", b"not gzip at all", "wb"), "target": "y"},
        "broken.csv.gz: not a readable .gz file",
    ),
    (
        "duplicate columns",
        lambda p: {"path": write(p, "dup.csv", "x,x,y\n1,2,a\n"), "target": "y"},
        "duplicate column names ['x']",
    ),
    (
        "unknown suffix",
        lambda p: {"path": write(p, "f.ods", "x"), "target": "y"},
        "unknown file type '.ods'",
    ),
    (
        "broken workbook",
        lambda p: {"path": write(p, "f.xlsx", "x"), "target": "y"},
        "f.xlsx: not a readable Excel workbook (BadZipFile",
    ),
    (
        "target not found",
        lambda p: {"frame": frame_rows(), "target": "label"},
        "target column 'label' not found; the columns are ['x', 'y']",
    ),
    (
        "target in another case",
        lambda p: {"frame": frame_rows(), "target": " Y"},
        "target column ' Y' not found (did you mean 'y'?); the columns are ['x', 'y']",
    ),
    (
        "misspelt override",
        lambda p: {"frame": frame_rows(price=1.0), "target": "y", "drop": ["prize"]},
        "data.drop names column(s) ['prize'] that do not exist (did you mean 'price'?)",
    ),
    (
        "file without a header line",
        lambda p: {
            "path": write(p, "iris.data", "5.1,3.5,1.4,0.2,setosa\n4.9,3.0,1.4,0.2,setosa\n"),
            "target": "class",
        },
        "the columns are ['5.1', '3.5', '1.4', '0.2', 'setosa']. The first line looks like data, not column "
        "names: add a header line that names the columns.",
    ),
    ("no target given", lambda p: {"frame": frame_rows()}, "no target column given"),
    (
        "target all missing",
        lambda p: {"frame": frame_rows(y=[None] * 40), "target": "y"},
        "is entirely empty",
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
        "many numbers with a stray word",
        lambda p: {"frame": frame_rows(n=100, x=[f"{i}.5" for i in range(99)] + ["oops"]), "target": "y"},
        "column 'x' holds numbers, but 1 value(s) are not numbers, e.g. 'oops' in row 99; fix or "
        "empty them, set data.numeric=[x] to read them as missing values",
    ),
    (
        "numbers with many stray words",
        lambda p: {"frame": frame_rows(n=100, x=[str(i) for i in range(90)] + ["n/a"] * 10), "target": "y"},
        "column 'x' mostly holds numbers, but 10 value(s) are not numbers, e.g. 'n/a' in row 90",
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
        "unknown overrides",
        lambda p: {"frame": frame_rows(), "target": "y", "categorical": ["q"], "parse_dates": ["r", "s"]},
        "data.categorical names column(s) ['q'] that do not exist; data.parse_dates names column(s) "
        "['r', 's'] that do not exist; the columns are ['x', 'y']",
    ),
    (
        "override names the target",
        lambda p: {"frame": frame_rows(), "target": "y", "numeric": ["y"]},
        "data.numeric names the target column 'y'",
    ),
    (
        "column in two overrides",
        lambda p: {"frame": frame_rows(), "target": "y", "categorical": ["x"], "numeric": ["x"]},
        "column 'x' is in both data.categorical and data.numeric",
    ),
    (
        "not a date in a parse_dates column",
        lambda p: {
            "frame": frame_rows(when=["31/01/2024"] * 39 + ["someday"]),
            "target": "y",
            "parse_dates": ["when"],
        },
        "column 'when' (data.parse_dates) has 1 value(s) that are not dates (format %d/%m/%Y), "
        "e.g. 'someday' in row 39",
    ),
    (
        "impossible ISO date",
        lambda p: {"frame": frame_rows(when=["2024-01-31"] * 39 + ["2024-02-30"]), "target": "y"},
        "column 'when' holds ISO-8601 dates, but 1 value(s) are not valid dates, e.g. '2024-02-30' in row 39",
    ),
    (
        "max_categories below 2",
        lambda p: {"dataset": "iris", "max_categories": 1},
        "data.max_categories must be",
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


# ----------------------------------------------------------------------------- messy CSV files
def zipped(directory, name, members):
    """A zip archive ``name`` in ``directory`` holding ``members`` (file name: text)."""
    import zipfile

    with zipfile.ZipFile(directory / name, "w") as archive:
        for member, text in members.items():
            archive.writestr(member, text)
    return str(directory / name)


def test_compressed_and_otherwise_delimited_csvs_read_as_the_plain_csv(tmp_path, caplog):
    """data.csv.gz/.bz2/.xz/.zip, a ';'-separated file with decimal commas (as spreadsheets in
    many countries save CSV) and a tab-separated .csv: the same rows as the plain CSV."""
    import bz2
    import gzip
    import lzma

    frame = frame_rows(40, size=np.round(np.linspace(0.5, 20.25, 40), 2))
    frame.to_csv(tmp_path / "plain.csv", index=False)
    text = (tmp_path / "plain.csv").read_bytes()
    (tmp_path / "data.csv.gz").write_bytes(gzip.compress(text))
    (tmp_path / "data.csv.bz2").write_bytes(bz2.compress(text))
    (tmp_path / "data.tsv.xz").write_bytes(lzma.compress(frame.to_csv(sep="\t", index=False).encode()))
    zipped(tmp_path, "data.zip", {"inner/data.csv": text.decode()})
    frame.to_csv(tmp_path / "semicolon.csv", sep=";", decimal=",", index=False)
    frame.to_csv(tmp_path / "tabs.csv", sep="\t", index=False)
    assert b"0,5" in (tmp_path / "semicolon.csv").read_bytes()

    def tensors(name):
        dm = TabularDataModule(path=str(tmp_path / name), target="y")
        dm.setup()
        return dm.tensors["train"].x

    expected = tensors("plain.csv")
    with caplog.at_level(logging.INFO):
        for name in ("data.csv.gz", "data.csv.bz2", "data.tsv.xz", "data.zip", "semicolon.csv", "tabs.csv"):
            torch.testing.assert_close(tensors(name), expected, msg=name)
    assert (
        f"{tmp_path / 'semicolon.csv'}: the header holds no ',' but ';'; read with ';' as the delimiter "
        "and ',' as the decimal mark" in caplog.text
    )
    assert f"{tmp_path / 'tabs.csv'}: the header holds no ',' but '\\t'; read with '\\t'" in caplog.text


def test_an_excel_workbook_reads_its_first_sheet_with_typed_dates(tmp_path, caplog):
    """The first sheet, its Excel dates as dates: the same features as the CSV of the same rows
    (ISO-8601 text there); the other sheets are named."""
    frame = frame_rows(40, when=pd.date_range("2024-01-01 06:00", periods=40, freq="37h"))
    frame.to_csv(tmp_path / "data.csv", index=False)
    with pd.ExcelWriter(tmp_path / "book.xlsx") as book:
        frame.to_excel(book, sheet_name="rows", index=False)
        frame.head(2).to_excel(book, sheet_name="notes", index=False)

    def features(name):
        dm = TabularDataModule(path=str(tmp_path / name), target="y")
        dm.setup()
        return dm.preprocessor.numeric, dm.tensors["train"].x

    with caplog.at_level(logging.INFO):
        (columns, x), (csv_columns, csv_x) = features("book.xlsx"), features("data.csv")
    assert columns == csv_columns == ["x", "when"]
    torch.testing.assert_close(x, csv_x)
    assert "book.xlsx: read its first sheet, 'rows', of 2 ('notes')" in caplog.text


def test_spaced_csv_with_question_marks_reads_as_the_clean_file_with_gaps(tmp_path):
    """A UCI-style file: ", " between values, "?" for a missing one (also in the target, whose
    row is skipped)."""
    spaced = "age, work, hours, y\n30, Private, 40.5, a\n41, ?, ?, b\n52, State-gov, 38, ?\n"
    (tmp_path / "spaced.csv").write_text(spaced)
    (tmp_path / "clean.csv").write_text("age,work,hours,y\n30,Private,40.5,a\n41,,,b\n52,State-gov,38,\n")
    frames = [
        TabularDataModule(path=str(tmp_path / n), target="y").load_frame()[0]
        for n in ("spaced.csv", "clean.csv")
    ]
    pd.testing.assert_frame_equal(*frames)
    assert list(frames[0].columns) == ["age", "work", "hours", "y"] and len(frames[0]) == 2


def test_spreadsheet_encodings_read_as_the_utf8_file_with_a_note(tmp_path, caplog):
    """Windows-1252 (also past pandas' first chunk, and for a byte it leaves undefined, as
    Latin-1) and UTF-16 with a byte-order mark read as the same rows as UTF-8; the first
    non-UTF-8 byte is named."""
    frame = frame_rows(40, city=["café", "thé", "Zürich", "€uro"] * 10)
    long = frame_rows(60_000, city=[*(["a", "b"] * 30_000)[:-1], "café"])
    files = {
        "utf8.csv": frame.to_csv(index=False).encode(),
        "cp1252.csv": frame.to_csv(index=False).encode("cp1252"),
        "utf16.csv": frame.to_csv(index=False).encode("utf-16"),
        "late.csv": long.to_csv(index=False).encode("cp1252"),
        "undefined.csv": frame.to_csv(index=False).encode("cp1252").replace(b"\x80uro", b"\x81uro"),
    }
    for name, raw in files.items():
        (tmp_path / name).write_bytes(raw)

    def read(name):
        dm = TabularDataModule(path=str(tmp_path / name), target="y")
        return dm.load_frame()[0]

    with caplog.at_level(logging.INFO):
        for name in ("cp1252.csv", "utf16.csv"):
            pd.testing.assert_frame_equal(read(name), read("utf8.csv"))
        assert read("late.csv")["city"].iloc[-1] == "café"
        assert read("undefined.csv")["city"].iloc[3] == "\x81uro"
    first = frame.to_csv(index=False).encode("cp1252").index(b"\xe9")
    assert f"cp1252.csv: not UTF-8 text (byte 0xe9 at offset {first}); read as Windows-1252" in caplog.text
    assert "utf16.csv: UTF-16 text (by its byte-order mark)" in caplog.text
    assert "undefined.csv: not UTF-8 text (byte 0xe9" in caplog.text and "read as Latin-1" in caplog.text


def test_numbers_written_with_currency_separators_and_percents_are_numbers(tmp_path, caplog):
    """'$1,234.50', '45%', '-€3': numeric columns (in training and prediction rows alike), and a
    regression target written so is learned and reported as its numbers."""
    amounts = [f"${v:,.2f}" for v in np.linspace(-500, 250_000, 60)]
    shares = [f"{v}%" for v in range(60)]
    price = [f"€{v:,}" for v in range(1000, 61_000, 1000)]
    path = messy_csv(tmp_path, amount=amounts, share=shares, y=price)
    with caplog.at_level(logging.INFO):
        dm = TabularDataModule(path=path, target="y")
        dm.setup()
    pre = dm.preprocessor
    assert pre.task == "regression" and pre.numeric == ["x", "amount", "share"] and not pre.categorical
    assert (
        "column 'amount' holds numbers written with currency signs, thousands separators or percent "
        "signs (e.g. '$-500.00'); read as the numbers written ('$-500.00' is -500)" in caplog.text
    )
    numbers = frame_rows(60, amount=np.linspace(-500, 250_000, 60), share=np.arange(60.0))
    np.testing.assert_allclose(pre.transform(pd.read_csv(path)), pre.transform(numbers), atol=1e-5)  # cents
    np.testing.assert_allclose(pre.target_numbers(pd.Series(["€1,000", "2000", "-$3.5"])), [1000, 2000, -3.5])
    # a code that only looks like a number with separators stays text
    codes = messy_csv(tmp_path, code=["1,2", "3,45", "A-1"] * 20)
    dm = TabularDataModule(path=codes, target="y")
    dm.setup()
    assert dm.preprocessor.categorical == ["code"]


def messy_csv(tmp_path, n=60, **columns):
    """A CSV file of ``frame_rows(n, **columns)``, written and read back as a user's file is."""
    path = tmp_path / "data.csv"
    frame_rows(n, **columns).to_csv(path, index=False)
    return str(path)


def test_a_count_column_with_a_stray_word_is_a_text_column(tmp_path, caplog):
    path = messy_csv(tmp_path, count=["2", "4", "6", "8", "unknown"] * 12)
    with caplog.at_level(logging.WARNING):
        dm = TabularDataModule(path=path, target="y")
        dm.setup()
    pre = dm.preprocessor
    assert pre.numeric == ["x"] and pre.categorical == ["count"]
    assert pre.feature_names[1:] == ["count=2", "count=4", "count=6", "count=8", "count=unknown"]
    assert f"{path}: column 'count' holds numbers and 12 value(s) that are not, ['unknown']" in caplog.text
    assert "data.numeric=[count]" in caplog.text
    # a file with only the numbers (read as integers, or floats with a gap) scores the same codes
    rows = pd.read_csv(path).head(4)
    again = rows.assign(count=[2.0, 4.0, 6.0, np.nan])
    expected = rows.assign(count=["2", "4", "6", pre.category_fill[0]])
    np.testing.assert_array_equal(pre.transform(again), pre.transform(expected))


def test_numeric_override_reads_words_as_missing_in_training_and_prediction(tmp_path, caplog):
    values = [f"{i}.25" for i in range(60)]
    values[3] = "n/a?"
    path = messy_csv(tmp_path, x2=values)
    with pytest.raises(DataError, match=r"data\.numeric=\[x2\]"):
        TabularDataModule(path=path, target="y").setup()
    with caplog.at_level(logging.WARNING):
        dm = TabularDataModule(path=path, target="y", numeric=["x2"])
        dm.setup()
    assert dm.hparams.numeric == ["x2"] and dm.preprocessor.coerce == ["x2"]
    assert dm.preprocessor.numeric == ["x", "x2"]
    assert (
        f"{path}: column 'x2' (data.numeric): 1 value(s) are not numbers and are read as missing "
        "(imputed with the training median), e.g. 'n/a?' in row 3" in caplog.text
    )
    # the checkpoint's preprocessing (plain values) reads words as missing at prediction time too
    torch.save(dm.state_dict(), tmp_path / "state.pt")
    pre = TabularPreprocessor.from_state_dict(
        torch.load(tmp_path / "state.pt", weights_only=True)["preprocessor"]
    )
    rows = pd.read_csv(path).head(3).assign(x2=["1.5", "unknown", ""])
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        x = pre.transform(rows, "new.csv")
    assert "new.csv: column 'x2' (data.numeric): 1 value(s) are not numbers" in caplog.text
    imputed = rows.assign(x2=[1.5, np.nan, np.nan])
    np.testing.assert_array_equal(x, pre.transform(imputed))
    assert x[1, 1] == pytest.approx((pre.impute[1] - pre.center[1]) / pre.scale[1])


def test_categorical_override_one_hot_encodes_numeric_codes(tmp_path):
    codes = [1, 2, 3, None] * 15
    path = messy_csv(tmp_path, code=codes, region=[10, 20] * 30)
    dm = TabularDataModule(path=path, target="y", categorical=["code", "region"])
    dm.setup()
    pre = dm.preprocessor
    assert pre.numeric == ["x"] and pre.categorical == ["code", "region"]
    assert pre.feature_names[1:] == ["code=1", "code=2", "code=3", "region=10", "region=20"]
    rows = pd.DataFrame({"x": [0.0, 0.0], "code": [3, 1], "region": [20, 10]})  # integers, no gap
    x = pre.transform(rows)
    np.testing.assert_array_equal(x[:, 1:], [[0, 0, 1, 0, 1], [1, 0, 0, 1, 0]])


def test_parse_dates_override_reads_other_date_formats(tmp_path):
    stamps = pd.date_range("2024-01-01", periods=60, freq="37h")
    path = messy_csv(tmp_path, when=stamps.strftime("%d/%m/%Y %H:%M"))
    dm = TabularDataModule(path=path, target="y", parse_dates=["when"])
    dm.setup()
    pre = dm.preprocessor
    assert pre.numeric == ["x", "when"] and pre.dates == ["when"]
    assert pre.date_formats == ["%d/%m/%Y %H:%M"], "day first: the file has days past the 12th"
    train = stamps[dm.split_index["train"]]
    seconds = (train - pd.Timestamp(0)) / pd.Timedelta(seconds=1)
    assert pre.center[1] == pytest.approx(np.mean(seconds))
    rows = pd.read_csv(path).head(5)  # days 1 to 8: the format of the training rows, not month first
    typed = rows.assign(when=stamps[:5])
    np.testing.assert_array_equal(pre.transform(rows), pre.transform(typed))


def test_iso_date_text_in_a_csv_scores_like_parquet_datetimes(tmp_path, caplog):
    stamps = pd.date_range("2024-01-01 06:30", periods=60, freq="37h")
    frame = frame_rows(60, when=stamps)
    frame.to_parquet(tmp_path / "data.parquet")
    frame.to_csv(tmp_path / "rows.csv", index=False)  # "2024-01-01 06:30:00"
    dm = TabularDataModule(path=str(tmp_path / "data.parquet"), target="y")
    dm.setup()
    assert dm.preprocessor.numeric == ["x", "when"]
    rows = pd.read_csv(tmp_path / "rows.csv")
    assert not ptypes_is_datetime(rows["when"]), "the CSV holds the dates as text"
    np.testing.assert_array_equal(dm.preprocessor.transform(rows), dm.preprocessor.transform(frame))
    # trained from the CSV itself: the same columns, with a note that the text was read as dates
    with caplog.at_level(logging.INFO):
        from_csv = TabularDataModule(path=str(tmp_path / "rows.csv"), target="y")
        from_csv.setup()
    assert from_csv.preprocessor.numeric == ["x", "when"]
    assert f"{tmp_path / 'rows.csv'}: column 'when' holds ISO-8601 dates" in caplog.text
    # date-only, T-separated, fractions and UTC offsets: seconds since 1970 in UTC
    text = pd.Series(["2024-01-31", "2024-01-31T12:00:00Z", "2024-01-31 13:00:00.5+01:00", None])
    typed = pd.to_datetime(
        ["2024-01-31", "2024-01-31 12:00", "2024-01-31 12:00:00.5", None], utc=True, format="ISO8601"
    )
    np.testing.assert_array_equal(
        from_csv.preprocessor.transform(frame.head(4).assign(when=text)),
        from_csv.preprocessor.transform(frame.head(4).assign(when=typed)),
    )


def ptypes_is_datetime(values: pd.Series) -> bool:
    return pd.api.types.is_datetime64_any_dtype(values)


def test_rows_without_a_target_are_skipped_once_and_splits_agree(tmp_path, caplog):
    labels = ["a", "b", "c"] * 20
    for row in (4, 9, 31):
        labels[row] = None
    path = messy_csv(tmp_path, y=labels)
    with caplog.at_level(logging.WARNING):
        dm = TabularDataModule(path=path, target="y")
        dm.setup()
        frames = {s: dm.split_frame(s) for s in ("train", "val", "test")}
    message = f"{path}: 3 row(s) have no value in target column 'y' and are skipped (rows 4, 9, 31)."
    assert caplog.text.count(message) == 1
    assert dm.skipped_rows == 3
    assert sum(len(dm.split_index[s]) for s in frames) == 57
    kept = pd.concat(frames.values())
    assert kept["y"].notna().all() and not {4, 9, 31} & set(kept.index), "rows keep their file numbers"
    for split, rows in frames.items():
        np.testing.assert_array_equal(dm.tensors[split].x.numpy(), dm.preprocessor.transform(rows))


def test_many_valued_text_column_groups_rare_values_into_other(tmp_path, caplog):
    cities = [f"city{i % 30}" if i % 2 else f"rare{i}" for i in range(120)]  # 15 cities, 60 rare
    path = messy_csv(tmp_path, n=120, city=cities)
    with caplog.at_level(logging.INFO):
        dm = TabularDataModule(path=path, target="y", max_categories=10, test_size=0.0, val_size=0.0)
        dm.setup()
    pre = dm.preprocessor
    assert pre.categorical == ["city"] and pre.grouped == [True] and len(pre.categories[0]) == 9
    assert pre.feature_names[-1] == "city=<other>" and len(pre.feature_names) == 11
    assert f"{path}: text column 'city' has 75 distinct values in the training split" in caplog.text
    assert "the 9 most frequent are one-hot columns, the other 66 (84 training rows" in caplog.text
    x = pre.transform(pd.DataFrame({"x": [0.0, 0.0], "city": [pre.categories[0][0], "Atlantis"]}))
    np.testing.assert_array_equal(x[:, 1:], [[1] + [0] * 9, [0] * 9 + [1]])
    assert (dm.tensors["train"].x[:, 1:].sum(1) == 1).all(), "every row has exactly one city column"
    # plain values in the checkpoint, and old state dicts (no grouped/coerce/dates) still load
    torch.save(dm.state_dict(), tmp_path / "state.pt")
    state = torch.load(tmp_path / "state.pt", weights_only=True)["preprocessor"]
    assert TabularPreprocessor.from_state_dict(state).feature_names == pre.feature_names
    old = {k: v for k, v in state.items() if k not in ("grouped", "coerce", "dates")}
    assert TabularPreprocessor.from_state_dict(old).feature_names == pre.feature_names[:-1]


def test_a_text_column_of_unique_names_is_ignored_unless_kept(tmp_path, caplog):
    path = messy_csv(tmp_path, name=[f"user{i}" for i in range(60)])
    with caplog.at_level(logging.WARNING):
        dm = TabularDataModule(path=path, target="y")
        dm.setup()
    assert dm.preprocessor.categorical == [] and dm.preprocessor.numeric == ["x"]
    assert f"{path}: text column 'name' has 60 distinct values in 60 rows" in caplog.text
    assert "data.categorical=[name] keeps it" in caplog.text
    kept = TabularDataModule(path=path, target="y", categorical=["name"], max_categories=5)
    kept.setup()
    assert kept.preprocessor.categorical == ["name"] and kept.preprocessor.grouped == [True]
    assert kept.preprocessor.feature_names[-1] == "name=<other>" and kept.num_features == 6


def test_a_column_of_other_date_formats_points_to_parse_dates(tmp_path, caplog):
    """Dates not in ISO-8601 may be day or month first: ignored unasked, with the setting that
    reads them named, not the one for names (data.categorical)."""
    days = pd.date_range("2020-01-01", periods=60, freq="D").strftime("%m/%d/%Y")
    path = messy_csv(tmp_path, day=list(days))
    with caplog.at_level(logging.WARNING):
        dm = TabularDataModule(path=path, target="y")
        dm.setup()
    assert "day" not in dm.preprocessor.numeric + dm.preprocessor.categorical
    assert (
        "text column 'day' holds dates (e.g. '01/01/2020', format %m/%d/%Y) and is ignored" in caplog.text
        and "data.parse_dates=[day] reads them as dates" in caplog.text
    )
    forced = TabularDataModule(path=path, target="y", parse_dates=["day"])
    forced.setup()
    assert forced.preprocessor.numeric == ["x", "day"]


def test_an_integer_id_column_is_pointed_out_but_used(tmp_path, caplog):
    ids = np.random.default_rng(1).permutation(60) + 1000
    path = messy_csv(tmp_path, customer=ids, visits=[1, 2, 3] * 20)
    with caplog.at_level(logging.WARNING):
        dm = TabularDataModule(path=path, target="y")
        dm.setup()
    assert dm.preprocessor.numeric == ["x", "customer", "visits"]
    assert f"{path}: integer column 'customer' has a different value in every row" in caplog.text
    assert "data.drop=[customer]" in caplog.text and "'visits'" not in caplog.text


def test_quantile_scaler_matches_scikit_learn_and_survives_a_checkpoint():
    """scaler=quantile: scikit-learn's QuantileTransformer (normal output), then standardized,
    applied from the plain quantiles the preprocessor keeps."""
    from sklearn.preprocessing import QuantileTransformer

    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {"income": rng.lognormal(3, 1, 400), "kids": rng.integers(0, 3, 400), "y": rng.normal(size=400)}
    )
    pre = TabularPreprocessor.fit(frame, "y", "regression", ["income", "kids"], [], scaler="quantile")
    x = pre.transform(frame)
    reference = QuantileTransformer(n_quantiles=256, output_distribution="normal", subsample=None)
    expected = reference.fit_transform(frame[["income", "kids"]].to_numpy())
    expected = (expected - expected.mean(0)) / expected.std(0)
    np.testing.assert_allclose(x, expected, atol=1e-4)
    assert abs(float(pd.Series(x[:, 0]).skew())) < 0.1  # the lognormal column is symmetric now
    again = TabularPreprocessor.from_state_dict(torch_round_trip(pre.state_dict()))
    np.testing.assert_array_equal(again.transform(frame), x)


def torch_round_trip(state):
    import io

    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def test_log1p_target_transform_learns_the_log_and_reports_the_original_scale(caplog):
    rng = np.random.default_rng(1)
    x = rng.normal(size=300)
    frame = pd.DataFrame({"x": x, "price": np.exp(2 + x + 0.1 * rng.normal(size=300))})
    with caplog.at_level(logging.INFO, logger="nmsnn"):
        dm = TabularDataModule(frame=frame, target="price", target_transform="auto")
        dm.setup()
    pre = dm.preprocessor
    assert pre.target_transform == "log1p" and "learns log(1 + price)" in caplog.text
    train = dm.split_frame("train")
    assert pre.target_mean == pytest.approx(np.log1p(train["price"]).mean())
    from nmsnn.lit.module import target_values

    y = dm.tensors["train"].y
    back = target_values(y.double(), pre.target_mean, pre.target_std, dm.model_kwargs()["target_transform"])
    np.testing.assert_allclose(back.numpy(), train["price"].to_numpy(), rtol=1e-5)
    # a symmetric target stays as it is under auto; log1p refuses negative targets by name
    frame["level"] = x
    plain = TabularDataModule(frame=frame.drop(columns="price"), target="level", target_transform="auto")
    plain.setup()
    assert plain.preprocessor.target_transform == "none"
    with pytest.raises(DataError, match=r"non-negative target.*'level'"):
        TabularDataModule(frame=frame.drop(columns="price"), target="level", target_transform="log1p").setup()


def test_piecewise_linear_bins_follow_the_training_quantiles():
    """data.bins: each numeric column with more than two values also feeds one input per quantile
    bin of its training values, 0 below the bin, rising across it, 1 above (Gorishniy et al.)."""
    from nmsnn.data.preprocessing import piecewise_linear, quantile_edges

    edges = [0.0, 1.0, 3.0]
    np.testing.assert_allclose(
        piecewise_linear(np.array([-5.0, 0.0, 0.5, 1.0, 2.0, 3.0, 9.0]), edges),
        [[0, 0], [0, 0], [0.5, 0], [1, 0], [1, 0.5], [1, 1], [1, 1]],
    )
    # a column of few values gets its distinct quantiles only (8 is three of them); a yes/no
    # column none
    few = np.array([[4.0, 0.0], [4, 1], [6, 0], [8, 1], [8, 1], [8, 0]])
    assert quantile_edges(few, 4) == [[4.0, 4.5, 7.0, 8.0], []]
    assert quantile_edges(few, 8)[0] == list(np.unique(np.quantile(few[:, 0], np.linspace(0, 1, 9))))

    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "income": rng.lognormal(3, 1, 400),
            "owner": rng.integers(0, 2, 400),
            "city": rng.choice(["a", "b"], 400),
            "y": rng.normal(size=400),
        }
    )
    plain = TabularPreprocessor.fit(frame, "y", "regression", ["income", "owner"], ["city"])
    pre = TabularPreprocessor.fit(frame, "y", "regression", ["income", "owner"], ["city"], bins=8)
    assert len(pre.bin_edges[0]) == 9 and pre.bin_edges[1] == []
    z = plain.transform(frame)[:, 0]
    np.testing.assert_allclose(pre.bin_edges[0], np.quantile(z, np.linspace(0, 1, 9)), rtol=1e-5)
    x = pre.transform(frame)
    assert pre.feature_names == [
        "income", "owner", *[f"income:bin{t}" for t in range(1, 9)], "city=a", "city=b",
    ]  # fmt: skip
    np.testing.assert_allclose(x[:, :2], plain.transform(frame)[:, :2], atol=1e-6)
    np.testing.assert_allclose(x[:, 2:10], piecewise_linear(z.astype(float), pre.bin_edges[0]), atol=1e-6)
    # each bin holds about an eighth of the training rows on its rising part
    rising = ((x[:, 2:10] > 0) & (x[:, 2:10] < 1)).mean(0)
    assert np.all(np.abs(rising - 1 / 8) < 0.02)
    again = TabularPreprocessor.from_state_dict(torch_round_trip(pre.state_dict()))
    np.testing.assert_array_equal(again.transform(frame), x)


def test_bins_auto_bins_regression_features_and_a_bad_value_is_named(caplog):
    rng = np.random.default_rng(2)
    frame = pd.DataFrame({"a": rng.normal(size=200), "b": rng.normal(size=200)})
    frame["y"] = frame.a**2 + frame.b
    frame["label"] = np.where(frame.y > 1, "high", "low")
    with caplog.at_level(logging.INFO, logger="nmsnn"):
        regression = TabularDataModule(frame=frame.drop(columns="label"), target="y")
        regression.setup()
    assert regression.num_features == 2 + 2 * 8  # 8 bins below 8 * 150 training rows
    assert "piecewise-linear encoding over up to 8 quantile bins (data.bins=auto: one per 150" in caplog.text
    classification = TabularDataModule(frame=frame.drop(columns="y"), target="label")
    classification.setup()
    assert classification.num_features == 2
    none = TabularDataModule(frame=frame.drop(columns="label"), target="y", bins=0)
    none.setup()
    assert none.num_features == 2
    for bad in (1, -2, "many", 2.5, True):
        with pytest.raises(DataError, match=r"data\.bins must be auto, 0 .* got"):
            TabularDataModule(frame=frame, target="y", bins=bad)


def test_bins_auto_grow_with_the_rows_the_bins_are_fitted_on():
    from nmsnn.data.datamodule import auto_bins

    assert [auto_bins("regression", n) for n in (100, 1199, 1650, 3332, 4800, 50_000)] == [
        8,
        8,
        11,
        22,
        32,
        32,
    ]
    assert auto_bins("classification", 50_000) == 0
    rng = np.random.default_rng(3)
    frame = pd.DataFrame({"a": rng.normal(size=6000)})
    frame["y"] = np.sin(3 * frame.a)
    dm = TabularDataModule(frame=frame, target="y", folds=0)  # 6000 * 0.8 * 0.8 = 3840 training rows
    dm.setup()
    assert dm.num_features == 1 + 3840 // 150 == 26
    explicit = TabularDataModule(frame=frame, target="y", bins=4, folds=0)
    explicit.setup()
    assert explicit.num_features == 1 + 4
