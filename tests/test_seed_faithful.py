"""model=pynmsnn_binary / pynmsnn_multiclass reproduce the original per-step algorithm exactly."""

from __future__ import annotations

import pytest
import torch
from hydra.utils import instantiate

from tests.conftest import compose_train
from tests.reference_original import OriginalSpikingLayer, original_forward


@pytest.mark.parametrize(("model", "reduce"), [("pynmsnn_binary", "sum"), ("pynmsnn_multiclass", "mean")])
@pytest.mark.parametrize("reset", ["scale", "subtract"])
def test_framework_equals_original_per_step_network(tmp_path, model, reduce, reset):
    cfg = compose_train(tmp_path, [f"model={model}", f"model.neuron.reset={reset}", "model.time_steps=40"])
    assert cfg.model.reduce == reduce and cfg.model.readout == "membrane"
    torch.manual_seed(0)
    # float64: a float32 rounding difference between one GEMM over all steps and one per step
    # can flip a threshold gate and change a gradient; in float64 the two agree to ~1e-12.
    module = instantiate(cfg.model, task="classification", num_inputs=6, num_outputs=3).double()
    layers = [
        OriginalSpikingLayer(
            layer.linear,
            float(layer.decay),
            float(layer.threshold),
            float(layer.penalty),
            reset,
            torch.float64,
        )
        for layer in module.model.network.layers
    ]
    assert [float(layer.decay) for layer in layers] == pytest.approx([0.9, 0.9])
    assert [float(layer.penalty) for layer in layers] == pytest.approx([1.5, 1.5])
    x = torch.randn(5, 6, dtype=torch.float64) * 3
    noise = torch.rand(40, 5, 6, dtype=torch.float64)

    ours = module(x.unsqueeze(0) * noise).prediction
    grads_ours = torch.autograd.grad(ours.square().sum(), list(module.model.network.parameters()))
    theirs = original_forward(layers, x, noise, reduce)
    grads_theirs = torch.autograd.grad(theirs.square().sum(), list(module.model.network.parameters()))

    assert (module(x.unsqueeze(0) * noise).network.layers[0].spikes > 0).any(), "hidden layer must fire"
    torch.testing.assert_close(ours, theirs, rtol=1e-9, atol=1e-9)
    for g_ours, g_theirs in zip(grads_ours, grads_theirs):
        torch.testing.assert_close(g_ours, g_theirs, rtol=1e-9, atol=1e-9)


def test_seed_models_use_the_original_encoding_and_init(tmp_path):
    cfg = compose_train(tmp_path, ["model=pynmsnn_binary"])
    assert cfg.model.encoder == "uniform_noise" and cfg.model.init == "torch"
    assert cfg.model.time_steps == 500 and cfg.model.hidden == [64]
    assert dict(cfg.model.neuron)["reset"] == "scale"


@pytest.mark.parametrize("experiment", ["seed_binary", "seed_iris", "seed_house"])
def test_seed_experiments_keep_the_original_optimizer(tmp_path, experiment):
    """The tuned default's weight decay must not leak into the original settings."""
    cfg = compose_train(tmp_path, [f"experiment={experiment}"])
    assert cfg.model.optimizer.weight_decay == 0.0 and cfg.model.optimizer.lr == 0.001
