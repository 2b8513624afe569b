"""The bad-input catalogue: what users get wrong, and what the command line says back.

Every case runs a real entry point (in-process, through Hydra's command-line parsing) and checks
the exit status, that the message names the problem, that no traceback reaches the user, and
that no output file was left half-written.
"""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from nmsnn.cli import eval as eval_cli
from nmsnn.cli import export as export_cli
from nmsnn.cli import predict as predict_cli
from nmsnn.cli import train as train_cli
from nmsnn.core.backends import reset_auto
from nmsnn.errors import ConfigError
from nmsnn.lit.module import SpikingModule
from nmsnn.pipeline import train as train_pipeline
from tests.conftest import compose_train

FIXTURE = Path(__file__).parent / "fixtures" / "mixed_classification.csv"
MARKER = "acted.txt"  # what a checkpoint that could act would create
ENTRY_POINTS = {
    "train": train_cli.main,
    "predict": predict_cli.main,
    "eval": eval_cli.main,
    "export": export_cli.main,
}


def good_frame(n: int = 60) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame({"x1": rng.normal(size=n), "x2": rng.normal(size=n), "y": ["a", "b", "c"] * (n // 3)})


def csv(frame: pd.DataFrame):
    return lambda d: frame.to_csv(d / "data.csv", index=False)


def text(content: str | bytes, name: str = "data.csv"):
    def make(d: Path) -> None:
        (d / name).write_bytes(content if isinstance(content, bytes) else content.encode())

    return make


def nested_parquet(d: Path) -> None:
    frame = good_frame()
    frame["tags"] = [[1, 2]] * len(frame)
    frame.to_parquet(d / "data.parquet")


@dataclass
class Case:
    name: str
    command: str
    args: list[str]
    message: str
    make: object = None
    status: int = 2
    must_not_exist: list[str] = field(default_factory=list)


TRAIN_DATA = ["data=csv", "data.path={d}/data.csv", "data.target=y"]
FAST = ["trainer.max_epochs=1", "logger=none", "trainer.enable_progress_bar=false"]

CASES = [
    # ---- files
    Case("missing file", "train", TRAIN_DATA, "data.csv: file not found"),
    Case("empty file", "train", TRAIN_DATA, "data.csv: the file is empty", text("")),
    Case("header-only file", "train", TRAIN_DATA, "has a header but no data rows", text("x1,x2,y\n")),
    Case("binary file", "train", TRAIN_DATA, "not a text file", text(bytes(range(256)) * 8)),
    Case(
        "broken gzip",
        "train",
        ["data=csv", "data.path={d}/data.csv.gz", "data.target=y"],
        "data.csv.gz: not a readable .gz file",
        text(b"x1,y\n1,a\n", "data.csv.gz"),
    ),
    Case(
        "duplicate column names",
        "train",
        TRAIN_DATA,
        "duplicate column names ['x1']",
        text("x1,x1,y\n1,2,a\n"),
    ),
    Case(
        "unknown file type",
        "train",
        ["data=csv", "data.path={d}/data.xls", "data.target=y"],
        "unknown file type '.xls' (an .xls workbook: save it as .xlsx or CSV)",
        text("x", "data.xls"),
    ),
    Case(
        "parquet with nested column",
        "train",
        ["data=parquet", "data.path={d}/data.parquet", "data.target=y"],
        "column 'tags' holds nested values",
        nested_parquet,
    ),
    # ---- target
    Case(
        "target column missing",
        "train",
        ["data=csv", "data.path={d}/data.csv", "data.target=label"],
        "target column 'label' not found; the columns are ['x1', 'x2', 'y']",
        csv(good_frame()),
    ),
    Case(
        "target all NaN",
        "train",
        TRAIN_DATA,
        "target column 'y' is entirely empty",
        csv(good_frame().assign(y=np.nan)),
    ),
    Case(
        "target with missing values (skipped, warned)",
        "train",
        [*TRAIN_DATA, *FAST],
        "20 row(s) have no value in target column 'y' and are skipped (rows 2, 5, 8, 11, 14, ...)",
        csv(good_frame().assign(y=["a", "b", None] * 20)),
        status=0,
    ),
    Case("constant target", "train", TRAIN_DATA, "has a single value ('a')", csv(good_frame().assign(y="a"))),
    Case(
        "class with one member",
        "train",
        TRAIN_DATA,
        "class(es) ['c'] of target 'y' have a single row",
        csv(good_frame().assign(y=["a", "b"] * 29 + ["a", "c"])),
    ),
    Case(
        "regression on text labels",
        "train",
        [*TRAIN_DATA, "data.task=regression"],
        "task=regression needs a numeric target",
        csv(good_frame()),
    ),
    Case(
        "unknown task",
        "train",
        [*TRAIN_DATA, "data.task=ranking"],
        "task='ranking' is not a task",
        csv(good_frame()),
    ),
    # ---- features
    Case(
        "infinite values",
        "train",
        TRAIN_DATA,
        "column 'x1' has infinite values (rows 7)",
        csv(good_frame().assign(x1=[0.0] * 7 + [np.inf] + [0.0] * 52)),
    ),
    Case(
        "numbers with stray words",
        "train",
        TRAIN_DATA,
        "column 'x2' holds numbers, but 1 value(s) are not numbers, e.g. 'n/a?' in row 3; fix or empty "
        "them, set data.numeric=[x2] to read them as missing values",
        csv(good_frame().assign(x2=["1.5", "2", "3", "n/a?"] + [f"0.{i}" for i in range(56)])),
    ),
    Case(
        "few numbers with a stray word (read as text, warned)",
        "train",
        [*TRAIN_DATA, *FAST],
        "column 'x2' holds numbers and 15 value(s) that are not, ['unknown']; with 4 distinct values",
        csv(good_frame().assign(x2=["2", "4", "6", "unknown"] * 15)),
        status=0,
    ),
    Case(
        "text column of thousands of names (ignored, warned)",
        "train",
        [*TRAIN_DATA, *FAST],
        "text column 'name' has 3000 distinct values in 3000 rows",
        csv(pd.concat([good_frame(3000)], ignore_index=True).assign(name=[f"user{i}" for i in range(3000)])),
        status=0,
    ),
    Case(
        "override names unknown column",
        "train",
        [*TRAIN_DATA, "data.numeric=[zzz]"],
        "data.numeric names column(s) ['zzz'] that do not exist; the columns are ['x1', 'x2', 'y']",
        csv(good_frame()),
    ),
    Case(
        "not a date in a parse_dates column",
        "train",
        [*TRAIN_DATA, "data.parse_dates=[x2]"],
        "column 'x2' (data.parse_dates) has 1 value(s) that are not dates (format %Y%m%d), e.g. 'soon' "
        "in row 59",
        csv(good_frame().assign(x2=["20240131"] * 59 + ["soon"])),
    ),
    Case(
        "drop names unknown column",
        "train",
        [*TRAIN_DATA, "data.drop=[zzz]"],
        "data.drop names column(s) ['zzz']",
        csv(good_frame()),
    ),
    Case("too few rows", "train", TRAIN_DATA, "only 6 rows", csv(good_frame(6))),
    # ---- settings from the command line
    Case(
        "test size out of range", "train", ["data.test_size=1.5"], "data.test_size must be in [0, 1), got 1.5"
    ),
    Case("unknown bundled dataset", "train", ["data.dataset=mnist"], "unknown bundled dataset 'mnist'"),
    Case("decay above one", "train", ["model.neuron.decay=1.5"], "layer 1: decay must be in (0, 1], got 1.5"),
    Case("zero threshold", "train", ["model.neuron.threshold=0"], "threshold must be > 0, got 0"),
    Case(
        "negative penalty",
        "train",
        ["model.neuron.penalty=-1"],
        "penalty must be a finite number >= 0, got -1",
    ),
    Case(
        "per-layer list of wrong length",
        "train",
        ["model.neuron.decay=[0.9,0.8,0.7]"],
        "neuron.decay has 3 values but the network has 2 layers",
    ),
    Case("zero time steps", "train", ["model.time_steps=0"], "time_steps must be a positive integer, got 0"),
    Case(
        "time steps as text",
        "train",
        ["model.time_steps=many"],
        "time_steps must be a positive integer, got 'many'",
    ),
    Case(
        "burn-in not below time steps",
        "train",
        ["model.burn_in=16"],
        "burn_in=16 must be smaller than time_steps=16",
    ),
    Case("unknown encoder", "train", ["model.encoder=poisson"], "encoder='poisson' is not an encoder"),
    Case("unknown reset", "train", ["model.neuron.reset=zero"], "reset='zero' is not a reset mode"),
    Case("unknown backend", "train", ["model.backend=gpu9000"], "backend='gpu9000' is not available"),
    Case(
        "test checkpoint choice",
        "train",
        [*FAST, "test_ckpt=worst"],
        "test_ckpt='worst' must be 'best' or 'last'",
    ),
    Case(
        "batch size larger than the data (warned)",
        "train",
        ["data=iris", "data.batch_size=100000", *FAST],
        "data.batch_size=100000 is larger than the 96 training rows",
        status=0,
    ),
    Case(
        "config key that does not exist",
        "train",
        ["model.neuron.tau=3"],
        "Could not override 'model.neuron.tau'",
        status=1,
    ),
    # ---- prediction and evaluation
    Case(
        "checkpoint missing",
        "predict",
        ["ckpt_path={d}/none.ckpt", "input_path={d}/rows.csv", "output_path={d}/out.csv"],
        "none.ckpt: checkpoint file not found",
        must_not_exist=["out.csv"],
    ),
    Case(
        "truncated checkpoint",
        "predict",
        ["ckpt_path={d}/cut.ckpt", "input_path={d}/rows.csv", "output_path={d}/out.csv"],
        "not a readable PyTorch checkpoint",
        must_not_exist=["out.csv"],
    ),
    Case(
        "foreign checkpoint",
        "predict",
        ["ckpt_path={d}/foreign.ckpt", "input_path={d}/rows.csv", "output_path={d}/out.csv"],
        "not an nmsnn checkpoint",
        must_not_exist=["out.csv"],
    ),
    Case(
        "input rows missing",
        "predict",
        ["ckpt_path={d}/model.ckpt", "input_path={d}/nope.csv", "output_path={d}/out.csv"],
        "nope.csv: file not found",
        must_not_exist=["out.csv"],
    ),
    Case(
        "prediction columns missing",
        "predict",
        ["ckpt_path={d}/model.ckpt", "input_path={d}/missing_cols.csv", "output_path={d}/out.csv"],
        "missing column(s) ['b', 'color'] that the model was trained on",
        must_not_exist=["out.csv"],
    ),
    Case(
        "output exists",
        "predict",
        ["ckpt_path={d}/model.ckpt", "input_path={d}/rows.csv", "output_path={d}/existing.csv"],
        "existing.csv: file exists; choose another output path or pass overwrite=true",
    ),
    Case(
        "unseen categories (warned)",
        "predict",
        ["ckpt_path={d}/model.ckpt", "input_path={d}/unseen.csv", "output_path={d}/out.csv"],
        "categories not seen in training, encoded as all zeros: ['purple']",
        status=0,
    ),
    Case(
        "extra columns (logged)",
        "predict",
        ["ckpt_path={d}/model.ckpt", "input_path={d}/extra.csv", "output_path={d}/out.csv"],
        "ignoring column(s) not used in training: ['note']",
        status=0,
    ),
    Case(
        "predict id_column that is not a column",
        "predict",
        ["ckpt_path={d}/model.ckpt", "input_path={d}/rows.csv", "output_path={d}/out.csv", "id_column=nope"],
        "id_column='nope' is not a column; the columns are ['a', 'b', 'c', 'color']",
        must_not_exist=["out.csv"],
    ),
    Case(
        "export over existing files",
        "export",
        ["ckpt_path={d}/model.ckpt", "output_dir={d}/exported", "formats=[torchscript]"],
        "file(s) exist; choose another output_dir or pass overwrite=true",
    ),
    Case(
        "eval split unknown",
        "eval",
        ["ckpt_path={d}/model.ckpt", "split=everything"],
        "split='everything' must be one of",
    ),
    Case(
        "eval on a file without the target",
        "eval",
        ["ckpt_path={d}/model.ckpt", "+data.path={d}/rows.csv", "split=all"],
        "target column 'label' not found",
    ),
]


def piped_bom_duplicate(d: Path) -> None:
    (d / "data.csv").write_bytes(b"\xef\xbb\xbfx1,x1,y\n1,2,a\n")


def categorical_parquet(d: Path) -> None:
    frame = good_frame()
    frame["y"] = pd.Categorical(frame["y"], categories=["a", "b", "c", "never"])
    frame.to_parquet(d / "data.parquet")


PREDICT = ["input_path={d}/rows.csv", "output_path={d}/out.csv"]
# Round two: checkpoints that could act or are damaged, outputs that would replace inputs,
# settings that would train nothing or mean nothing, and misleading messages.
CASES += [
    # ---- a key added with + (as Hydra's own hint suggests) that its target does not take
    *(
        Case(
            f"{what} key its target does not take",
            "train",
            [*TRAIN_DATA, *FAST, key],
            message,
            csv(good_frame()),
        )
        for what, key, message in (
            (
                "trainer",
                "+trainer.max_epoch=5",
                "trainer.max_epoch is not an argument of lightning.pytorch.Trainer (a typo?)",
            ),
            (
                "callback",
                "+callbacks.early_stopping.patiense=3",
                "callbacks.early_stopping.patiense is not an argument of",
            ),
        )
    ),
    # ---- checkpoints are data: a callable named anywhere is refused, on every load path
    *(
        Case(
            f"checkpoint naming a callable ({where}, {command})",
            command,
            [f"ckpt_path={{d}}/{name}", *extra],
            message,
            must_not_exist=[MARKER, "out.csv"],
        )
        for name, where, message in (
            ("open_optimizer.ckpt", "optimizer", "hyper_parameters.optimizer._target_ = 'builtins.open'"),
            ("open_scheduler.ckpt", "scheduler", "hyper_parameters.scheduler._target_ = 'builtins.open'"),
            ("open_nested.ckpt", "inside the optimizer", "hyper_parameters.optimizer.lr._target_"),
            ("open_data.ckpt", "data settings", "datamodule_hyper_parameters.drop[0]._target_"),
            ("open_top.ckpt", "top level", "extra._target_ = 'builtins.open'"),
            ("open_dotted.ckpt", "a path through a module", "'torch.optim.adamw.torch.load'"),
        )
        for command, extra in (("predict", PREDICT), ("eval", []))
    ),
    Case(
        "export of a checkpoint naming a callable",
        "export",
        ["ckpt_path={d}/open_optimizer.ckpt", "output_dir={d}/new_export"],
        "names a callable that loading or fine-tuning would call",
        must_not_exist=[MARKER, "new_export"],
    ),
    Case(
        "resuming from a checkpoint naming a callable",
        "train",
        [*FAST, "data=csv", f"data.path={FIXTURE}", "data.target=label", "ckpt_path={d}/open_scheduler.ckpt"],
        "hyper_parameters.scheduler._target_ = 'builtins.open'",
        must_not_exist=[MARKER],
    ),
    # ---- damaged checkpoints: one message, no traceback
    Case(
        "checkpoint that is a list",
        "predict",
        ["ckpt_path={d}/list.ckpt", *PREDICT],
        "it holds a list, not a dictionary",
    ),
    Case(
        "checkpoint whose data module state is a list",
        "predict",
        ["ckpt_path={d}/datamodule_list.ckpt", *PREDICT],
        "TabularDataModule is a list, not the data module's state",
    ),
    Case(
        "checkpoint with an unknown data setting",
        "eval",
        ["ckpt_path={d}/unknown_data_setting.ckpt"],
        "datamodule_hyper_parameters holds unknown setting(s) ['colour']",
    ),
    Case(
        "checkpoint with an unknown model setting",
        "predict",
        ["ckpt_path={d}/unknown_model_setting.ckpt", *PREDICT],
        "hyper_parameters holds unknown setting(s) ['tau']",
    ),
    Case(
        "checkpoint whose settings are text",
        "export",
        ["ckpt_path={d}/hparams_text.ckpt", "output_dir={d}/new_export"],
        "hyper_parameters is a str, not a dictionary of settings",
        must_not_exist=["new_export"],
    ),
    Case(
        "checkpoint whose weights are not tensors",
        "predict",
        ["ckpt_path={d}/weights_text.ckpt", *PREDICT],
        "state_dict is not a dictionary of tensors",
    ),
    Case(
        "export of a checkpoint that is a list",
        "export",
        ["ckpt_path={d}/list.ckpt", "output_dir={d}/new_export"],
        "it holds a list, not a dictionary",
        must_not_exist=["new_export"],
    ),
    Case("eval of a checkpoint that is a list", "eval", ["ckpt_path={d}/list.ckpt"], "it holds a list"),
    Case(
        "export of a checkpoint naming a callable in its scheduler",
        "export",
        ["ckpt_path={d}/open_scheduler.ckpt", "output_dir={d}/new_export"],
        "hyper_parameters.scheduler._target_ = 'builtins.open'",
        must_not_exist=[MARKER, "new_export"],
    ),
    Case(
        "resuming from a checkpoint that is a list",
        "train",
        [*FAST, "data=csv", f"data.path={FIXTURE}", "data.target=label", "ckpt_path={d}/list.ckpt"],
        "it holds a list, not a dictionary",
    ),
    # ---- no command writes over a file it reads, whatever the flags
    Case(
        "predictions over the checkpoint through a symbolic link",
        "predict",
        [
            "ckpt_path={d}/model.ckpt",
            "input_path={d}/rows.csv",
            "output_path={d}/link.ckpt",
            "overwrite=true",
        ],
        "link.ckpt: is the file this command reads (ckpt_path)",
    ),
    Case(
        "predictions over the checkpoint, with overwrite",
        "predict",
        [
            "ckpt_path={d}/model.ckpt",
            "input_path={d}/rows.csv",
            "output_path={d}/model.ckpt",
            "overwrite=true",
        ],
        "model.ckpt: is the file this command reads (ckpt_path)",
    ),
    Case(
        "predictions over the input rows, with overwrite",
        "predict",
        ["ckpt_path={d}/model.ckpt", "input_path={d}/rows.csv", "output_path={d}/rows.csv", "overwrite=true"],
        "rows.csv: is the file this command reads (input_path)",
    ),
    Case(
        "eval predictions over the data it scores",
        "eval",
        [
            "ckpt_path={d}/model.ckpt",
            "+data.path={d}/labelled.csv",
            "split=all",
            "predictions_path={d}/labelled.csv",
        ],
        "labelled.csv: is the file this command reads (data.path)",
    ),
    Case(
        "eval predictions over the data it scores, with overwrite",
        "eval",
        [
            "ckpt_path={d}/model.ckpt",
            "+data.path={d}/labelled.csv",
            "split=all",
            "predictions_path={d}/labelled.csv",
            "overwrite=true",
        ],
        "is the file this command reads (data.path)",
    ),
    Case(
        "eval predictions over the checkpoint",
        "eval",
        ["ckpt_path={d}/model.ckpt", "predictions_path={d}/model.ckpt", "overwrite=true"],
        "is the file this command reads (ckpt_path)",
    ),
    Case(
        "export over the checkpoint it reads",
        "export",
        [
            "ckpt_path={d}/inside/model.torchscript.pt",
            "output_dir={d}/inside",
            "formats=[torchscript]",
            "overwrite=true",
        ],
        "model.torchscript.pt: is the file this command reads (ckpt_path)",
    ),
    Case(
        "training data inside the run directory, under a result's name",
        "train",
        [
            *FAST,
            "data=csv",
            "data.path={d}/test_predictions.csv",
            "data.target=y",
            "run_name=r",
            "hydra.run.dir={d}",
        ],
        "test_predictions.csv: is the file this command reads (data.path)",
        lambda d: good_frame().to_csv(d / "test_predictions.csv", index=False),
        must_not_exist=["metrics.json"],
    ),
    # ---- settings that would train nothing, or mean nothing
    Case("negative seed", "train", ["seed=-1"], "seed=-1 must be a whole number from 0 to 4294967295"),
    Case("seed as text", "train", ["seed=abc"], "seed='abc' must be a whole number"),
    Case("fractional seed", "train", ["seed=1.5"], "seed=1.5 must be a whole number"),
    Case(
        "seed beyond 32 bits", "train", ["seed=4294967296"], "seed=4294967296 must be a whole number from 0"
    ),
    Case(
        "zero epochs", "train", ["trainer.max_epochs=0"], "trainer.max_epochs=0 must be a whole number >= 1"
    ),
    Case(
        "fractional epochs",
        "train",
        ["trainer.max_epochs=2.5"],
        "trainer.max_epochs=2.5 must be a whole number",
    ),
    Case("zero steps", "train", ["+trainer.max_steps=0"], "trainer.max_steps=0 must be a whole number >= 1"),
    Case(
        "one time step",
        "train",
        ["model.time_steps=1"],
        "time_steps=1 is too few for 2 spiking layer(s): each layer passes its input on one step later",
    ),
    Case(
        "time steps no more than the layers",
        "train",
        ["model.hidden=[8,8]", "model.time_steps=3"],
        "time_steps=3 is too few for 3 spiking layer(s)",
    ),
    Case(
        "zero evaluation batch",
        "train",
        ["data.eval_batch_size=0"],
        "data.eval_batch_size must be a positive integer, got 0",
    ),
    Case(
        "evaluation batch as text",
        "train",
        ["data.eval_batch_size=big"],
        "data.eval_batch_size must be a positive integer, got 'big'",
    ),
    Case(
        "negative learning rate",
        "train",
        ["model.optimizer.lr=-1"],
        "model.optimizer.lr=-1 must be a positive number",
    ),
    Case(
        "zero learning rate",
        "train",
        ["model.optimizer.lr=0"],
        "model.optimizer.lr=0 must be a positive number",
    ),
    Case(
        "learning rate as text",
        "train",
        ["model.optimizer.lr=fast"],
        "model.optimizer.lr='fast' must be a positive number",
    ),
    Case(
        "negative weight decay",
        "train",
        ["model.optimizer.weight_decay=-0.5"],
        "model.optimizer.weight_decay=-0.5 must be a number >= 0 or auto",
    ),
    Case(
        "unknown run lock mode",
        "train",
        ["run_lock=sometimes"],
        "run_lock='sometimes' must be one of ('refuse', 'wait')",
    ),
    Case(
        "classifier scored on a continuous target",
        "eval",
        ["ckpt_path={d}/model.ckpt", "+data.path={d}/continuous.csv", "split=all"],
        "target column 'label' holds numbers that are not whole (e.g. 0.1 in row 0), which are not class labels",
    ),
    Case(
        "test split of a file reordered since training",
        "eval",
        ["ckpt_path={d}/moved.ckpt"],
        "the test split rebuilt from this file is not the rows it was when the checkpoint was trained",
    ),
    Case(
        "a reordered file scored whole (split=all)",
        "eval",
        ["ckpt_path={d}/moved.ckpt", "split=all"],
        "scored 240 row(s) of split 'all'",
        status=0,
    ),
    Case(
        "predict a value beyond float32",
        "predict",
        ["ckpt_path={d}/model.ckpt", "input_path={d}/huge_row.csv", "output_path={d}/out.csv"],
        "column 'a' has a value too large for the model's float32 inputs once scaled",
        must_not_exist=["out.csv"],
    ),
    # ---- misleading messages
    Case(
        "features whose variance overflows",
        "train",
        TRAIN_DATA,
        "column(s) ['x1'] hold values too large to scale (e.g. 2.33e+300: their variance overflows)",
        csv(good_frame().assign(x1=lambda f: f["x1"] * 1e300)),
    ),
    Case(
        "duplicate header behind a byte-order mark",
        "train",
        TRAIN_DATA,
        "duplicate column names ['x1']",
        piped_bom_duplicate,
    ),
    Case(
        "categorical target with an unused category",
        "train",
        ["data=parquet", "data.path={d}/data.parquet", "data.target=y", *FAST],
        "tested best.ckpt",
        categorical_parquet,
        status=0,
    ),
    Case(
        "fractional class labels",
        "train",
        [*TRAIN_DATA, "data.task=classification"],
        "task=classification needs class labels, but column 'y' holds non-integer numbers",
        csv(good_frame().assign(y=np.linspace(0, 1, 60))),
    ),
]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    """A trained checkpoint and the prediction inputs the predict/eval cases use."""
    d = tmp_path_factory.mktemp("model")
    cfg = compose_train(
        d / "run",
        ["data=csv", f"data.path={FIXTURE}", "data.target=label", "trainer.max_epochs=1", "logger=none"],
    )
    train_pipeline(cfg)
    ckpt = (d / "run" / "checkpoints" / "best.ckpt").read_bytes()
    (d / "model.ckpt").write_bytes(ckpt)
    (d / "cut.ckpt").write_bytes(ckpt[: len(ckpt) // 3])
    torch.save({"weights": torch.zeros(2)}, d / "foreign.ckpt")
    rows = pd.read_csv(FIXTURE).drop(columns="label")
    rows.to_csv(d / "rows.csv", index=False)
    rows.drop(columns=["b", "color"]).to_csv(d / "missing_cols.csv", index=False)
    rows.assign(color="purple").to_csv(d / "unseen.csv", index=False)
    rows.assign(note="x").to_csv(d / "extra.csv", index=False)
    (d / "existing.csv").write_text("precious\n")
    (d / "exported").mkdir()
    (d / "exported" / "model.torchscript.pt").write_text("precious\n")
    pd.read_csv(FIXTURE).to_csv(d / "labelled.csv", index=False)
    pd.read_csv(FIXTURE).assign(label=lambda f: np.linspace(0.1, 3.3, len(f))).to_csv(
        d / "continuous.csv", index=False
    )
    rows.head(3).assign(a=[1.0, 1e39, 2.0]).to_csv(d / "huge_row.csv", index=False)
    (d / "inside").mkdir()
    (d / "inside" / "model.torchscript.pt").write_bytes(ckpt)  # a checkpoint where an export would go
    (d / "link.ckpt").symlink_to(d / "model.ckpt")
    write_crafted_checkpoints(d, torch.load(d / "model.ckpt", weights_only=True))
    # a checkpoint of a file whose rows are reordered after training
    pd.read_csv(FIXTURE).to_csv(d / "moved.csv", index=False)
    cfg = compose_train(
        d / "moved_run",
        [
            "data=csv",
            f"data.path={d / 'moved.csv'}",
            "data.target=label",
            "trainer.max_epochs=1",
            "logger=none",
        ],
    )
    train_pipeline(cfg)
    (d / "moved.ckpt").write_bytes((d / "moved_run" / "checkpoints" / "best.ckpt").read_bytes())
    pd.read_csv(FIXTURE).sample(frac=1, random_state=1).to_csv(d / "moved.csv", index=False)
    return d


def write_crafted_checkpoints(d: Path, saved: dict) -> None:
    """Checkpoints that are damaged, or that name a callable (builtins.open would create MARKER)."""
    import copy

    opener = {"_target_": "builtins.open", "file": str(d / MARKER), "mode": "w"}

    def craft(name: str, change) -> None:
        ckpt = copy.deepcopy(saved)
        change(ckpt)
        torch.save(ckpt, d / name)

    craft("open_optimizer.ckpt", lambda c: c["hyper_parameters"].update(optimizer=dict(opener)))
    craft(
        "open_scheduler.ckpt", lambda c: c["hyper_parameters"].update(scheduler={**opener, "_partial_": True})
    )
    craft("open_nested.ckpt", lambda c: c["hyper_parameters"]["optimizer"].update(lr=dict(opener)))
    craft("open_data.ckpt", lambda c: c["datamodule_hyper_parameters"].update(drop=[dict(opener)]))
    craft("open_top.ckpt", lambda c: c.update(extra=dict(opener)))
    craft(
        "open_dotted.ckpt",
        lambda c: c["hyper_parameters"]["optimizer"].update(_target_="torch.optim.adamw.torch.load"),
    )
    torch.save([1, 2, 3], d / "list.ckpt")
    craft("datamodule_list.ckpt", lambda c: c.update({"TabularDataModule": [1, 2]}))
    craft("unknown_data_setting.ckpt", lambda c: c["datamodule_hyper_parameters"].update(colour="red"))
    craft("unknown_model_setting.ckpt", lambda c: c["hyper_parameters"].update(tau=3))
    craft("hparams_text.ckpt", lambda c: c.update(hyper_parameters="decay=0.9"))
    craft("weights_text.ckpt", lambda c: c["state_dict"].update({"model.encoder.weight": "zeros"}))


def run(command: str, args: list[str], capsys) -> tuple[int, str]:
    sys_argv = sys.argv
    sys.argv = [f"nmsnn-{command}", *args]
    try:
        ENTRY_POINTS[command]()
        status = 0
    except SystemExit as exit_:
        status = int(exit_.code or 0)
    finally:
        sys.argv = sys_argv
        # Hydra points logging handlers at this test's captured streams; drop them afterwards
        for logger in (logging.getLogger(), *map(logging.getLogger, logging.root.manager.loggerDict)):
            for handler in list(getattr(logger, "handlers", [])):
                logger.removeHandler(handler)
    captured = capsys.readouterr()
    return status, captured.out + captured.err


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_catalogue(case: Case, tmp_path, monkeypatch, capsys, request):
    monkeypatch.setenv("NMSNN_LOG_DIR", str(tmp_path / "logs"))
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    monkeypatch.delenv("NMSNN_DEBUG", raising=False)
    resumes = any(a.startswith("ckpt_path=") for a in case.args)
    d = request.getfixturevalue("model_dir") if case.command != "train" or resumes else tmp_path
    if case.make:
        case.make(tmp_path)
    before = {p: p.read_bytes() for p in d.glob("*.csv")}
    args = [a.format(d=d if "ckpt" in a or case.command != "train" else tmp_path) for a in case.args]
    status, output = run(case.command, args, capsys)

    assert status == case.status, output
    assert case.message in output, output
    assert "Traceback" not in output
    for name in case.must_not_exist:
        assert not (d / name).exists()
    assert not list(d.rglob("*.tmp")) and not list(tmp_path.rglob("*.tmp")), "no half-written files"
    if case.command == "export":
        assert (d / "exported" / "model.torchscript.pt").read_text() == "precious\n"
    for path, content in before.items():
        assert path.read_bytes() == content, f"{path.name} was modified"
    if status == 0 and case.command == "predict":
        assert len(pd.read_csv(d / "out.csv")) == 240
        (d / "out.csv").unlink()


def test_catalogue_size():
    assert len(CASES) >= 106


def test_debug_switch_lets_the_traceback_through(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("NMSNN_LOG_DIR", str(tmp_path))
    monkeypatch.setenv("NMSNN_DEBUG", "1")
    monkeypatch.setenv("HYDRA_FULL_ERROR", "")  # restored (removed) after the test: the switch sets it
    # the exception escapes the entry point, and Python prints its traceback
    with pytest.raises(Exception, match="decay must be in"):
        run("train", ["model.neuron.decay=1.5"], capsys)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"neuron": {"decay": 2.0}}, "decay must be in (0, 1]"),
        ({"neuron": {"threshold": -1}}, "threshold must be > 0"),
        ({"neuron": {"penalty": float("inf")}}, "penalty must be a finite number"),
        ({"time_steps": 0}, "time_steps must be a positive integer"),
        ({"hidden": [0]}, "model.hidden must list positive layer sizes"),
        ({"readout": "max"}, "readout='max' is not a readout"),
        ({"init": "xavier"}, "init='xavier' is not an initialization"),
    ],
)
def test_python_api_rejects_invalid_model_settings(kwargs, message):
    with pytest.raises(ConfigError) as err:
        SpikingModule("classification", 4, 2, **kwargs)
    assert message in str(err.value)


def test_predict_id_column_comes_first_in_the_predictions(model_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("NMSNN_LOG_DIR", str(tmp_path / "logs"))
    rows = pd.read_csv(model_dir / "rows.csv").head(12)
    rows.insert(1, "order_id", [f"A{i:03d}" for i in range(12)])
    rows.to_csv(tmp_path / "rows.csv", index=False)
    args = [f"ckpt_path={model_dir / 'model.ckpt'}", f"input_path={tmp_path / 'rows.csv'}"]
    reset_auto()  # the backend is chosen (and would be logged) again in this process
    status, output = run(
        "predict", [*args, f"output_path={tmp_path / 'out.csv'}", "id_column=order_id"], capsys
    )
    assert status == 0, output
    assert "ignoring column" not in output  # carried, not ignored
    assert "backend=auto" not in output  # the backend choice says nothing about predictions
    status, output = run("predict", [*args, f"output_path={tmp_path / 'plain.csv'}"], capsys)
    assert status == 0, output
    assert "ignoring column(s) not used in training: ['order_id']" in output
    out, plain = pd.read_csv(tmp_path / "out.csv"), pd.read_csv(tmp_path / "plain.csv")
    assert list(out.columns) == ["order_id", *plain.columns]
    assert out["order_id"].tolist() == rows["order_id"].tolist()
    pd.testing.assert_frame_equal(out.drop(columns="order_id"), plain)


def test_eval_of_rows_of_one_class_reports_no_auroc(model_dir, tmp_path, monkeypatch, capsys):
    """AUROC is undefined without both classes: not reported (torchmetrics would say 0, with a
    warning per class), the other metrics are; all rows together are not called a training split."""
    monkeypatch.setenv("NMSNN_LOG_DIR", str(tmp_path / "logs"))
    rows = pd.read_csv(FIXTURE)
    rows[rows["label"] == rows["label"].iloc[0]].head(30).to_csv(tmp_path / "one.csv", index=False)
    args = [f"ckpt_path={model_dir / 'model.ckpt'}", f"+data.path={tmp_path / 'one.csv'}", "split=all"]
    status, output = run("eval", args, capsys)
    assert status == 0, output
    metrics = json.loads(output.strip().splitlines()[-1])
    assert "all/acc" in metrics and "all/auroc" not in metrics
    assert "one class only; AUROC is undefined" in output and "No positive samples" not in output
    assert "30 rows, not split" in output and "-> train 30" not in output


def test_eval_scores_the_rows_with_a_target_and_counts_the_others(model_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("NMSNN_LOG_DIR", str(tmp_path / "logs"))
    rows = pd.read_csv(FIXTURE).head(50)
    rows.loc[[3, 10, 11], "label"] = None
    rows.to_csv(tmp_path / "labelled.csv", index=False)
    args = [f"ckpt_path={model_dir / 'model.ckpt'}", f"+data.path={tmp_path / 'labelled.csv'}", "split=all"]
    status, output = run("eval", [*args, f"predictions_path={tmp_path / 'pred.csv'}"], capsys)
    assert status == 0, output
    metrics = json.loads(output.strip().splitlines()[-1])
    assert metrics["skipped_rows"] == 3 and "all/acc" in metrics
    assert (
        "scored 47 row(s) of split 'all'; skipped 3 row(s) without a value in target column 'label'" in output
    )
    scored = pd.read_csv(tmp_path / "pred.csv")
    assert len(scored) == 47 and not {3, 10, 11} & set(scored["row"]) and scored["label"].notna().all()
