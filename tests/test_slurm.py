"""Sweeps on a real Slurm scheduler through ``hydra/launcher=submitit_slurm``.

``.ci/slurm-up`` starts a one-node scheduler on this machine (Debian's slurm-wlm and munge, no
accounting); these tests are skipped, with the reason, where no scheduler answers. Each submits
real jobs: a sweep with a failing job, DDP over two Slurm tasks on CPU, and a job requeued with
``scontrol requeue`` in the middle of its training.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from tests.conftest import run_cli

ROOT = Path(__file__).resolve().parents[1]


def _scheduler_answers() -> str | None:
    """None when a Slurm node is up, else why the tests are skipped."""
    if shutil.which("sinfo") is None:
        return "no Slurm here (sinfo not found); .ci/slurm-up starts a local scheduler"
    try:
        states = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=20)
    except subprocess.TimeoutExpired:
        return "sinfo did not answer in 20 s"
    if states.returncode != 0 or not {"idle", "mixed", "allocated"} & set(states.stdout.split()):
        return f"no Slurm node is up (sinfo: {(states.stdout + states.stderr).strip()[:200]!r})"
    return None


pytestmark = [
    pytest.mark.slurm,
    # one scheduler with two CPUs: its jobs queue one after another, so its tests do too
    pytest.mark.xdist_group("slurm"),
    pytest.mark.skipif(_scheduler_answers() is not None, reason=str(_scheduler_answers())),
]

# what a one-node CI scheduler can give each job; a real cluster's defaults ask for more
SMALL_JOBS = [
    "hydra/launcher=submitit_slurm",
    "hydra.launcher.cpus_per_task=1",
    "hydra.launcher.mem_gb=2",
    "hydra.launcher.timeout_min=15",
]
QUICK = ["data=iris", "logger=none", "callbacks.training_budget=null"]


def sweep_dir(cwd: Path) -> Path:
    (directory,) = (cwd / "logs" / "train" / "multiruns").iterdir()
    return directory


def test_a_sweep_on_slurm_runs_its_jobs_and_a_failing_job_fails_alone(tmp_path):
    result = run_cli(
        "nmsnn-train",
        "--multirun",
        *SMALL_JOBS,
        *QUICK,
        "trainer.max_epochs=3",
        "model.neuron.decay=0.8,0.9,1.5",
        cwd=tmp_path,
    )
    console = result.stdout + result.stderr
    directory = sweep_dir(tmp_path)
    summary = pd.read_csv(directory / "summary.csv")
    assert summary["status"].tolist() == ["ok", "ok", "failed"]
    assert "decay must be in (0, 1]" in summary.loc[2, "error"]
    for job in ("0", "1"):
        metrics = json.loads((directory / job / "metrics.json").read_text())["metrics"]
        assert metrics["epochs"] == 3 and "test/acc" in metrics
        assert (directory / job / "checkpoints" / "last.ckpt").exists()
    assert list((directory / ".submitit").iterdir()), "submitit's job folders"
    # a scheduler without accounting: sacct's failure is reported once, explained
    assert console.count("sacct does not answer here") == 1 and "Bypassing sacct error" not in console
    assert console.count("accounting storage is disabled") == 1
    assert "sweep summary" in console


def test_ddp_over_two_slurm_tasks_on_cpu(tmp_path):
    rows = tmp_path / "rows"
    rows.mkdir()
    run_cli(
        "nmsnn-train",
        "--multirun",
        *SMALL_JOBS,
        *QUICK,
        "trainer=ddp",
        "trainer.accelerator=cpu",
        "trainer.devices=2",
        "trainer.max_epochs=2",
        "seed=0",
        "+callbacks.rows._target_=tests.helpers.RecordRows",
        f"+callbacks.rows.directory={rows}",
        cwd=tmp_path,
        env={"PYTHONPATH": str(ROOT)},
    )
    job = sweep_dir(tmp_path) / "0"
    # both ranks trained, on disjoint rows
    seen = {rank: json.loads((rows / f"rows_rank{rank}_epoch1.json").read_text()) for rank in (0, 1)}
    assert seen[0] and seen[1] and not set(seen[0]) & set(seen[1])
    metrics = json.loads((job / "metrics.json").read_text())["metrics"]
    evaluated = run_cli("nmsnn-eval", f"ckpt_path={job / 'checkpoints' / 'best.ckpt'}", cwd=tmp_path)
    scored = json.loads(evaluated.stdout.strip().splitlines()[-1])
    for key in ("test/acc", "test/loss", "test/f1_macro"):
        assert scored[key] == pytest.approx(metrics[key], abs=1e-5), key


def _job_id(tmp_path: Path, deadline: float) -> str:
    while time.time() < deadline:
        ids = subprocess.run(
            ["squeue", "-h", "-o", "%i", "-u", os.environ.get("USER", "root")], capture_output=True, text=True
        ).stdout.split()
        folders = list((tmp_path / "logs" / "train" / "multiruns").glob("*/.submitit/*"))
        known = [f.name for f in folders if f.name in ids]
        if known:
            return known[0]
        time.sleep(0.5)
    raise AssertionError("the job never appeared in squeue")


def test_a_requeued_job_resumes_from_the_epoch_it_reached(tmp_path):
    """A plateaued run (a learning rate too small to move the loss: its best epoch is the first),
    requeued by the scheduler in its fourth epoch or later, resumes from last.ckpt (the epoch it
    reached, not its best) and ends with the metrics of an uninterrupted run."""
    common = [
        *QUICK,
        "trainer.max_epochs=10",
        "trainer.deterministic=true",
        "callbacks.early_stopping=null",
        "callbacks.progress.every_s=0",
        "model.optimizer.lr=1e-12",
        "seed=3",
    ]
    slow = ["+callbacks.sleep._target_=tests.helpers.SleepPerEpoch", "+callbacks.sleep.seconds=1.5"]
    env = {**os.environ, "NMSNN_LOG_DIR": str(tmp_path / "logs"), "PYTHONPATH": str(ROOT)}
    sweep = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "nmsnn-train"),
            "--multirun",
            *SMALL_JOBS,
            *common,
            *slow,
            "model.neuron.decay=0.9",
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.time() + 240
    job_id = _job_id(tmp_path, deadline)
    last = None
    while time.time() < deadline:
        found = list((tmp_path / "logs" / "train" / "multiruns").glob("*/0/checkpoints/last.ckpt"))
        if found:
            last = found[0]
            reached = torch.load(last, weights_only=True)["epoch"]
            if reached >= 2:
                break
        time.sleep(0.3)
    assert last is not None, "the job wrote no last.ckpt"
    subprocess.run(["scontrol", "requeue", job_id], check=True)
    output = sweep.communicate(timeout=300)[0]
    assert sweep.returncode == 0, output
    job = last.parents[1]
    log = (job / "train.log").read_text()
    assert "resuming from" in log and "last.ckpt" in log
    # epochs logged after the resume start beyond the epoch the checkpoint held (not epoch 1)
    after = log.split("resuming from", 1)[1]
    first_epoch = int(re.search(r"epoch (\d+)/10", after).group(1))
    assert first_epoch >= reached + 2, (reached, first_epoch)
    best = torch.load(job / "checkpoints" / "best.ckpt", weights_only=True)["epoch"]
    assert best < reached, "a plateaued run: its best epoch came before the requeue"
    got = json.loads((job / "metrics.json").read_text())["metrics"]
    run_cli(
        "nmsnn-train",
        "run_name=whole",
        *common,
        "model.neuron.decay=0.9",
        cwd=tmp_path,
        env={"PYTHONPATH": str(ROOT)},
    )
    want = json.loads((tmp_path / "logs" / "train" / "runs" / "whole" / "metrics.json").read_text())[
        "metrics"
    ]
    assert got == want
