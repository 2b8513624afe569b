"""Sweeps and scale: real Hydra multiruns (basic, joblib, Optuna, submitit), DDP on CPU, resume."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
import pytest
import yaml
from hydra import compose, initialize_config_module

from nmsnn.cli.eval import evaluate
from nmsnn.pipeline import train
from tests.conftest import compose_train, run_cli

ROOT = Path(__file__).parents[1]
QUICK = ["data=iris", "trainer.max_epochs=2", "logger=none", "trainer.enable_progress_bar=false"]


def sweep_dir(cwd: Path) -> Path:
    (path,) = (cwd / "logs" / "train" / "multiruns").iterdir()
    return path


@pytest.mark.slow
def test_parallel_sweep_with_a_failing_job_keeps_the_other_results(tmp_path):
    result = run_cli(
        "nmsnn-train",
        "--multirun",
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
        "model.neuron.decay=0.8,1.5,0.95",
        *QUICK,
        cwd=tmp_path,
    )
    assert "validated against ConfigStore schema" not in result.stdout + result.stderr
    sweep = sweep_dir(tmp_path)
    assert sorted(p.name for p in sweep.iterdir() if p.is_dir()) == ["0", "1", "2"]
    summary = pd.read_csv(sweep / "summary.csv").set_index("job")
    assert len(summary) == 3 and (sweep / "summary.md").exists()
    assert (
        summary.loc[1, "status"] == "failed" and "decay must be in (0, 1], got 1.5" in summary.loc[1, "error"]
    )
    for job in (0, 2):
        assert summary.loc[job, "status"] == "ok" and 0 <= summary.loc[job, "test/acc"] <= 1
        assert "model.neuron.decay" in summary.loc[job, "overrides"] and summary.loc[job, "seconds"] > 0
        assert (sweep / str(job) / "checkpoints" / "best.ckpt").exists()
    assert "val/spikes/layer1/firing_rate" in summary.columns


@pytest.mark.slow
def test_optuna_search_goes_on_past_a_failed_trial_and_writes_its_best_parameters(tmp_path):
    result = run_cli(
        "nmsnn-train",
        "--multirun",
        "hparams_search=neuron_optuna",
        "hydra.sweeper.n_trials=4",
        "model.neuron.decay=choice(0.9,1.5)",  # 1.5 is invalid: that trial fails
        *QUICK,
        cwd=tmp_path,
    )
    assert "Traceback" not in result.stdout + result.stderr, "a user error is logged as one line"
    assert "alembic" not in result.stdout + result.stderr
    # Optuna's lines come through the same handlers as the rest, without colour codes
    assert "study created" in result.stdout + result.stderr and "\x1b[" not in result.stdout + result.stderr
    sweep = sweep_dir(tmp_path)
    best = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert set(best["best_params"]) == {
        "model.neuron.decay",
        "model.neuron.threshold",
        "model.neuron.penalty",
        "model.optimizer.lr",
    }
    summary = pd.read_csv(sweep / "summary.csv")
    failed = summary["status"] == "failed"
    assert len(summary) == 4 and failed.any() and not failed.all(), "the seeded sampler tries both decays"
    assert summary.loc[failed, "error"].str.contains("decay must be in").all()
    assert best["best_value"] == pytest.approx(summary.loc[~failed, "val/loss"].min())
    assert best["best_params"]["model.neuron.decay"] == 0.9


@pytest.mark.slow
def test_submitit_local_runs_two_jobs(tmp_path):
    run_cli(
        "nmsnn-train",
        "--multirun",
        "hydra/launcher=submitit_local",
        "model.neuron.threshold=0.5,1.0",
        *QUICK,
        cwd=tmp_path,
    )
    summary = pd.read_csv(sweep_dir(tmp_path) / "summary.csv")
    assert list(summary["status"]) == ["ok", "ok"]
    # the jobs run at once: each takes its cpus_per_task (1) threads, not every core
    for job in ("0", "1"):
        log = next((sweep_dir(tmp_path) / job).glob("*.log")).read_text()
        assert "CPU threads: 1 (auto: " in log and "parallel jobs" in log, log


def test_slurm_launcher_config_follows_the_trainer():
    with initialize_config_module("nmsnn.conf", version_base="1.3"):
        cfg = compose(
            "train",
            overrides=[
                "hydra/launcher=submitit_slurm",
                "trainer=ddp",
                "trainer.devices=4",
                "hydra.launcher.partition=gpu",
            ],
            return_hydra_config=True,
        )
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert launcher.tasks_per_node == 4 and launcher.gpus_per_node == 4 and launcher.nodes == 1
    assert launcher.partition == "gpu" and launcher.max_num_timeout == 3
    assert {"timeout_min", "cpus_per_task", "mem_gb", "array_parallelism"} <= set(launcher)
    # a CPU-only cluster: no GPU request unless the trainer trains on GPUs
    for overrides, tasks, gpus in (
        ([], 1, None),
        (["trainer=ddp", "trainer.accelerator=cpu"], 2, None),
        (["trainer=gpu"], 1, 1),
        (["trainer.accelerator=cuda", "trainer.devices=2"], 2, 2),
    ):
        with initialize_config_module("nmsnn.conf", version_base="1.3"):
            cfg = compose(
                "train", overrides=["hydra/launcher=submitit_slurm", *overrides], return_hydra_config=True
            )
        assert (cfg.hydra.launcher.tasks_per_node, cfg.hydra.launcher.gpus_per_node) == (tasks, gpus), (
            overrides
        )


def test_multirun_with_relaunching_ddp_is_refused_with_the_alternative(tmp_path):
    run_cli(
        "nmsnn-train",
        "--multirun",
        "trainer=ddp",
        "trainer.accelerator=cpu",
        "model.neuron.decay=0.9",
        *QUICK,
        cwd=tmp_path,
    )
    summary = pd.read_csv(sweep_dir(tmp_path) / "summary.csv")
    assert summary.loc[0, "status"] == "failed"
    assert "re-launches this script" in summary.loc[0, "error"] and "ddp_spawn" in summary.loc[0, "error"]


@pytest.mark.slow
def test_ddp_on_two_cpu_processes(tmp_path):
    rows_dir = tmp_path / "rows"
    rows_dir.mkdir()
    cfg = compose_train(
        tmp_path / "run",
        [
            "trainer=ddp_sim",
            "data=iris",
            "data.test_size=0.19",  # 29 test and 25 validation rows: the ranks hold unequal shares
            "trainer.max_epochs=2",
            "data.batch_size=16",
            "logger=none",
            "+callbacks.rows._target_=tests.helpers.RecordRows",
            f"+callbacks.rows.directory={rows_dir}",
        ],
    )
    metrics = train(cfg)
    n_train = 96
    for epoch in (0, 1):
        seen = [json.loads((rows_dir / f"rows_rank{r}_epoch{epoch}.json").read_text()) for r in (0, 1)]
        assert not set(seen[0]) & set(seen[1]), "the ranks saw disjoint rows"
        assert sorted(seen[0] + seen[1]) == list(range(n_train)), "together every training row, once"
    ckpt = tmp_path / "run" / "checkpoints" / "best.ckpt"
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]
    with initialize_config_module("nmsnn.conf", version_base="1.3"):
        single = evaluate(compose("eval", overrides=[f"ckpt_path={ckpt}"]))
        val = evaluate(compose("eval", overrides=[f"ckpt_path={ckpt}", "split=val"]))
    # the report's metrics, gathered over two ranks, are those of one process on all the rows
    for key in ("test/acc", "test/loss"):
        assert single[key] == pytest.approx(metrics[key], abs=1e-6), key
    for key in ("val/acc", "val/loss", "val/f1_macro"):
        assert val[key] == pytest.approx(metrics[key], abs=1e-6), key
    assert metrics["epochs"] == 2


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_result(tmp_path):
    env = {"PYTHONPATH": str(ROOT)}
    common = [
        "data=wine",
        "trainer.max_epochs=5",
        "trainer.deterministic=true",
        "callbacks.early_stopping=null",
        "callbacks.progress.every_s=0",
        "monitor_mode=max",  # the falling val/loss's "best" is then epoch 1, before the interruption
        "logger=none",
    ]
    kill = [
        "+callbacks.kill._target_=tests.helpers.KillOnce",
        "+callbacks.kill.epoch=3",
        f"+callbacks.kill.marker={tmp_path / 'killed'}",
    ]
    first = run_cli("nmsnn-train", "run_name=interrupted", *common, *kill, cwd=tmp_path, env=env, check=False)
    assert first.returncode != 0 and (tmp_path / "killed").exists()
    run_dir = tmp_path / "logs" / "train" / "runs" / "interrupted"
    assert not (run_dir / "metrics.json").exists()
    resumed = run_cli("nmsnn-train", "run_name=interrupted", *common, *kill, cwd=tmp_path, env=env)
    assert "resuming from" in resumed.stdout + resumed.stderr
    whole = run_cli("nmsnn-train", "run_name=uninterrupted", *common, cwd=tmp_path, env=env)

    def best_so_far(console: str) -> list[str]:  # "(best <value> at epoch <n>)" of each epoch's line
        lines = [line for line in console.splitlines() if "nmsnn.progress" in line]
        return [line.split("(best ")[1].split(")")[0] for line in lines]

    # the resumed run's lines compare with the epochs before the interruption too
    assert best_so_far(resumed.stdout + resumed.stderr) == best_so_far(whole.stdout + whole.stderr)[-2:]
    got = json.loads((run_dir / "metrics.json").read_text())["metrics"]
    want = json.loads((tmp_path / "logs" / "train" / "runs" / "uninterrupted" / "metrics.json").read_text())[
        "metrics"
    ]
    assert got == want

    # the same command on the finished run: refused, its results untouched; ckpt_path trains it on
    before = (run_dir / "metrics.json").read_bytes()
    again = run_cli("nmsnn-train", "run_name=interrupted", *common, cwd=tmp_path, env=env, check=False)
    assert again.returncode == 2 and "holds a finished run" in again.stderr
    assert (run_dir / "metrics.json").read_bytes() == before
    last = f"ckpt_path={run_dir / 'checkpoints' / 'last.ckpt'}"
    longer = [a if a != "trainer.max_epochs=5" else "trainer.max_epochs=6" for a in common]
    run_cli("nmsnn-train", "run_name=interrupted", *longer, last, cwd=tmp_path, env=env)
    assert json.loads((run_dir / "metrics.json").read_text())["run"]["epochs"] == 6


def test_ddp_configs_compose(tmp_path):
    for trainer, strategy in (("ddp", "ddp"), ("ddp_sim", "ddp_spawn")):
        cfg = compose_train(tmp_path, [f"trainer={trainer}"])
        assert cfg.trainer.strategy == strategy and cfg.trainer.use_distributed_sampler is False
    assert os.environ.get("LOCAL_RANK") is None


def test_a_sweep_composes_each_job_once(monkeypatch):
    """The sweeper's check composes a job and the launcher is handed that composition (once):
    two requests for one job cost one composition, a third composes again."""
    from hydra._internal.config_loader_impl import ConfigLoaderImpl
    from hydra.core.global_hydra import GlobalHydra

    from nmsnn.sweeps import compose_each_job_once

    compose_each_job_once()
    calls = []
    original = ConfigLoaderImpl.load_configuration
    monkeypatch.setattr(
        ConfigLoaderImpl,
        "load_configuration",
        lambda self, *a, **k: calls.append(1) or original(self, *a, **k),
    )
    with initialize_config_module("nmsnn.conf", version_base="1.3"):
        master = compose("train", return_hydra_config=True)
        loader = GlobalHydra.instance().config_loader()
        calls.clear()
        job = ["model.neuron.decay=0.8"]
        checked = loader.load_sweep_config(master, job)  # the sweeper's check
        launched = loader.load_sweep_config(master, job)  # the launcher's run
        assert len(calls) == 1 and launched is not checked
        assert launched.model.neuron.decay == 0.8 and checked.model == launched.model
        loader.load_sweep_config(master, job)
        assert len(calls) == 2


def test_mean_standard_error_matches_numpy_over_several_updates():
    import numpy as np
    import torch

    from nmsnn.lit.metrics import MeanStandardError

    values = np.random.default_rng(0).gamma(2.0, size=101)
    metric = MeanStandardError()
    for part in np.array_split(values, 4):
        metric.update(torch.tensor(part, dtype=torch.float32))
    expected = values.std(ddof=1) / np.sqrt(len(values))
    assert float(metric.compute()) == pytest.approx(expected, rel=1e-5)
    metric.reset()
    metric.update(torch.tensor([1.0]))
    assert torch.isnan(metric.compute())  # one row: no spread to measure


def _ranked(losses, errors, statuses=None):
    from nmsnn.sweeps import rank_jobs

    frame = pd.DataFrame(
        {
            "job": range(len(losses)),
            "status": statuses or ["ok"] * len(losses),
            "overrides": [f"model.optimizer.lr={i}" for i in range(len(losses))],
            "val/loss": losses,
            "val/loss_se": errors,
            "error": None,
        }
    )
    return rank_jobs(frame, "val/loss", "min")


def test_one_se_pick_keeps_the_first_job_unless_the_best_beats_it_by_a_standard_error():
    from nmsnn.sweeps import pick_job

    def picked(frame, rule="one_se"):
        out, note = pick_job(frame, "val/loss", "min", rule)
        assert out["pick"].sum() == 1
        return int(out.loc[out["pick"], "job"].iloc[0]), note

    # job 2 is best by 0.05, its standard error 0.1: noise, the first job stays
    job, note = picked(_ranked([0.50, 0.60, 0.45], [0.1, 0.1, 0.1]))
    assert job == 0 and "job 0, the first job" in note and "0.1" in note
    # the same gain with a standard error of 0.01: the best job
    job, note = picked(_ranked([0.50, 0.60, 0.45], [0.01, 0.01, 0.01]))
    assert job == 2 and "the best job, 2" in note
    assert picked(_ranked([0.50, 0.60, 0.45], [0.1, 0.1, 0.1]), "best")[0] == 2
    job, note = picked(_ranked([0.40, 0.60, 0.45], [0.1, 0.1, 0.1]))  # the first job is the best
    assert job == 0 and "also the first job" in note and "beats" not in note
    # the anchor is the first job that finished
    assert picked(_ranked([float("nan"), 0.47, 0.45], [0.1, 0.1, 0.1], ["failed", "ok", "ok"]))[0] == 1
    # without a standard error column the rule has nothing to weigh: the best job
    frame = _ranked([0.50, 0.45], [0.1, 0.1]).drop(columns="val/loss_se")
    assert picked(frame)[0] == 1
    with pytest.raises(ValueError, match="sweep_pick='median' must be one of one_se, best"):
        pick_job(_ranked([0.5], [0.1]), "val/loss", "min", "median")


def test_the_summary_shows_sampled_values_to_four_digits_and_keeps_them_whole_in_the_csv():
    from nmsnn.sweeps import summary_view

    frame = pd.DataFrame(
        {
            "rank": [1, 2],
            "best": [True, False],
            "pick": [True, False],
            "job": [0, 1],
            "status": ["ok", "ok"],
            "overrides": [
                "model.neuron.decay=0.7118273996694524 model.hidden=[64,64] model.optimizer.lr=0.003",
                "model.neuron.decay=0.9 model.hidden=[32] model.optimizer.lr=0.001",
            ],
            "val/loss": [0.123456789, 0.2],
            "seconds": [1.0, 2.0],
            "error": [None, None],
        }
    )
    view = summary_view(frame, "val/loss")
    assert view["model.neuron.decay"].tolist() == ["0.7118", "0.9"]
    assert view["model.hidden"].tolist() == ["[64,64]", "[32]"]
    assert view["model.optimizer.lr"].tolist() == ["0.003", "0.001"] and view["val/loss"][0] == 0.1235
    assert "0.7118273996694524" in frame["overrides"][0]  # the frame written to summary.csv is untouched
