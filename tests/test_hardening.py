"""Hardening beyond the catalogue: checkpoints that must not act on any load path, one process per
run directory, SIGTERM, full disks, and the estimators' inputs. Real entry points and files; the
full disk is an ``OSError(ENOSPC)`` raised by the writer after it wrote part of the file."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from nmsnn.checkpoint import load_checkpoint, read_checkpoint
from nmsnn.data.sources import read_table
from nmsnn.errors import CheckpointError, DataError, NmsnnError
from nmsnn.lit.module import SpikingModule
from nmsnn.pipeline import train
from tests.conftest import compose_train, run_cli
from tests.test_catalogue import FIXTURE, MARKER, write_crafted_checkpoints

ROOT = Path(__file__).resolve().parents[1]
CALLABLES = {
    "open_optimizer.ckpt": "hyper_parameters.optimizer._target_",
    "open_scheduler.ckpt": "hyper_parameters.scheduler._target_",
    "open_nested.ckpt": "hyper_parameters.optimizer.lr._target_",
    "open_data.ckpt": "datamodule_hyper_parameters.drop[0]._target_",
    "open_top.ckpt": "extra._target_",
    "open_dotted.ckpt": "hyper_parameters.optimizer._target_",
}


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("trained")
    cfg = compose_train(
        d / "run", ["data=csv", f"data.path={FIXTURE}", "data.target=label", "trainer.max_epochs=1"]
    )
    train(cfg)
    write_crafted_checkpoints(d, torch.load(d / "run" / "checkpoints" / "best.ckpt", weights_only=True))
    return d


@pytest.mark.parametrize("name", sorted(CALLABLES))
def test_a_checkpoint_naming_a_callable_is_refused_on_every_python_load_path(trained, name):
    """read_checkpoint, load_checkpoint (predict, eval, export, fine-tuning a loaded model) and
    Lightning's own load_from_checkpoint all refuse it; the marker file shows nothing ran."""
    path = trained / name
    for load in (read_checkpoint, load_checkpoint):
        with pytest.raises(CheckpointError) as err:
            load(path)
        assert CALLABLES[name] in str(err.value) and "names a callable" in str(err.value)
    # Lightning builds the module from the stored settings first (which may refuse a setting that
    # is a config), then hands the checkpoint to on_load_checkpoint, which refuses the callable
    with pytest.raises(NmsnnError):
        SpikingModule.load_from_checkpoint(path)
    assert not (trained / MARKER).exists()


def test_lightning_load_from_checkpoint_gives_the_same_model_as_load_checkpoint(trained):
    """A researcher's first way to load a model: Lightning's classmethod, outside any Trainer."""
    path = trained / "run" / "checkpoints" / "best.ckpt"
    ours = load_checkpoint(path)
    lightning = SpikingModule.load_from_checkpoint(path, map_location="cpu").eval()
    x = torch.randn(5, ours.module.hparams.num_inputs)
    torch.testing.assert_close(lightning.predict_rows(x), ours.module.predict_rows(x), rtol=0, atol=0)


def test_an_allowed_target_and_a_users_own_target(trained, monkeypatch):
    """nmsnn's own targets load; a user's own optimizer loads once NMSNN_ALLOW_TARGETS names it."""
    saved = torch.load(trained / "run" / "checkpoints" / "best.ckpt", weights_only=True)
    assert saved["hyper_parameters"]["optimizer"]["_target_"] == "torch.optim.AdamW"
    load_checkpoint(trained / "run" / "checkpoints" / "best.ckpt")
    saved["hyper_parameters"]["optimizer"]["_target_"] = "tests.helpers.NoSuchOptimizer"
    torch.save(saved, trained / "own.ckpt")
    with pytest.raises(CheckpointError, match=r"NMSNN_ALLOW_TARGETS=tests.helpers.NoSuchOptimizer"):
        load_checkpoint(trained / "own.ckpt")
    monkeypatch.setenv("NMSNN_ALLOW_TARGETS", "tests.helpers.NoSuchOptimizer")
    assert (
        load_checkpoint(trained / "own.ckpt").module.hparams.optimizer["_target_"].endswith("NoSuchOptimizer")
    )


def test_fine_tuning_a_loaded_model_instantiates_only_its_optimizer(trained):
    """The supported way to fine-tune: load_checkpoint, then Lightning's fit (the stored AdamW)."""
    import lightning as L

    loaded = load_checkpoint(trained / "run" / "checkpoints" / "best.ckpt")
    datamodule = loaded.datamodule()
    trainer = L.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False)
    trainer.fit(loaded.module, datamodule=datamodule)
    assert isinstance(trainer.optimizers[0], torch.optim.AdamW)


def test_two_runs_on_one_run_directory_give_one_run_and_one_refusal(tmp_path):
    common = ["data=iris", "logger=none", "run_name=shared", "callbacks.training_budget=null"]
    procs = [
        subprocess.Popen(
            [
                str(Path(sys.executable).parent / "nmsnn-train"),
                *common,
                f"seed={seed}",
                "trainer.max_epochs=10",
            ],
            cwd=tmp_path,
            env={**os.environ, "NMSNN_LOG_DIR": str(tmp_path / "logs")},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for seed in (1, 2)
    ]
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    codes = [p.returncode for p in procs]
    assert sorted(codes) == [0, 2], outputs
    winner = codes.index(0)
    refusal = outputs[1 - winner]
    assert "this run directory is in use by process" in refusal and "Traceback" not in refusal
    assert len([line for line in refusal.splitlines() if line.startswith("error:")]) == 1
    run_dir = tmp_path / "logs" / "train" / "runs" / "shared"
    # every file the finished run left is its own: its seed in the recorded config and metrics
    assert f"seed={winner + 1}" in (run_dir / ".hydra" / "overrides.yaml").read_text()
    assert yaml.safe_load((run_dir / ".hydra" / "config.yaml").read_text())["seed"] == winner + 1
    assert json.loads((run_dir / "metrics.json").read_text())["metrics"]["epochs"] >= 1
    assert "in use by process" not in (run_dir / "train.log").read_text()
    assert not (run_dir / ".nmsnn.lock").exists()  # released at the end
    # the lock of a process that no longer runs is taken over
    (run_dir / ".nmsnn.lock").write_text(json.dumps({"pid": 2**22 + 17, "host": os.uname().nodename}))
    again = run_cli("nmsnn-train", *common, "seed=1", "trainer.max_epochs=10", "resume=never", cwd=tmp_path)
    assert "which no longer runs" in again.stdout + again.stderr


def test_sigterm_leaves_a_resumable_run_that_ends_where_an_uninterrupted_one_does(tmp_path):
    """A stalled metric (a learning rate too small to move the loss) and SIGTERM in epoch 4:
    last.ckpt holds epoch 3 all the same, the exit status is 143 with a log line, and the same
    command resumes to the uninterrupted run's metrics (deterministic mode)."""
    env = {"PYTHONPATH": str(ROOT)}
    common = [
        "data=iris",
        "trainer.max_epochs=5",
        "trainer.deterministic=true",
        "callbacks.training_budget=null",
        "callbacks.early_stopping=null",
        "model.optimizer.lr=1e-12",
        "logger=none",
    ]
    term = [
        "+callbacks.kill._target_=tests.helpers.KillOnce",
        "+callbacks.kill.epoch=3",
        f"+callbacks.kill.marker={tmp_path / 'terminated'}",
        "+callbacks.kill.signal=SIGTERM",
    ]
    first = run_cli("nmsnn-train", "run_name=stopped", *common, *term, cwd=tmp_path, env=env, check=False)
    assert first.returncode == 143, first.stdout + first.stderr
    run_dir = tmp_path / "logs" / "train" / "runs" / "stopped"
    assert (
        "terminated by SIGTERM in epoch 4; the same command resumes from"
        in (run_dir / "train.log").read_text()
    )
    said = [line for line in (first.stdout + first.stderr).splitlines() if "SIGTERM" in line]
    assert len(said) == 1 and "terminated by SIGTERM in epoch 4; the same command resumes from" in said[0], (
        said
    )
    assert torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["epoch"] == 2
    assert (run_dir / "FAILED").exists() and not (run_dir / "metrics.json").exists()

    resumed = run_cli("nmsnn-train", "run_name=stopped", *common, *term, cwd=tmp_path, env=env)
    assert "resuming from" in resumed.stdout + resumed.stderr and not (run_dir / "FAILED").exists()
    run_cli("nmsnn-train", "run_name=whole", *common, cwd=tmp_path, env=env)
    got = json.loads((run_dir / "metrics.json").read_text())["metrics"]
    want = json.loads((tmp_path / "logs" / "train" / "runs" / "whole" / "metrics.json").read_text())[
        "metrics"
    ]
    assert got == want


def _disk_full_after(part: bytes):
    """A writer that writes ``part`` and then finds the disk full."""

    def write(_self, path, *args, **kwargs):
        Path(path).write_bytes(part)
        raise OSError(errno.ENOSPC, "No space left on device")

    return write


def test_a_full_disk_leaves_nothing_partial_and_the_old_files_intact(trained, tmp_path, monkeypatch):
    from nmsnn.export import export
    from nmsnn.files import write_csv
    from nmsnn.lit.checkpoint_io import AtomicCheckpointIO

    # predictions
    (tmp_path / "out.csv").write_text("old\n")
    monkeypatch.setattr(pd.DataFrame, "to_csv", _disk_full_after(b"prediction\n1\n"))
    with pytest.raises(NmsnnError, match=r"out.csv: the disk is full \(.* free in .*\); nothing was written"):
        write_csv(pd.DataFrame({"a": [1]}), tmp_path / "out.csv", overwrite=True)
    monkeypatch.undo()
    assert (tmp_path / "out.csv").read_text() == "old\n"
    # a checkpoint: the last good one stays whole and loads
    last = tmp_path / "last.ckpt"
    last.write_bytes((trained / "run" / "checkpoints" / "last.ckpt").read_bytes())
    saved = torch.load(last, weights_only=True)
    monkeypatch.setattr(torch, "save", lambda obj, f, *a, **k: _disk_full_after(b"PK\x03\x04")(None, f))
    with pytest.raises(NmsnnError, match=r"last.ckpt: the disk is full"):
        AtomicCheckpointIO().save_checkpoint(saved, last)
    monkeypatch.undo()
    load_checkpoint(last)
    # an export
    loaded = load_checkpoint(trained / "run" / "checkpoints" / "best.ckpt")

    class TracedOnAFullDisk:
        save = _disk_full_after(b"PK")

    monkeypatch.setattr(torch.jit, "trace", lambda *a, **k: TracedOnAFullDisk())
    with pytest.raises(NmsnnError, match=r"model.torchscript.pt: the disk is full"):
        export(loaded.module, loaded.preprocessor, tmp_path / "export", ["torchscript"])
    monkeypatch.undo()
    leftovers = [
        p.name for p in tmp_path.rglob("*") if p.is_file() and p.name not in ("out.csv", "last.ckpt")
    ]
    assert not [n for n in leftovers if n.endswith(".tmp") or n == "model.torchscript.pt"], leftovers


def test_a_run_reads_a_pipe_once(tmp_path):
    """``data.path=<(zcat f.csv.gz)``: a file that can be read once is read whole, once."""
    pd.read_csv(FIXTURE).to_csv(tmp_path / "rows.csv", index=False)
    command = (
        f"{Path(sys.executable).parent / 'nmsnn-train'} logger=none trainer.max_epochs=1 data=csv "
        "data.path=<(cat rows.csv) data.target=label run_name=piped"
    )
    result = subprocess.run(
        ["bash", "-c", command],
        cwd=tmp_path,
        env={**os.environ, "NMSNN_LOG_DIR": str(tmp_path / "logs")},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    predictions = pd.read_csv(tmp_path / "logs" / "train" / "runs" / "piped" / "test_predictions.csv")
    assert len(predictions) == 48


def test_an_unreadable_file_is_named(tmp_path, monkeypatch):
    path = tmp_path / "locked.csv"
    path.write_text("a,b\n1,2\n")
    original = Path.open

    def refuse(self, *args, **kwargs):
        if self == path:
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Path, "open", refuse)
    with pytest.raises(DataError, match=r"locked.csv: permission denied: this user may not read the file"):
        read_table(path)


def test_the_estimators_refuse_multiindex_columns_and_name_a_bad_hidden():
    from sklearn.datasets import load_iris

    from nmsnn import SpikingClassifier

    X, y = load_iris(return_X_y=True, as_frame=True)
    nested = X.copy()
    nested.columns = pd.MultiIndex.from_tuples([("leaf", c) for c in X.columns])
    with pytest.raises(ValueError, match="X has MultiIndex columns"):
        SpikingClassifier(epochs=1).fit(nested, y)
    with pytest.raises(
        ValueError, match=r"hidden must be auto, a positive integer or a sequence of them.*got 8.0"
    ):
        SpikingClassifier(epochs=1).set_params(hidden=8.0).fit(X, y)
    # no hidden layer at all is a valid (single-layer) network
    model = SpikingClassifier(epochs=1, steps=1, hidden=[]).fit(X, y)
    assert model.predict(X).shape == (150,)
    assert np.isfinite(model.predict_proba(X)).all()


def test_a_lock_is_released_when_its_run_fails(tmp_path):
    result = run_cli("nmsnn-train", "run_name=bad", "model.time_steps=1", cwd=tmp_path, check=False)
    assert result.returncode == 2
    time.sleep(0.1)
    assert not (tmp_path / "logs" / "train" / "runs" / "bad" / ".nmsnn.lock").exists()
