"""Everyday use: thread defaults, lazy start-up, a quiet console, failed-run markers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from nmsnn.errors import ConfigError
from nmsnn.threads import SMALL_WORK, choose_threads, usable_cores
from tests.conftest import run_cli


def test_auto_threads_follow_the_work_and_the_users_settings(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert choose_threads("auto", SMALL_WORK - 1)[0] == 1
    assert choose_threads(None, SMALL_WORK)[0] == usable_cores()
    assert choose_threads("auto", SMALL_WORK * 10, parallel_jobs=2)[0] == max(1, usable_cores() // 2)
    assert choose_threads(3, 1) == (3, "threads=3")
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert choose_threads("auto", 1) == (None, "OMP_NUM_THREADS=2")  # the user's setting stands
    assert choose_threads(4, 1)[0] == 4  # an explicit threads=N wins over the environment
    for bad in (0, -1, "many", True, 1.5):
        with pytest.raises(ConfigError, match="threads="):
            choose_threads(bad, 1)


def python(code: str, env: dict[str, str]) -> str:
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_entry_points_set_a_passive_wait_and_import_torch_only_when_they_run():
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    code = (
        "import os, sys\n"
        "import nmsnn.cli.train, nmsnn.cli.predict, nmsnn.cli.eval, nmsnn.cli.export, nmsnn.cli.compare\n"
        "from nmsnn.cli.common import entry_point\n"
        "print(sorted(m for m in ('torch', 'lightning', 'numba', 'sklearn') if m in sys.modules))\n"
        "entry_point(lambda: print(os.environ['OMP_WAIT_POLICY']))\n"
    )
    assert python(code, env).splitlines() == ["[]", "PASSIVE"]
    assert python(code, {**env, "OMP_WAIT_POLICY": "ACTIVE"}).splitlines()[-1] == "ACTIVE"


def test_a_default_runs_console_is_quiet_and_says_what_matters(tmp_path):
    """A default run's console, read end to end: no third-party tips or deprecations, no line twice,
    the threads, the model, progress lines, and the final table with validation and test apart."""
    result = run_cli("nmsnn-train", "trainer.max_epochs=3", "run_name=r", cwd=tmp_path)
    console = result.stdout + result.stderr
    for noise in (
        "litlogger",
        "💡",
        "LeafSpec",
        "GPU available",
        "TPU available",
        "Total FLOPs",
        "Restoring states",
    ):
        assert noise not in console, noise
    messages = [line.split("] - ", 1)[-1] for line in console.splitlines() if line.strip("-─ ")]
    twice = [m for m, n in Counter(messages).items() if n > 1 and m.strip()]
    assert not twice, twice
    assert "CPU threads: 1 (auto" in console and "nmsnn.pipeline][INFO] - model: 30 -> 128 -> 2" in console
    assert "epoch 1/3 · train/loss" in console and "epoch 3/3 · train/loss" in console
    header = next(line for line in console.splitlines() if line.split() == ["val", "test"])
    assert header and "tested best.ckpt from epoch" in console and "tensorboard --logdir" in console
    run = json.loads((tmp_path / "logs" / "train" / "runs" / "r" / "metrics.json").read_text())["run"]
    assert run["epochs"] == 3 and 1 <= run["tested_epoch"] <= 3 and run["fit_seconds"] > 0
    assert not (tmp_path / "logs" / "train" / "runs" / "r" / "FAILED").exists()


def test_missing_values_are_reported_once_with_one_count_per_column(tmp_path):
    """A file with gaps: one warning for the whole run (every row's count per column and the value
    it got), not one per split, step and column with counts that disagree."""
    fixture = Path(__file__).parent / "fixtures" / "mixed_classification.csv"
    args = ["data=csv", f"data.path={fixture}", "data.target=label", "trainer.max_epochs=1", "logger=none"]
    result = run_cli("nmsnn-train", *args, cwd=tmp_path)
    console = result.stdout + result.stderr
    lines = [line for line in console.splitlines() if "missing value" in line]
    assert len(lines) == 1, lines
    assert (
        "20 missing value(s) imputed" in lines[0]
        and "a: 12 (median" in lines[0]
        and "color: 8 ('green')" in lines[0]
    )


def test_a_category_only_in_test_rows_is_warned_about_once(tmp_path):
    """The set-up names it for the file; the report of the test rows does not repeat it."""
    import numpy as np
    import pandas as pd

    from nmsnn.data.datamodule import TabularDataModule

    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"x": rng.normal(size=120), "kind": ["a", "b"] * 60, "y": ["p", "q", "r"] * 40})
    dm = TabularDataModule(frame=frame, target="y")
    dm.setup()
    frame.loc[dm.split_index["test"][:2], "kind"] = "z"  # the same split from the file below
    frame.to_csv(tmp_path / "rows.csv", index=False)
    args = [
        "data=csv",
        f"data.path={tmp_path / 'rows.csv'}",
        "data.target=y",
        "trainer.max_epochs=1",
        "logger=none",
    ]
    result = run_cli("nmsnn-train", *args, cwd=tmp_path)
    console = result.stdout + result.stderr
    lines = [line for line in console.splitlines() if "not seen in training" in line]
    assert len(lines) == 1 and "rows.csv: column 'kind' has categories not seen in training" in lines[0], (
        lines
    )


def test_a_failed_run_leaves_a_failed_marker_with_its_error(tmp_path):
    missing = tmp_path / "nowhere.csv"
    args = ["data=csv", f"data.path={missing}", "data.target=y", "run_name=bad"]
    result = run_cli("nmsnn-train", *args, cwd=tmp_path, check=False)
    assert result.returncode == 2
    marker = tmp_path / "logs" / "train" / "runs" / "bad" / "FAILED"
    assert "nowhere.csv" in marker.read_text() and "nowhere.csv" in result.stderr


def test_refusals_come_before_loading_anything(tmp_path):
    """An existing output file is refused even with a checkpoint that does not exist: the check
    runs first, before the seconds that loading torch and the checkpoint take."""
    out = tmp_path / "p.csv"
    out.write_text("keep me\n")
    args = [
        f"ckpt_path={tmp_path / 'none.ckpt'}",
        f"input_path={tmp_path / 'rows.csv'}",
        f"output_path={out}",
    ]
    result = run_cli("nmsnn-predict", *args, cwd=tmp_path, check=False)
    assert result.returncode == 2 and "file exists" in result.stderr and out.read_text() == "keep me\n"
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "model.onnx").write_text("old")
    result = run_cli(
        "nmsnn-export",
        f"ckpt_path={tmp_path / 'none.ckpt'}",
        f"output_dir={tmp_path / 'x'}",
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode == 2 and "file(s) exist" in result.stderr


def test_a_sweep_summary_ranks_its_jobs_and_nmsnn_runs_tabulates_them(tmp_path):
    """A real population sweep with one invalid job: the summary is best first and marked, shows
    only the overrides that vary, is printed at the end, and has its figure; nmsnn-runs reads
    the same jobs back, and a single run beside them."""
    import pandas as pd

    sweep = tmp_path / "sweep"
    args = ["--multirun", "hydra/launcher=population", f"hydra.sweep.dir={sweep}", "logger=none"]
    args += ["model.neuron.decay=0.8,0.9,1.5", "trainer.max_epochs=2", "callbacks.training_budget=null"]
    result = run_cli("nmsnn-train", *args, cwd=tmp_path)
    summary = pd.read_csv(sweep / "summary.csv")
    ok = summary[summary["status"] == "ok"]
    assert list(summary["rank"]) == [1, 2, 3] and list(summary["best"]) == [True, False, False]
    assert summary.loc[0, "val/loss"] == ok["val/loss"].min() and summary.loc[2, "status"] == "failed"
    markdown = (sweep / "summary.md").read_text()
    assert "Best (lowest `val/loss`): job" in markdown and "| 1 (best) |" in markdown
    # the one-standard-error pick: the first job unless the best beats it by its val/loss_se
    first, best = summary[summary["job"] == 0].iloc[0], summary.iloc[0]
    keeps_first = first["val/loss"] - best["val/loss"] <= best["val/loss_se"]
    assert (
        summary["pick"].sum() == 1 and bool(summary.loc[summary["job"] == 0, "pick"].iloc[0]) == keeps_first
    )
    assert (
        "Pick (one-standard-error rule):" in markdown and "Pick (one-standard-error rule):" in result.stdout
    )
    assert "model.neuron.decay" in markdown and "trainer.max_epochs" not in markdown.split("|", 1)[1]
    assert (sweep / "sweep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    console = result.stdout + result.stderr
    assert "| 1 (best) |" in result.stdout and "nmsnn-train: " not in console  # not a table per job
    assert "job 0: tested best.ckpt" in console and "population of 2: epoch 2/2" in console

    assert not (sweep / "0" / "plots").exists()  # plots=auto: the sweep's figure, not one per job
    run_cli("nmsnn-train", "logger=none", "trainer.max_epochs=1", "run_name=alone", cwd=tmp_path)
    assert list((tmp_path / "logs" / "train" / "runs" / "alone" / "plots").glob("*.png"))
    table = run_cli("nmsnn-runs", str(tmp_path), "--csv", str(tmp_path / "runs.csv"), cwd=tmp_path).stdout
    runs = pd.read_csv(tmp_path / "runs.csv")
    assert len(runs) == 4 and set(runs["status"]) == {"ok", "failed"}
    assert runs["val/loss"].iloc[:3].is_monotonic_increasing and runs["status"].iloc[-1] == "failed"
    assert "decay must be in" in runs["error"].iloc[-1] and "logs/train/runs/alone" in table
    assert pd.read_csv(tmp_path / "runs.csv", dtype=str)["epochs"].dropna().str.isdigit().all()  # not "1.0"
    alone = runs[runs["run"].str.endswith("alone")].iloc[0]
    assert alone["model.neuron.decay"] == "default"  # the single run did not override the swept key
    missing = run_cli("nmsnn-runs", str(tmp_path / "nothing"), cwd=tmp_path, check=False)
    assert missing.returncode == 2 and "not a directory" in missing.stderr
    # refusals write nothing: an existing CSV (without --overwrite), a metric the runs lack
    again = run_cli(
        "nmsnn-runs", str(tmp_path), "--csv", str(tmp_path / "runs.csv"), cwd=tmp_path, check=False
    )
    assert again.returncode == 2 and "runs.csv exists; pass --overwrite" in again.stderr
    args = ["--sort", "test/bogus", "--csv", str(tmp_path / "other.csv")]
    bogus = run_cli("nmsnn-runs", str(tmp_path), *args, cwd=tmp_path, check=False)
    assert bogus.returncode == 2 and "['test/bogus'] not in the table" in bogus.stderr
    assert not (tmp_path / "other.csv").exists()
    one = run_cli("nmsnn-runs", str(tmp_path / "logs" / "train" / "runs" / "alone"), cwd=tmp_path).stdout
    assert "| alone | ok |" in one


def test_the_first_run_says_that_numba_compiles_and_the_next_does_not(tmp_path):
    env = {"NUMBA_CACHE_DIR": str(tmp_path / "numba-cache")}
    args = ["logger=none", "trainer.max_epochs=1", "model.backend=numba"]
    first = run_cli("nmsnn-train", *args, "run_name=first", cwd=tmp_path, env=env)
    assert "numba: compiling the CPU kernels for this neuron variant" in first.stdout + first.stderr
    second = run_cli("nmsnn-train", *args, "run_name=second", cwd=tmp_path, env=env)
    assert "numba: compiling" not in second.stdout + second.stderr
    # another variant (binary spikes) compiles its own kernels, and says so
    third = run_cli(
        "nmsnn-train", *args, "model.neuron.spike_fn=heaviside", "run_name=third", cwd=tmp_path, env=env
    )
    assert "numba: compiling the CPU kernels" in third.stdout + third.stderr
