"""Neuron models as plug-ins: each model's settings declared once, its step the source of truth
for every backend that claims to run it, and the new models through the whole pipeline."""

from __future__ import annotations

import json
import logging
import math
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.datasets import load_iris

from nmsnn import SpikingClassifier, SpikingRegressor
from nmsnn.checkpoint import load_checkpoint
from nmsnn.core.backends import cpu_backends, get_backend, reset_auto, supports
from nmsnn.core.backends.fused import fused_recurrence
from nmsnn.core.backends.stepwise import stepwise_recurrence
from nmsnn.core.layers import SpikingLayer, SpikingNetwork, neuron_configs
from nmsnn.core.neuron import reference_recurrence, zero_state
from nmsnn.core.neurons import ALIF, LIF, NEURON_MODELS, HardResetLIF, config_text, neuron_model
from nmsnn.data.datamodule import TabularDataModule
from nmsnn.errors import ConfigError
from nmsnn.export import export
from nmsnn.lit.module import SpikingModule
from nmsnn.pipeline import train
from nmsnn.population.network import PopulationNetwork, population_keys
from nmsnn.predicting import predict_frame
from tests.conftest import compose_train, run_cli

CONF = Path(__file__).resolve().parents[1] / "conf" / "model" / "neuron"


@pytest.mark.parametrize("kind", sorted(NEURON_MODELS))
def test_each_models_config_file_is_written_from_its_fields(kind):
    """The YAML a user edits holds every setting with the model's own default (one declaration)."""
    assert (CONF / f"{kind}.yaml").read_text() == config_text(NEURON_MODELS[kind])


@pytest.mark.parametrize(
    ("model", "kwargs", "message"),
    [
        (ALIF, {"adapt_decay": 0.0}, "adapt_decay must be in (0, 1]"),
        (ALIF, {"adapt_gain": -1.0}, "adapt_gain must be a finite number >= 0"),
        (ALIF, {"spike_fn": "tanh"}, "not a spike function"),
        (HardResetLIF, {"v_reset": math.nan}, "v_reset must be a number"),
        (HardResetLIF, {"v_reset": math.inf}, "v_reset must be a finite number"),
        (HardResetLIF, {"learnable": "yes"}, "learnable must be true or false"),
    ],
)
def test_declared_ranges_are_checked(model, kwargs, message):
    with pytest.raises(ConfigError) as err:
        model(**kwargs)
    assert message in str(err.value)


def test_settings_name_the_model_and_refuse_another_models_keys():
    assert [type(m) for m in neuron_configs({"kind": "alif", "adapt_gain": [0.1, 0.2]}, 2)] == [ALIF, ALIF]
    with pytest.raises(
        ConfigError, match=r"unknown neuron setting\(s\) \['reset'\] for model.neuron.kind='alif'"
    ):
        neuron_configs({"kind": "alif", "reset": "scale"}, 1)
    with pytest.raises(ConfigError, match="kind='qif' is not a neuron model; use one of lif, alif, lif_hard"):
        neuron_model("qif")
    with pytest.raises(ConfigError, match="cannot be imported"):
        neuron_model("no_such_package.Neuron")
    with pytest.raises(ConfigError, match="is not a NeuronModel subclass"):
        neuron_model("math.pi")


def _case(model, steps, batch, hidden, seed, learn=True):
    g = torch.Generator().manual_seed(seed)
    current = (torch.randn(steps, batch, hidden, generator=g, dtype=torch.float64) * 2).requires_grad_()
    values = tuple(
        torch.tensor(float(getattr(model, n)), dtype=torch.float64, requires_grad=learn)
        for n in model.param_names()
    )
    state = model.State(*(torch.randn(batch, hidden, generator=g, dtype=torch.float64).abs().requires_grad_()
                          for _ in model.State._fields))  # fmt: skip
    weights = torch.randn(2 + len(state), steps, batch, hidden, generator=g, dtype=torch.float64)
    return current, values, state, weights


def _run(fn, model, current, values, state, weights, record=True):
    out = (
        fn(current, values, model, state, record=record)
        if fn is not reference_recurrence
        else fn(current, values, model, state)
    )
    loss = (out.spikes * weights[0]).sum() + 0 * current.sum()
    if record:
        loss = loss + (out.membrane * weights[1]).sum()
    loss = loss + sum((x * w[0]).sum() for x, w in zip(out.state, weights[2:]))
    inputs = [current, *(v for v in values if v.requires_grad), *state]
    grads = torch.autograd.grad(loss, inputs, allow_unused=True)
    return [out.spikes, *out.state], [torch.zeros_like(x) if g is None else g for x, g in zip(inputs, grads)]


MODELS = [
    LIF(decay=0.8, threshold=0.7, penalty=0.4, reset="scale", spike_fn="heaviside"),
    LIF(decay=0.9, threshold=0.5, penalty=0.2),
    ALIF(decay=0.85, threshold=0.6, adapt_gain=0.3, spike_fn="heaviside"),
    ALIF(decay=0.9, threshold=0.8, adapt_decay=0.7),
    HardResetLIF(decay=0.8, threshold=0.7, v_reset=-0.2),
    HardResetLIF(decay=0.95, threshold=0.5, spike_fn="relu"),
]


@pytest.mark.parametrize("model", MODELS, ids=lambda m: f"{m.kind}-{m.spike_fn}")
@settings(max_examples=10, deadline=None)
@given(
    steps=st.integers(1, 10), batch=st.integers(1, 3), hidden=st.integers(1, 5), seed=st.integers(0, 2**16)
)
def test_stepwise_node_matches_the_reference_in_values_and_gradients(model, steps, batch, hidden, seed):
    """The node derived from the step (what ``fused`` runs for every model without kernels of its
    own): outputs, final state and the gradients of current, parameters and incoming state."""
    case = _case(model, steps, batch, hidden, seed)
    ref_out, ref_grads = _run(reference_recurrence, model, *case)
    got_out, got_grads = _run(stepwise_recurrence, model, *case)
    for got, want in zip(got_out + got_grads, ref_out + ref_grads):
        torch.testing.assert_close(got, want, atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("backend", [b for b in cpu_backends() if b != "reference"])
@pytest.mark.parametrize("model", MODELS, ids=lambda m: f"{m.kind}-{m.spike_fn}")
def test_every_backend_that_claims_a_model_matches_its_step(backend, model):
    """LIF's hand-written kernels (fused torch loops, numba, Triton in its interpreter) are
    checked against the generic node; a backend that does not run a model says so."""
    if not supports(backend, model):
        with pytest.raises(ConfigError, match=f"backend='{backend}' runs the lif neuron only"):
            SpikingLayer(3, 4, model, backend=backend)
        return
    case = _case(model, 9, 3, 5, seed=7)
    want_out, want_grads = _run(stepwise_recurrence, model, *case)
    got_out, got_grads = _run(get_backend(backend), model, *case)
    for got, want in zip(got_out + got_grads, want_out + want_grads):
        torch.testing.assert_close(got, want, atol=1e-9, rtol=1e-9)


def test_stepwise_node_without_membrane_and_without_gradient():
    model = ALIF()
    current, values, state, _ = _case(model, 6, 2, 3, seed=1, learn=False)
    out = stepwise_recurrence(current, values, model, state, record=False)
    assert out.membrane is None
    with torch.no_grad():
        plain = stepwise_recurrence(current, values, model, state)
    torch.testing.assert_close(out.spikes, plain.spikes)
    assert plain.spikes.grad_fn is None


def test_auto_runs_other_models_on_fused_and_says_so_once(caplog):
    reset_auto()
    net = SpikingNetwork([3, 8, 2], [ALIF()] * 2, backend="auto")
    with caplog.at_level(logging.INFO, logger="nmsnn.core.backends"):
        for _ in range(2):
            net(torch.randn(6, 4, 3)).trace.sum().backward()
    notes = [r.getMessage() for r in caplog.records if "alif" in r.getMessage()]
    if "numba" in cpu_backends():
        assert notes == ["backend=auto on cpu uses 'fused' for the alif neuron: numba's kernels run lif only"]
    assert type(net(torch.randn(6, 4, 3)).layers[0].spikes.grad_fn).__name__ == "StepwiseRecurrenceBackward"


def test_alif_threshold_rises_after_each_spike_and_decays_back():
    model = ALIF(decay=1.0, threshold=1.0, penalty=0.0, adapt_decay=0.5, adapt_gain=1.0, spike_fn="heaviside")
    values = tuple(torch.tensor(float(getattr(model, n))) for n in model.param_names())
    state = zero_state(model, torch.zeros(1, 1))
    adapt = []
    for c in [2.0, 0.0, 0.0, 0.0]:
        state = model.step(torch.tensor([[c]]), state, values)
        adapt.append(float(state.adapt))
    assert adapt == [1.0, 0.5, 0.25, 0.125]  # one spike, then halving per step
    plain = LIF(decay=1.0, threshold=1.0, penalty=0.0, spike_fn="heaviside")
    current = torch.full((20, 1, 1), 0.6)
    lif_spikes = fused_recurrence(
        current, (torch.tensor(1.0), torch.tensor(1.0), torch.tensor(0.0)), plain
    ).spikes
    alif_spikes = fused_recurrence(current, values, model).spikes
    assert 0 < alif_spikes.sum() < lif_spikes.sum()  # adaptation lengthens the intervals


def test_hard_reset_sets_the_membrane_to_v_reset():
    model = HardResetLIF(decay=0.9, threshold=1.0, v_reset=-0.25)
    values = tuple(torch.tensor(float(getattr(model, n))) for n in model.param_names())
    out = reference_recurrence(torch.tensor([[[1.5]], [[0.1]]]), values, model)
    assert out.state.outer.item() == 0.0 and float(out.membrane[1]) == -0.25  # fired at step 0
    assert float(out.spikes[1]) == 1.0  # binary spikes by default


def test_learnable_parameters_of_any_model_train_and_stay_in_range():
    net = SpikingNetwork([3, 6, 2], [ALIF(learnable=True), LIF()], backend="fused")
    layer = net.layers[0]
    assert {n for n, _ in layer.named_parameters()} == {
        "linear.weight", "linear.bias", "decay", "threshold", "penalty", "adapt_decay", "adapt_gain",
    }  # fmt: skip
    with torch.no_grad():
        layer.adapt_decay.fill_(3.0)
    assert layer.neuron_values()[3].item() == 1.0  # clamped to the declared range
    net(torch.randn(5, 4, 3)).trace.sum().backward()
    assert layer.adapt_gain.grad is not None


README = Path(__file__).resolve().parents[1] / "README.md"


def readme_example(tmp_path: Path) -> list[Path]:
    """The README's "Add your own neuron" files, written where the README puts them."""
    text = README.read_text()
    written = []
    for match in re.finditer(r"<!-- example: (\S+) -->\n```\w+\n(.*?)```", text, re.S):
        path = tmp_path / match.group(1)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(match.group(2))
        written.append(path)
    return written


@pytest.mark.slow
def test_the_readme_neuron_example_trains_and_predicts(tmp_path):
    files = readme_example(tmp_path)
    assert [p.name for p in files] == ["my_neurons.py", "synaptic.yaml"]
    assert sum(len(p.read_text().splitlines()) for p in files) < 60
    env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))}
    run = tmp_path / "run"
    args = ["--config-dir", "myconf", "model/neuron=synaptic", "trainer.max_epochs=3", "data=iris"]
    result = run_cli("nmsnn-train", *args, f"hydra.run.dir={run}", "logger=none", cwd=tmp_path, env=env)
    assert "uses 'fused' for the synaptic neuron" in result.stdout + result.stderr
    assert "srun" not in result.stdout + result.stderr
    checkpoint = torch.load(run / "checkpoints" / "best.ckpt", weights_only=True)
    assert checkpoint["hyper_parameters"]["neuron"] == {
        "kind": "my_neurons.SynapticLIF", "learnable": False, "decay": 0.9, "syn_decay": 0.5,
        "threshold": 1.0, "surrogate_slope": 5.0,
    }  # fmt: skip
    assert "layers.0.syn_decay" in "".join(checkpoint["state_dict"])
    rows, out = tmp_path / "rows.csv", tmp_path / "predictions.csv"
    load_iris(as_frame=True).frame.drop(columns="target").head(5).to_csv(rows, index=False)
    predict = ["nmsnn-predict", f"ckpt_path={run / 'checkpoints' / 'best.ckpt'}", f"input_path={rows}"]
    refused = run_cli(*predict, f"output_path={out}", cwd=tmp_path, env=env, check=False)
    assert refused.returncode != 0 and "NMSNN_ALLOW_TARGETS=my_neurons.SynapticLIF" in refused.stderr
    assert not out.exists()
    run_cli(
        *predict,
        f"output_path={out}",
        cwd=tmp_path,
        env={**env, "NMSNN_ALLOW_TARGETS": "my_neurons.SynapticLIF"},
    )
    assert len(pd.read_csv(out)) == 5


@pytest.mark.parametrize("kind", ["alif", "lif_hard"])
def test_new_models_train_checkpoint_and_predict(tmp_path, kind):
    """``nmsnn-train model/neuron=KIND`` end to end in process: training, the tested checkpoint,
    and predictions from it equal to the trained module's."""
    cfg = compose_train(
        tmp_path, [f"model/neuron={kind}", "data=iris", "trainer.max_epochs=3", "logger=none"]
    )
    metrics = train(cfg)
    assert metrics["test/acc"] > 0.5
    loaded = load_checkpoint(tmp_path / "checkpoints" / "best.ckpt")
    assert type(loaded.module.model.network.layers[0].neuron) is NEURON_MODELS[kind]
    assert loaded.module.hparams.neuron == NEURON_MODELS[kind].settings()
    frame = load_iris(as_frame=True).frame.drop(columns="target")
    assert len(predict_frame(loaded.module, loaded.preprocessor, frame)) == 150


@pytest.mark.parametrize("kind", ["alif", "lif_hard"])
def test_estimators_take_any_neuron_model(kind):
    X, y = load_iris(return_X_y=True)
    clf = SpikingClassifier(neuron=kind, neuron_params={"decay": 0.8}, hidden=(16,), time_steps=6, epochs=3)
    clf.fit(X, y)
    assert type(clf.module_.model.network.layers[0].neuron) is NEURON_MODELS[kind]
    assert clf.module_.hparams.neuron["decay"] == 0.8
    assert clf.predict(X[:4]).shape == (4,)
    with pytest.raises(ConfigError, match="unknown neuron setting"):
        SpikingRegressor(neuron=kind, reset="scale", epochs=1).fit(X[::5], y[::5].astype(float))


def test_estimators_defaults_are_the_models_own():
    """The estimators declare no neuron default of their own: an estimator left at its defaults
    records exactly the ``lif`` model's settings."""
    X, y = load_iris(return_X_y=True)
    clf = SpikingClassifier(hidden=(8,), time_steps=4, epochs=1, steps=1).fit(X, y)
    assert clf.module_.hparams.neuron == LIF.settings()


def test_population_of_alif_members_computes_what_each_computes_alone():
    """Members differing in ALIF's own parameters share one stacked pass (its population-able
    keys come from the model's fields), with every member's outputs and gradients as alone."""
    torch.manual_seed(0)
    members = [
        SpikingModule(task="classification", num_inputs=4, num_outputs=3, hidden=[8],
                      neuron={"kind": "alif", "adapt_gain": g, "decay": d}, backend="fused")
        for g, d in ((0.1, 0.8), (0.6, 0.9))
    ]  # fmt: skip
    assert {
        "model.neuron.adapt_gain",
        "model.neuron.adapt_decay",
        "model.neuron.v_reset",
    } <= population_keys()
    inputs = [torch.randn(16, 5, 4) for _ in members]
    together = PopulationNetwork(members)(inputs)
    together.square().sum().backward()
    stacked = [[p.grad.clone() for p in m.parameters()] for m in members]
    for member, x, out, grads in zip(members, inputs, together, stacked):
        member.zero_grad()
        alone = member.model(x).prediction
        torch.testing.assert_close(out, alone, atol=1e-6, rtol=1e-6)
        alone.square().sum().backward()
        for p, g in zip(member.parameters(), grads):
            torch.testing.assert_close(p.grad, g, atol=1e-6, rtol=1e-6)
    other = SpikingModule(task="classification", num_inputs=4, num_outputs=3, hidden=[8],
                          neuron={"kind": "alif", "spike_fn": "heaviside"}, backend="fused")  # fmt: skip
    with pytest.raises(
        ConfigError, match=re.escape("model.neuron.spike_fn='heaviside' but member 0 has 'relu'")
    ):
        PopulationNetwork([members[0], other])


@pytest.mark.parametrize("kind", ["alif", "lif_hard"])
def test_new_models_export_to_torchscript_and_onnx(tmp_path, kind):
    ort = pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    dm = TabularDataModule(dataset="wine")
    dm.setup()
    module = SpikingModule(**dm.model_kwargs(), hidden=[16, 8], time_steps=8, neuron={"kind": kind}).eval()
    paths = export(module, dm.preprocessor, tmp_path)
    x = dm.tensors["test"].x
    want = module.predict_rows(x).numpy()
    with torch.no_grad():
        scripted = torch.jit.load(str(paths["torchscript"]))(x).numpy()
    (onnx,) = ort.InferenceSession(str(paths["onnx"])).run(None, {"rows": x.numpy()})
    np.testing.assert_allclose(scripted, want, atol=1e-5, rtol=0)
    np.testing.assert_allclose(onnx, want, atol=1e-5, rtol=0)


@pytest.mark.slow
def test_population_launcher_sweeps_alif_parameters(tmp_path):
    """``--multirun hydra/launcher=population model/neuron=alif model.neuron.adapt_gain=...``:
    the jobs differ only in an ALIF parameter, so they train as one population."""
    args = ["--multirun", "hydra/launcher=population", "model/neuron=alif", "model.neuron.adapt_gain=0.1,0.5"]
    run_cli("nmsnn-train", *args, "data=iris", "trainer.max_epochs=3", "logger=none", cwd=tmp_path)
    (sweep,) = (tmp_path / "logs" / "train" / "multiruns").iterdir()
    for job in ("0", "1"):
        status = json.loads((sweep / job / "job_status.json").read_text())
        assert status["status"] == "ok" and status["population"]["members"] == 2
    gains = [
        torch.load(sweep / job / "checkpoints" / "best.ckpt", weights_only=True)["hyper_parameters"]["neuron"]
        for job in ("0", "1")
    ]
    assert [g["adapt_gain"] for g in gains] == [0.1, 0.5] and {g["kind"] for g in gains} == {"alif"}


def test_an_option_may_pick_its_value_per_task():
    """LIF's spike_fn is declared once with its per-task choice: configs say auto, the module
    builds relu for classification and heaviside for regression, and a model cannot be built
    with auto left unresolved."""
    from nmsnn.core.layers import neuron_configs

    assert LIF.settings()["spike_fn"] == "auto" and LIF().spike_fn == "relu"
    assert LIF.resolve({"spike_fn": "auto", "decay": 0.8}, "regression") == {
        "spike_fn": "heaviside",
        "decay": 0.8,
    }
    assert LIF.resolve({"spike_fn": ["auto", "relu"]}, "regression") == {"spike_fn": ["heaviside", "relu"]}
    assert LIF.resolve({"spike_fn": "auto"}, None) == {"spike_fn": "relu"}
    with pytest.raises(ConfigError, match="spike_fn=auto picks a value per task"):
        LIF(spike_fn="auto")
    layers = neuron_configs({"kind": "lif", "spike_fn": "auto"}, 2, "regression")
    assert [m.spike_fn for m in layers] == ["heaviside", "heaviside"]
    assert "auto: relu for classification, heaviside for regression" in config_text(LIF)
