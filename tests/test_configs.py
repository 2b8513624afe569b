"""Every config in conf/ composes, and every object it describes instantiates."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch
from hydra import compose, initialize_config_module
from hydra.utils import instantiate

from nmsnn.pipeline import instantiate_group
from tests.conftest import FIXTURES, compose_train, run_cli

CONF = Path(__file__).parents[1] / "conf"


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


DATA_EXTRA = {
    "csv": [f"data.path={FIXTURES / 'mixed_classification.csv'}", "data.target=label"],
    "parquet": [f"data.path={FIXTURES / 'mixed_classification.csv'}", "data.target=label"],
}


@pytest.mark.parametrize("data", [o for o in options("data") if o != "tabular"])
def test_data_configs_instantiate(tmp_path, data):
    cfg = compose_train(tmp_path, [f"data={data}", *DATA_EXTRA.get(data, [])])
    dm = instantiate(cfg.data)
    if data != "synthetic_binary":  # 10k rows: set up in the experiment tests
        dm.setup()
        assert dm.num_features > 0


def test_tabular_base_config_needs_a_source(tmp_path):
    cfg = compose_train(tmp_path, ["data=tabular"])
    with pytest.raises(Exception, match="exactly one data source"):
        instantiate(cfg.data)


@pytest.mark.parametrize("model", options("model"))
def test_model_configs_instantiate(tmp_path, model):
    cfg = compose_train(tmp_path, [f"model={model}"])
    module = instantiate(cfg.model, task="classification", num_inputs=5, num_outputs=3)
    optimizer = module.make_optimizer()
    if module.hparams.scheduler:  # a schedule over the run's steps (a trainer's, in training)
        module.make_scheduler(optimizer, lambda: 100)


@pytest.mark.parametrize("group", ["trainer", "callbacks", "logger"])
def test_trainer_callback_and_logger_configs_instantiate(tmp_path, group):
    for option in options(group):
        cfg = compose_train(tmp_path, [f"{group}={option}"])
        if group == "trainer":
            if cfg.trainer.accelerator == "gpu" and not torch.cuda.is_available():
                assert cfg.trainer.devices >= 1  # composes; instantiating needs a GPU
                continue
            assert isinstance(instantiate(cfg.trainer, logger=False), L.Trainer)
        else:
            instantiate_group(cfg.get(group))


def test_an_optuna_search_picks_its_best_trial(tmp_path):
    """The one-SE rule keeps a sweep's first job, a default listed first; an Optuna search's first
    trial is a random sample, so its pick is the best trial."""
    assert compose_train(tmp_path).sweep_pick == "one_se"
    assert compose_train(tmp_path, ["hparams_search=neuron_optuna"]).sweep_pick == "best"


@pytest.mark.parametrize("experiment", options("experiment"))
def test_experiment_configs_compose(tmp_path, experiment):
    cfg = compose_train(tmp_path, [f"experiment={experiment}"])
    assert cfg.task_name == experiment
    instantiate(cfg.data)
    instantiate(cfg.model, task="classification", num_inputs=5, num_outputs=2)
    instantiate(cfg.trainer, logger=False, callbacks=instantiate_group(cfg.callbacks))


@pytest.mark.parametrize(
    ("config", "overrides"),
    [("eval", ["ckpt_path=x.ckpt"]), ("predict", ["ckpt_path=x.ckpt", "input_path=rows.csv"])],
)
def test_eval_and_predict_configs_compose(config, overrides):
    with initialize_config_module("nmsnn.conf", version_base="1.3"):
        cfg = compose(config, overrides=overrides)
    assert cfg.ckpt_path == "x.ckpt" and cfg.overwrite is False


@pytest.mark.parametrize(
    "overrides",
    [
        ["model.scheduler={_target_:torch.optim.lr_scheduler.StepLR,step_size:5,interval:step}"],  # README's
        [
            "model.scheduler=null",  # then key by key
            "+model.scheduler._target_=torch.optim.lr_scheduler.StepLR",
            "+model.scheduler._partial_=true",
            "+model.scheduler.step_size=5",
            "+model.scheduler.interval=step",
        ],
    ],
)
def test_scheduler_config_is_used(tmp_path, overrides):
    cfg = compose_train(tmp_path, overrides)
    module = instantiate(cfg.model, task="regression", num_inputs=3, num_outputs=1)
    out = module.configure_optimizers()
    assert (
        type(out["lr_scheduler"]["scheduler"]).__name__ == "StepLR"
        and out["lr_scheduler"]["scheduler"].step_size == 5
    )
    assert out["lr_scheduler"]["interval"] == "step"


def test_hidden_sizes_are_checked_and_one_int_is_one_layer(caplog):
    from nmsnn.errors import ConfigError
    from nmsnn.lit.module import SpikingModule

    sizes = {"task": "classification", "num_inputs": 3, "num_outputs": 2}
    assert SpikingModule(**sizes, hidden=8).hparams.hidden == [8]
    for bad in ([0], ["a"], [True]):
        with pytest.raises(ConfigError, match=r"model\.hidden must list positive layer sizes"):
            SpikingModule(**sizes, hidden=bad)
    with caplog.at_level("WARNING"):
        SpikingModule(**sizes, hidden=[])
    assert "no hidden spiking layer" in caplog.text


def test_triton_on_cpu_tensors_is_a_configuration_error(monkeypatch):
    pytest.importorskip("triton")
    from nmsnn.errors import ConfigError
    from nmsnn.lit.module import SpikingModule

    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(ConfigError, match="backend='triton' runs on CUDA tensors"):
        SpikingModule(task="classification", num_inputs=3, num_outputs=2, hidden=[4], backend="triton")


def test_an_unknown_monitor_is_refused_before_training(tmp_path):
    from nmsnn.errors import ConfigError
    from nmsnn.pipeline import build

    with pytest.raises(
        ConfigError, match=r"monitor=val/bogus is not a metric this model logs; use one of \['train/acc'"
    ):
        build(compose_train(tmp_path, ["data=iris", "monitor=val/bogus"]))
    _, model = build(compose_train(tmp_path, ["data=diabetes", "monitor=val/rmse"]))
    assert "val/rmse" in model.epoch_metric_names()


def test_each_command_has_its_own_help(tmp_path):
    shown = run_cli("nmsnn-predict", "--help", cwd=tmp_path).stdout
    assert "Required: ckpt_path, input_path." in shown and "input_path: ???" in shown
    assert "experiment:" not in shown, "train's groups are not offered to predict"
    for name in ("train", "eval", "export", "compare"):
        with initialize_config_module("nmsnn.conf", version_base="1.3"):
            cfg = compose(
                name,
                return_hydra_config=True,
                overrides=["ckpt_path=x"] if name in ("eval", "export") else [],
            )
        assert cfg.hydra.help.app_name == f"nmsnn-{name}"


def test_auto_weight_decay_follows_the_task(tmp_path):
    """The default optimizer's weight_decay=auto: 3 for a classifier, 0.1 for a regressor."""
    from nmsnn.lit.module import AUTO_WEIGHT_DECAY

    cfg = compose_train(tmp_path, [])
    assert cfg.model.optimizer.weight_decay == "auto"
    for task, outputs in (("classification", 2), ("regression", 1)):
        module = instantiate(cfg.model, task=task, num_inputs=3, num_outputs=outputs)
        assert module.hparams.optimizer["weight_decay"] == "auto"  # stored as configured
        groups = module.make_optimizer().param_groups
        assert {g["weight_decay"] for g in groups} == {AUTO_WEIGHT_DECAY[task]}
    fixed = instantiate(
        compose_train(tmp_path, ["model.optimizer.weight_decay=0.5"]).model,
        task="regression",
        num_inputs=3,
        num_outputs=1,
    )
    assert fixed.make_optimizer().param_groups[0]["weight_decay"] == 0.5


@pytest.mark.parametrize(
    ("task", "outputs", "hidden", "members", "spikes"),
    [("classification", 3, [128], 1, "relu"), ("regression", 1, [64], 4, "heaviside")],
)
def test_the_default_model_is_chosen_per_task_and_saved_as_built(
    tmp_path, task, outputs, hidden, members, spikes
):
    """model.hidden, model.ensemble and model.neuron.spike_fn default to auto: the module builds
    the task's choice and records the sizes it built (the neuron settings as configured)."""
    from nmsnn.lit.module import AUTO_ENSEMBLE, AUTO_HIDDEN, SpikingModule

    cfg = compose_train(tmp_path, [])
    assert cfg.model.hidden == "auto" and cfg.model.ensemble == "auto" and cfg.model.neuron.spike_fn == "auto"
    settings = {k: v for k, v in cfg.model.items() if k not in ("_target_", "_recursive_")}
    module = SpikingModule(task=task, num_inputs=4, num_outputs=outputs, **settings)
    assert module.hparams.hidden == hidden == AUTO_HIDDEN[task]
    assert module.hparams.ensemble == members == AUTO_ENSEMBLE[task]
    assert module.model.network.layers[0].neuron.spike_fn == spikes
    assert module.hparams.neuron["spike_fn"] == "auto"
    assert SpikingModule(**module.hparams).hparams.hidden == hidden  # a checkpoint rebuilds it
