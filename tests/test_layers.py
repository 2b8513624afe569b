"""Spiking layers and networks: shapes, readouts, the head, initialization that keeps firing."""

from __future__ import annotations

import pytest
import torch

from nmsnn.core.backends import installed
from nmsnn.core.encoders import build_encoder
from nmsnn.core.layers import SpikingModel, SpikingNetwork, TimeAverageHead, neuron_configs
from nmsnn.core.neuron import reference_recurrence
from nmsnn.errors import ConfigError
from nmsnn.lit.module import SpikingModule
from nmsnn.population.network import PopulationNetwork


def test_layer_applies_linear_to_all_steps_then_the_recurrence():
    torch.manual_seed(0)
    net = SpikingNetwork([4, 6], neuron_configs({"decay": 0.8}, 1), readout="spikes", init="torch")
    layer = net.layers[0]
    x = torch.randn(9, 3, 4)
    out = layer(x)
    current = torch.stack([layer.linear(x[t]) for t in range(9)])
    expected = reference_recurrence(current, layer.neuron_values(), layer.neuron)
    torch.testing.assert_close(out.spikes, expected.spikes)
    torch.testing.assert_close(out.membrane, expected.membrane)


@pytest.mark.parametrize("readout", ["integrator", "membrane", "spikes"])
def test_network_shapes_and_readouts(readout):
    net = SpikingNetwork([5, 8, 7, 3], neuron_configs({}, 3), readout=readout)
    out = net(torch.randn(10, 4, 5))
    assert out.trace.shape == (10, 4, 3)
    assert [o.spikes.shape for o in out.layers] == [(10, 4, 8), (10, 4, 7), (10, 4, 3)]
    last = out.layers[-1]
    assert torch.equal(out.trace, last.spikes if readout == "spikes" else last.membrane)
    if readout == "integrator":
        assert not net.layers[-1].fires and torch.all(last.spikes == 0)


def test_head_averages_after_burn_in():
    trace = torch.arange(10.0).view(10, 1, 1).expand(10, 2, 3)
    assert torch.all(TimeAverageHead(burn_in=4)(trace) == 6.5)
    assert torch.all(TimeAverageHead(burn_in=8, reduce="sum")(trace) == 17.0)
    with pytest.raises(ConfigError, match="leaves no time step"):
        TimeAverageHead(burn_in=10)(trace)
    with pytest.raises(ConfigError, match="burn_in must be an integer"):
        TimeAverageHead(burn_in=-1)
    with pytest.raises(ConfigError, match="not a reduction"):
        TimeAverageHead(reduce="max")


def test_per_layer_neuron_values_and_errors():
    configs = neuron_configs({"decay": [0.9, 0.5], "threshold": 2.0}, 2)
    assert [c.decay for c in configs] == [0.9, 0.5] and all(c.threshold == 2.0 for c in configs)
    with pytest.raises(ConfigError, match="has 3 values but the network has 2 layers"):
        neuron_configs({"decay": [0.9, 0.5, 0.1]}, 2)
    with pytest.raises(ConfigError, match="layer 2: decay must be in"):
        neuron_configs({"decay": [0.9, 1.5]}, 2)
    with pytest.raises(ConfigError, match="unknown neuron setting"):
        neuron_configs({"tau": 3}, 2)


def test_learnable_parameters_get_gradients():
    module = SpikingModule("classification", 4, 2, neuron={"learnable": True}, time_steps=12)
    out = module(torch.randn(16, 4) * 2).prediction
    out.square().sum().backward()
    layer = module.model.network.layers[0]
    for name in ("decay", "threshold", "penalty"):
        param = getattr(layer, name)
        assert isinstance(param, torch.nn.Parameter) and param.grad is not None
    assert layer.decay.grad.abs() > 0 and layer.threshold.grad.abs() > 0


def firing_rates(module: SpikingModule, x: torch.Tensor) -> list[float]:
    out = module(x).network
    return [float((layer.spikes > 0).float().mean()) for layer in out.layers[:-1]]


def test_default_deep_network_fires_in_every_layer_and_has_gradients():
    torch.manual_seed(0)
    module = SpikingModule("classification", 64, 10, hidden=[512, 512, 512])
    x = torch.randn(128, 64)  # standardized inputs
    rates = firing_rates(module, x)
    assert all(r > 0.02 for r in rates), rates
    loss = torch.nn.functional.cross_entropy(module(x).prediction, torch.randint(0, 10, (128,)))
    loss.backward()
    for layer in module.model.network.layers:
        assert layer.linear.weight.grad.abs().sum() > 0


def test_plain_torch_init_goes_silent_where_calibrated_init_fires():
    """The failure the calibrated init exists for: 64 -> 512 -> 512 -> 10, seed defaults."""
    torch.manual_seed(0)
    x = torch.randn(128, 64)
    plain = SpikingModule("classification", 64, 10, hidden=[512, 512], init="torch", readout="spikes")
    calibrated = SpikingModule("classification", 64, 10, hidden=[512, 512], readout="spikes")
    assert firing_rates(plain, x)[-1] < 0.005
    assert min(firing_rates(calibrated, x)) > 0.02


def test_model_rejects_burn_in_beyond_time_steps():
    net = SpikingNetwork([3, 2], neuron_configs({}, 1))
    with pytest.raises(ConfigError, match="burn_in=8 must be smaller than time_steps=8"):
        SpikingModel(build_encoder("direct", 8), net, TimeAverageHead(burn_in=8))


def test_predictions_are_deterministic_in_eval():
    module = SpikingModule("classification", 5, 3)
    x = torch.randn(50, 5)
    first = module.predict_rows(x)
    assert torch.equal(module.predict_rows(x), first)
    # another batch order: same encoding; the GEMM may round differently in the last bits
    torch.testing.assert_close(module.predict_rows(x.flip(0)), first.flip(0))
    torch.testing.assert_close(first.sum(1), torch.ones(50))


@pytest.mark.skipif(not installed("numba"), reason="numba is not installed")
def test_bias_added_in_the_numba_node_rounds_as_the_linear_and_as_a_population_member():
    """numba adds a layer's bias inside its node (the Linear computes ``x @ W.T`` only): the
    current is rounded as ``(x @ W.T) + b``, which for these widths is bitwise what ``addmm``
    gives, and a population member (whose Linear adds its bias outside) computes bitwise the
    same predictions and gradients, for an unfolded (24 -> 20) and a folded (20 -> 3) layer."""
    members = []
    for k, decay in enumerate([0.8, 0.9]):
        torch.manual_seed(k)
        member = SpikingModule("classification", 5, 3, hidden=[24, 20], neuron={"decay": decay})
        with torch.no_grad():
            for layer in member.model.network.layers:
                layer.linear.bias.uniform_(-0.5, 0.5)
        members.append(member)
    inputs = [m.encode(torch.randn(7, 5)) for m in members]
    targets = [torch.randint(0, 3, (7,)) for _ in members]
    params = [list(m.parameters()) for m in members]
    predictions = PopulationNetwork(members)(inputs)
    total = sum(m.loss(predictions[k], targets[k]) for k, m in enumerate(members))
    together = torch.autograd.grad(total, [p for ps in params for p in ps])
    alone = [m(x).prediction for m, x in zip(members, inputs)]
    losses = [m.loss(a, y) for m, a, y in zip(members, alone, targets)]
    separate = [g for loss, ps in zip(losses, params) for g in torch.autograd.grad(loss, ps)]
    assert all(torch.equal(a, p) for a, p in zip(alone, predictions.detach()))
    assert len(separate) == len(together) and all(map(torch.equal, separate, together))
    # against the bias added by addmm (the fused backend's path), bitwise at these widths
    net = members[0].model.network
    reference = SpikingNetwork([5, 24, 20, 3], [layer.neuron for layer in net.layers], backend="fused")
    reference.load_state_dict(net.state_dict())
    x = inputs[0]
    got, want = net(x), reference(x)
    assert type(got.layers[0].spikes.grad_fn).__name__ == "FoldedRecurrenceBackward"
    for g, w in zip(got.layers, want.layers):
        assert torch.equal(g.spikes, w.spikes)
