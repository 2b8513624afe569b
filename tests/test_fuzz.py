"""Property-based fuzzing of the reader and preprocessing: train, or raise nmsnn's own error."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nmsnn.data.datamodule import TabularDataModule
from nmsnn.errors import NmsnnError
from nmsnn.lit.module import SpikingModule

names = st.text(
    st.characters(min_codepoint=32, max_codepoint=0x2FFF, blacklist_characters=',"\r\n'),
    min_size=1,
    max_size=8,
)
floats = st.floats(allow_nan=True, allow_infinity=True, width=32)
cells = st.one_of(
    floats, st.integers(-5, 5), st.sampled_from(["", "a", "b", "ü", "1.5", "x y", " "]), st.none()
)


@st.composite
def frames(draw):
    rows = draw(st.integers(0, 60))
    columns = draw(st.lists(names, min_size=1, max_size=5, unique=True))
    kinds = draw(
        st.lists(
            st.sampled_from(["float", "int", "text", "mixed"]), min_size=len(columns), max_size=len(columns)
        )
    )
    data = {}
    for name, kind in zip(columns, kinds):
        if kind == "float":
            data[name] = draw(st.lists(floats, min_size=rows, max_size=rows))
        elif kind == "int":
            data[name] = draw(st.lists(st.integers(-3, 3), min_size=rows, max_size=rows))
        elif kind == "text":
            data[name] = draw(
                st.lists(st.sampled_from(["red", "blue", "", "grün"]), min_size=rows, max_size=rows)
            )
        else:
            data[name] = draw(st.lists(cells, min_size=rows, max_size=rows))
    frame = pd.DataFrame(data, columns=columns)
    target = draw(st.sampled_from(columns)) if draw(st.integers(0, 9)) else "missing_target"
    return frame, target


def train_one_step(dm: TabularDataModule) -> None:
    dm.setup()
    module = SpikingModule(**dm.model_kwargs(), hidden=[8], time_steps=4)
    batch = next(iter(dm.train_dataloader()))
    batch = module.on_after_batch_transfer(batch, 0)
    loss = module.loss(module(batch["x"]).prediction, batch["y"])
    loss.backward()
    assert torch.isfinite(loss)


FUZZ = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)


@FUZZ
@given(frames())
def test_random_frames_train_or_raise_nmsnn_errors(case):
    frame, target = case
    try:
        train_one_step(TabularDataModule(frame=frame, target=target))
    except NmsnnError:
        pass


@FUZZ
@given(frames())
def test_random_csv_files_train_or_raise_nmsnn_errors(tmp_path_factory, case):
    frame, target = case
    path = tmp_path_factory.mktemp("fuzz") / "data.csv"
    frame.to_csv(path, index=False)
    try:
        train_one_step(TabularDataModule(path=str(path), target=target))
    except NmsnnError:
        pass


def test_a_clean_random_frame_does_train():
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {"ä x": rng.normal(size=50), "colour": rng.choice(["r", "g"], 50), "y": rng.integers(0, 2, 50)}
    )
    frame.loc[3, "ä x"] = np.nan
    train_one_step(TabularDataModule(frame=frame, target="y"))
