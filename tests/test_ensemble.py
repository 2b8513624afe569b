"""model.ensemble=K: K networks as one wider network, each member computing and learning alone."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from nmsnn.analysis.activity import ActivityAccumulator
from nmsnn.checkpoint import load_checkpoint
from nmsnn.core.backends import installed
from nmsnn.core.ensemble import GroupedLinear
from nmsnn.core.layers import SpikingNetwork, neuron_configs
from nmsnn.data.datamodule import TabularDataModule
from nmsnn.errors import ConfigError
from nmsnn.export import export
from nmsnn.lit.module import SpikingModule
from nmsnn.neuromorphic import nir_refusal
from nmsnn.pipeline import describe, train
from nmsnn.population.network import PopulationNetwork
from nmsnn.predicting import predict_frame
from tests.conftest import compose_train

SIZES = [5, 8, 6, 3]
K = 3
BACKENDS = [b for b in ("reference", "fused", "numba") if installed(b)]


def member_network(ensemble: SpikingNetwork, k: int, backend: str) -> SpikingNetwork:
    """A single network holding member ``k``'s weights of ``ensemble``."""
    single = SpikingNetwork(SIZES, neuron_configs({}, 3), backend=backend, init="torch")
    with torch.no_grad():
        for i, (mine, whole) in enumerate(zip(single.layers, ensemble.layers)):
            rows = slice(k * SIZES[i + 1], (k + 1) * SIZES[i + 1])
            weight = whole.linear.weight[rows] if i == 0 else whole.linear.blocks[k]
            mine.linear.weight.copy_(weight)
            mine.linear.bias.copy_(whole.linear.bias[rows])
    return single


@pytest.mark.parametrize("backend", BACKENDS)
def test_each_member_computes_and_learns_what_it_would_alone(backend):
    torch.manual_seed(0)
    ensemble = SpikingNetwork(SIZES, neuron_configs({}, 3), backend=backend, ensemble=K)
    assert [type(layer.linear).__name__ for layer in ensemble.layers] == [
        "Linear",
        "GroupedLinear",
        "GroupedLinear",
    ]
    x = torch.rand(12, 4, SIZES[0])
    trace = ensemble(x).trace
    assert trace.shape == (12, 4, K * SIZES[-1])
    for k in range(K):
        alone = member_network(ensemble, k, backend)(x).trace
        torch.testing.assert_close(trace[..., k * 3 : (k + 1) * 3], alone, rtol=1e-5, atol=1e-6)
    # a loss on member 1's outputs alone trains member 1 alone, through every backend's backward
    trace[..., 3:6].square().sum().backward()
    first, *grouped = ensemble.layers
    for k in (0, 2):
        assert torch.all(first.linear.weight.grad[k * 8 : (k + 1) * 8] == 0)
        assert all(torch.all(layer.linear.blocks.grad[k] == 0) for layer in grouped)
    assert first.linear.weight.grad[8:16].abs().sum() > 0
    assert all(layer.linear.blocks.grad[1].abs().sum() > 0 for layer in grouped)


def test_grouped_linear_is_block_diagonal_and_counts_its_own_synapses():
    layer = GroupedLinear(6, 4, 2)
    weight = layer.weight
    assert weight.shape == (4, 6) and torch.all(weight[:2, 3:] == 0) and torch.all(weight[2:, :3] == 0)
    with pytest.raises(ConfigError, match="do not split into 4 members"):
        GroupedLinear(6, 4, 4)
    network = SpikingNetwork([5, 8, 3], neuron_configs({}, 2), ensemble=2)
    accumulator = ActivityAccumulator(network)
    assert accumulator.fan_out == [16, 3]  # an input feeds every member; a spike its own member
    assert accumulator.macs_per_row == 5 * 16 + 2 * 8 * 3
    with pytest.raises(ConfigError, match=r"model\.ensemble must be an integer >= 1"):
        SpikingNetwork([5, 8, 3], neuron_configs({}, 2), ensemble=0)


@pytest.mark.parametrize("task, outputs", [("classification", 3), ("regression", 1)])
def test_the_loss_is_the_members_mean_and_predictions_their_average(task, outputs):
    torch.manual_seed(0)
    module = SpikingModule(task, 5, outputs, hidden=[8], ensemble=K, target_mean=2.0, target_std=3.0)
    x = torch.randn(6, 5)
    y = torch.randint(0, 3, (6,)) if task == "classification" else torch.randn(6)
    prediction = module(x).prediction
    assert prediction.shape == (6, K, outputs)
    members = [prediction[:, k] for k in range(K)]
    single = SpikingModule(task, 5, outputs, hidden=[8], target_mean=2.0, target_std=3.0)
    torch.testing.assert_close(
        module.loss(prediction, y), torch.stack([single.loss(p, y) for p in members]).mean()
    )
    torch.testing.assert_close(
        module.predict_values(prediction), torch.stack([single.predict_values(p) for p in members]).mean(0)
    )
    assert "an ensemble of 3" in describe(module)
    assert "model.ensemble=3" in nir_refusal(module)


def test_a_single_network_keeps_its_parameters_and_numbers():
    torch.manual_seed(0)
    plain = SpikingModule("classification", 5, 3, hidden=[8, 4])
    torch.manual_seed(0)
    one = SpikingModule("classification", 5, 3, hidden=[8, 4], ensemble=1)
    assert list(plain.state_dict()) == list(one.state_dict())
    assert all(torch.equal(a, b) for a, b in zip(plain.state_dict().values(), one.state_dict().values()))
    assert "model.network.layers.0.linear.weight" in plain.state_dict()


def test_population_members_may_be_ensembles():
    members = []
    for k, decay in enumerate([0.8, 0.95]):
        torch.manual_seed(k)
        members.append(SpikingModule("regression", 5, 1, hidden=[8, 6], ensemble=2, neuron={"decay": decay}))
    inputs = [m.encode(torch.randn(7, 5)) for m in members]
    predictions = PopulationNetwork(members)(inputs)
    for k, member in enumerate(members):
        torch.testing.assert_close(predictions[k], member(inputs[k]).prediction, rtol=1e-5, atol=1e-6)


def test_an_ensemble_trains_checkpoints_predicts_and_exports(tmp_path):
    csv = Path(__file__).parent / "fixtures" / "mixed_classification.csv"
    cfg = compose_train(
        tmp_path,
        [
            "data=csv",
            f"data.path={csv}",
            "data.target=label",
            "trainer.max_epochs=3",
            "model.ensemble=2",
            "logger=none",
        ],
    )
    metrics = train(cfg)
    loaded = load_checkpoint(tmp_path / "checkpoints" / "best.ckpt")
    assert loaded.module.hparams.ensemble == 2
    dm = TabularDataModule(path=str(csv), target="label", split_seed=0)
    dm.setup()
    rows = dm.split_frame("test")
    again = predict_frame(loaded.module, loaded.preprocessor, rows).reset_index(drop=True)
    written = pd.read_csv(tmp_path / "test_predictions.csv").drop(columns=["row", "label"])
    pd.testing.assert_frame_equal(again, written, check_exact=True)
    accuracy = (again["prediction"].to_numpy() == rows["label"].to_numpy()).mean()
    assert accuracy == pytest.approx(metrics["test/acc"], abs=1e-6)
    paths = export(loaded.module, loaded.preprocessor, tmp_path / "export")
    x = torch.from_numpy(loaded.preprocessor.transform(rows))
    expected = loaded.module.predict_rows(x).numpy()
    with torch.no_grad():
        np.testing.assert_allclose(torch.jit.load(str(paths["torchscript"]))(x).numpy(), expected, atol=1e-5)
    ort = pytest.importorskip("onnxruntime")
    (got,) = ort.InferenceSession(str(paths["onnx"])).run(None, {"rows": x.numpy()})
    np.testing.assert_allclose(got, expected, atol=1e-5)
