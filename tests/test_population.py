"""Population sweeps: real Hydra multiruns with hydra/launcher=population against the basic launcher."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from hydra import compose, initialize_config_module
from sklearn.datasets import load_iris
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from nmsnn.cli.eval import evaluate
from nmsnn.lit.module import SpikingModule
from nmsnn.population.launcher import group_jobs, group_key
from nmsnn.population.network import PopulationNetwork
from nmsnn.population.training import merged_groups, unsupported
from tests.conftest import compose_train, run_cli

QUICK = [
    "data=iris",
    "trainer.max_epochs=6",
    "trainer.deterministic=true",
    "callbacks.early_stopping.patience=1",
    "callbacks.early_stopping.min_delta=0.02",
    "trainer.enable_progress_bar=false",
]


def sweep(*args: str, cwd: Path):
    cwd.mkdir(parents=True, exist_ok=True)
    return run_cli("nmsnn-train", "--multirun", *args, cwd=cwd)


def summary(cwd: Path) -> pd.DataFrame:
    (sweep,) = (cwd / "logs" / "train" / "multiruns").iterdir()
    return pd.read_csv(sweep / "summary.csv").set_index("job")


def sweep_dir(cwd: Path) -> Path:
    (sweep,) = (cwd / "logs" / "train" / "multiruns").iterdir()
    return sweep


def metric_columns(frame: pd.DataFrame) -> list[str]:
    return [c for c in frame.columns if c.startswith(("val/", "test/")) or c == "epochs"]


def test_grouping_keeps_population_able_overrides_together():
    jobs = [
        ["model.neuron.decay=0.8", "model.hidden=[16]", "seed=0"],
        ["model.neuron.decay=0.9", "model.hidden=[16]", "seed=1"],
        ["model.neuron.decay=0.8", "model.hidden=[32]", "seed=0"],
        ["model.optimizer.lr=0.01", "model.hidden=[16]", "model.neuron.threshold=2"],
        ["model.neuron.decay=0.9", "model.hidden=[32]", "seed=0"],
    ]
    assert group_jobs(jobs, max_members=16) == [[0, 1, 3], [2, 4]]
    assert group_jobs(jobs, max_members=2) == [[0, 1], [3], [2, 4]]
    assert group_key(["+model.neuron.penalty=2", "data=iris"]) == ("data=iris",)
    with pytest.raises(ValueError, match="max_members"):
        group_jobs(jobs, max_members=0)


def test_population_forward_and_gradients_are_each_members_own():
    members = []
    for k, (decay, threshold) in enumerate([(0.8, 1.0), (0.9, 0.5), (0.95, 2.0)]):
        torch.manual_seed(k)
        members.append(
            SpikingModule(
                "classification", 5, 3, hidden=[24, 12], neuron={"decay": decay, "threshold": threshold}
            )
        )
    inputs = [m.encode(torch.randn(7, 5)) for m in members]
    targets = [torch.randint(0, 3, (7,)) for _ in members]
    predictions = PopulationNetwork(members)(inputs)
    sum(m.loss(predictions[k], targets[k]) for k, m in enumerate(members)).backward()
    together = [[p.grad.clone() for p in m.parameters()] for m in members]
    for k, member in enumerate(members):
        member.zero_grad()
        alone = member(inputs[k]).prediction
        assert torch.equal(alone, predictions[k].detach())
        member.loss(alone, targets[k]).backward()
        for p, g in zip(member.parameters(), together[k]):
            assert torch.equal(p.grad, g)


def test_members_with_equal_optimizer_settings_share_one_parameter_group():
    a, b, c = (torch.nn.Linear(2, 2) for _ in range(3))
    optimizers = [
        torch.optim.AdamW(a.parameters(), lr=0.01),
        torch.optim.AdamW(b.parameters(), lr=0.1),
        torch.optim.AdamW(c.parameters(), lr=0.01),
    ]
    groups = merged_groups([g for o in optimizers for g in o.param_groups])
    assert [g["lr"] for g in groups] == [0.01, 0.1]
    assert groups[0]["params"] == [*a.parameters(), *c.parameters()]
    assert all(g["foreach"] for g in groups)  # torch's choice (None) becomes the multi-tensor path
    explicit = torch.optim.AdamW(a.parameters(), lr=0.01, foreach=False).param_groups
    assert merged_groups(explicit)[0]["foreach"] is False


def test_population_refuses_mixed_architectures():
    a = SpikingModule("classification", 5, 3, hidden=[8])
    b = SpikingModule("classification", 5, 3, hidden=[16])
    with pytest.raises(Exception, match=r"model.hidden=\[16\]"):
        PopulationNetwork([a, b])


def test_unsupported_settings_are_named(tmp_path):
    assert unsupported(compose_train(tmp_path, [])) is None
    reason = unsupported(compose_train(tmp_path, ["+trainer.gradient_clip_val=1.0"]))
    assert "trainer.gradient_clip_val" in reason
    reason = unsupported(compose_train(tmp_path, ["+callbacks.early_stopping.stopping_threshold=0.1"]))
    assert "callbacks.early_stopping.stopping_threshold" in reason


@pytest.mark.parametrize(("mode", "min_delta"), [("min", 0.0), ("min", 0.05), ("max", 0.05)])
def test_a_members_early_stopping_decides_as_the_lightning_callback_does(mode, min_delta):
    """should_stop drives the member's own EarlyStopping object; on any sequence of values it stops
    at the same epoch, with the same best score, as the callback's own rule."""
    from lightning.pytorch.callbacks import EarlyStopping

    from nmsnn.population.training import should_stop

    rng = np.random.default_rng(0)
    for _ in range(20):
        values = rng.normal(size=30).round(2).tolist()
        ours = EarlyStopping(monitor="val/loss", mode=mode, patience=3, min_delta=min_delta)
        theirs = EarlyStopping(monitor="val/loss", mode=mode, patience=3, min_delta=min_delta)
        for value in values:
            stop_ours = should_stop(ours, value)
            stop_theirs, _ = theirs._evaluate_stopping_criteria(torch.tensor(value))
            assert stop_ours == stop_theirs and float(ours.best_score) == float(theirs.best_score)
            if stop_ours:
                break


@pytest.mark.slow
def test_population_sweep_equals_the_one_by_one_sweep(tmp_path):
    """4 configurations (decay x learning rate), trained together and one by one: same metrics."""
    grid = ["model.neuron.decay=0.8,0.9", "model.optimizer.lr=0.003,0.03", *QUICK]
    sweep(*grid, cwd=tmp_path / "basic")
    sweep("hydra/launcher=population", *grid, cwd=tmp_path / "population")
    basic, population = summary(tmp_path / "basic"), summary(tmp_path / "population")
    assert list(population.columns) == list(basic.columns)
    assert (population["status"] == "ok").all() and len(population) == 4
    assert population["overrides"].tolist() == basic["overrides"].tolist()
    columns = metric_columns(basic)
    assert "val/loss" in columns and "test/acc" in columns and "val/spikes/layer1/firing_rate" in columns
    pd.testing.assert_frame_equal(population[columns], basic[columns], atol=1e-5, rtol=0)
    assert population["epochs"].nunique() > 1, "early stopping is per member"

    directory = sweep_dir(tmp_path / "population")
    status = json.loads((directory / "0" / "job_status.json").read_text())
    assert status["population"]["members"] == 4 and status["population"]["first_job"] == 0
    # a job's seconds: its own set-up and report and its share of the training
    assert status["seconds"] > status["population"]["training_seconds"] / 4
    # each job is an ordinary run: TensorBoard curves, checkpoints that nmsnn-eval and nmsnn-predict read
    job = directory / "3"
    events = [
        EventAccumulator(str(directory / "3" / "tensorboard")).Reload()
        for directory in (sweep_dir(tmp_path / "basic"), job.parent)
    ]
    for tag in ("val/loss", "val/acc", "train/loss", "val/spikes/layer1/firing_rate", "test/acc"):
        basic_curve, population_curve = ([(e.step, e.value) for e in ev.Scalars(tag)] for ev in events)
        assert [s for s, _ in population_curve] == [s for s, _ in basic_curve], tag
        # equal up to float32 summation order (the stacked population sums in another order)
        assert np.allclose(
            [v for _, v in population_curve], [v for _, v in basic_curve], atol=1e-5, rtol=0
        ), tag
    # one point per epoch: the tested checkpoint's validation is not a last point of the curve
    assert len(events[1].Scalars("val/loss")) == population.loc[3, "epochs"]
    with initialize_config_module("nmsnn.conf", version_base="1.3"):
        again = evaluate(compose("eval", overrides=[f"ckpt_path={job / 'checkpoints' / 'best.ckpt'}"]))
    assert again["test/acc"] == pytest.approx(population.loc[3, "test/acc"], abs=1e-6)
    rows, out = tmp_path / "rows.csv", tmp_path / "predictions.csv"
    load_iris(as_frame=True).frame.drop(columns="target").to_csv(rows, index=False)
    run_cli(
        "nmsnn-predict",
        f"ckpt_path={job / 'checkpoints' / 'best.ckpt'}",
        f"input_path={rows}",
        f"output_path={out}",
        cwd=tmp_path,
    )
    assert len(pd.read_csv(out)) == 150


@pytest.mark.slow
def test_mixed_sweep_runs_as_groups_and_isolates_failures(tmp_path):
    """Two hidden sizes x two seeds: two populations of two (each member its own data split),
    plus a job with an invalid decay that fails alone, and a job that cannot be a member."""
    sweep(
        "hydra/launcher=population", "model.hidden=[8],[16]", "seed=0,1", *QUICK, cwd=tmp_path / "population"
    )
    frame = summary(tmp_path / "population")
    assert len(frame) == 4 and (frame["status"] == "ok").all()
    directory = sweep_dir(tmp_path / "population")
    assert sorted(p.name for p in directory.iterdir() if p.is_dir()) == ["0", "1", "2", "3"]
    firsts = []
    for job in range(4):
        status = json.loads((directory / str(job) / "job_status.json").read_text())
        assert status["population"]["members"] == 2
        firsts.append(status["population"]["first_job"])
    # the grid's order is hidden x seed: jobs 0, 1 are one population, jobs 2, 3 the other
    assert firsts == [0, 0, 2, 2]
    # seed 0 and seed 1 split the data differently, as they would alone
    sweep("model.hidden=[8],[16]", "seed=0,1", *QUICK, cwd=tmp_path / "basic")
    columns = metric_columns(frame)
    pd.testing.assert_frame_equal(frame[columns], summary(tmp_path / "basic")[columns], atol=1e-5, rtol=0)

    result = sweep(
        "hydra/launcher=population", "model.neuron.decay=0.8,1.5,0.9", *QUICK, cwd=tmp_path / "failing"
    )
    console = (result.stdout + result.stderr).splitlines()
    said = [line for line in console if "decay must be in" in line and not line.startswith("|")]
    assert len(said) == 1 and "full_key" not in "".join(console), said  # logged once (and in the table)
    failing = summary(tmp_path / "failing")
    assert failing.loc[1, "status"] == "failed" and "decay must be in (0, 1]" in failing.loc[1, "error"]
    assert (failing.loc[[0, 2], "status"] == "ok").all()

    # an optimizer setting torch refuses fails its own job too, not the population it would join
    result = sweep(
        "hydra/launcher=population", "model.optimizer.lr=-1,0.003,0.01", *QUICK, cwd=tmp_path / "lr"
    )
    bad_lr = summary(tmp_path / "lr")
    assert (
        bad_lr.loc[0, "status"] == "failed"
        and "model.optimizer.lr=-1 must be a positive number" in bad_lr.loc[0, "error"]
    )
    assert (bad_lr.loc[[1, 2], "status"] == "ok").all()
    assert "Error executing job" not in result.stdout + result.stderr


@pytest.mark.slow
def test_optuna_sends_its_trials_to_the_population_launcher(tmp_path):
    sweep(
        "hparams_search=neuron_optuna",
        "hydra/launcher=population",
        "hydra.sweeper.n_trials=4",
        "hydra.sweeper.n_jobs=4",
        *QUICK,
        cwd=tmp_path,
    )
    directory = sweep_dir(tmp_path)
    assert (directory / "optimization_results.yaml").exists()
    frame = summary(tmp_path)
    assert len(frame) == 4 and (frame["status"] == "ok").all()
    for job in range(4):
        status = json.loads((directory / str(job) / "job_status.json").read_text())
        assert status["population"]["members"] == 4


@pytest.mark.slow
def test_a_diverging_member_fails_alone_with_the_single_run_message(tmp_path):
    sweep(
        "hydra/launcher=population",
        "model.optimizer.lr=0.003,1e30",
        "model.optimizer.weight_decay=0",
        *QUICK,
        cwd=tmp_path,
    )
    frame = summary(tmp_path)
    assert frame.loc[0, "status"] == "ok" and frame.loc[1, "status"] == "failed"
    assert "training diverged: the training loss became nan" in frame.loc[1, "error"]
    assert "with learning rate 1e+30" in frame.loc[1, "error"]
