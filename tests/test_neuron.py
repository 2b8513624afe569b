"""The neuron recurrence: validation, the three step parts, every backend against the reference."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from nmsnn.core.backends import cpu_backends, get_backend
from nmsnn.core.neuron import NeuronState, reference_recurrence
from nmsnn.core.neurons import LIF
from nmsnn.core.surrogate import surrogate_grad
from nmsnn.errors import ConfigError


def per_step(current, decay, threshold, penalty, config):
    """DESIGN.md's formulas, one line each, with plain Python state."""
    inner = torch.zeros_like(current[0])
    prev_outer = torch.zeros_like(current[0])
    outs, mems = [], []
    for t in range(current.shape[0]):
        outs.append(prev_outer)
        mems.append(inner)
        inner = current[t] + decay * inner
        v = inner - threshold
        outer = torch.relu(v) if config.spike_fn == "relu" else (v > 0).float()
        gate = (outer > 0).float()
        if config.reset == "subtract":
            inner = inner - (penalty + outer) * gate
        else:
            inner = inner - (penalty / threshold) * inner * gate
        prev_outer = outer
    return torch.stack(outs), torch.stack(mems)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"decay": 0.0}, "decay must be in (0, 1]"),
        ({"decay": 1.5}, "decay must be in (0, 1]"),
        ({"threshold": 0.0}, "threshold must be > 0"),
        ({"threshold": -1.0}, "threshold must be > 0"),
        ({"penalty": -0.1}, "penalty must be a finite number >= 0"),
        ({"decay": float("nan")}, "decay must be a number"),
        ({"decay": "high"}, "decay must be a number"),
        ({"reset": "zero"}, "not a reset mode"),
        ({"spike_fn": "tanh"}, "not a spike function"),
        ({"surrogate_slope": 0.0}, "surrogate_slope"),
    ],
)
def test_invalid_neuron_parameters_are_rejected(kwargs, message):
    with pytest.raises(ConfigError) as err:
        LIF(**kwargs)
    assert message in str(err.value)


def test_decay_one_and_penalty_zero_are_valid():
    LIF(decay=1.0, penalty=0.0)


@pytest.mark.parametrize("reset", ["subtract", "scale"])
@pytest.mark.parametrize("spike_fn", ["relu", "heaviside"])
def test_reference_matches_the_formulas(reset, spike_fn):
    torch.manual_seed(0)
    config = LIF(decay=0.8, threshold=0.7, penalty=0.4, reset=reset, spike_fn=spike_fn)
    current = torch.randn(12, 5, 7) * 1.5
    params = [torch.tensor(v) for v in (0.8, 0.7, 0.4)]
    out = reference_recurrence(current, params, config)
    spikes, membrane = per_step(current, *params, config)
    torch.testing.assert_close(out.spikes, spikes)
    torch.testing.assert_close(out.membrane, membrane)
    assert torch.all(out.spikes[0] == 0) and torch.all(out.membrane[0] == 0)  # one-step delay
    assert (out.spikes > 0).any(), "the test input should make neurons fire"


def test_streaming_state_continues_a_sequence():
    torch.manual_seed(1)
    config = LIF()
    params = [torch.tensor(v) for v in (0.9, 1.0, 1.5)]
    current = torch.randn(20, 3, 4) * 2
    whole = reference_recurrence(current, params, config)
    first = reference_recurrence(current[:7], params, config)
    second = reference_recurrence(current[7:], params, config, state=first.state)
    torch.testing.assert_close(torch.cat([first.spikes, second.spikes]), whole.spikes)
    torch.testing.assert_close(torch.cat([first.membrane, second.membrane]), whole.membrane)
    assert isinstance(whole.state, NeuronState)


def test_heaviside_surrogate_gradient():
    v = torch.tensor([-1.0, -0.1, 0.0, 0.2, 2.0], requires_grad=True)
    from nmsnn.core.surrogate import spike

    out = spike(v, "heaviside", 5.0)
    assert out.tolist() == [0.0, 0.0, 0.0, 1.0, 1.0]
    out.sum().backward()
    torch.testing.assert_close(v.grad, 1 / (1 + 5 * v.detach().abs()) ** 2)
    torch.testing.assert_close(surrogate_grad(torch.tensor(0.0), 5.0), torch.tensor(1.0))


def test_unknown_backend_is_a_config_error():
    with pytest.raises(ConfigError, match="backend='nope' is not available"):
        get_backend("nope")


@pytest.mark.parametrize("backend", cpu_backends())
@settings(max_examples=25, deadline=None)
@given(
    steps=st.integers(1, 12),
    batch=st.integers(1, 4),
    hidden=st.integers(1, 6),
    decay=st.floats(0.05, 1.0),
    threshold=st.floats(0.05, 2.0),
    penalty=st.floats(0.0, 2.0),
    reset=st.sampled_from(["subtract", "scale"]),
    spike_fn=st.sampled_from(["relu", "heaviside"]),
    seed=st.integers(0, 2**16),
)
def test_backends_match_reference_values_and_gradients(
    backend, steps, batch, hidden, decay, threshold, penalty, reset, spike_fn, seed
):
    torch.manual_seed(seed)
    config = LIF(decay=decay, threshold=threshold, penalty=penalty, reset=reset, spike_fn=spike_fn)
    current = (torch.randn(steps, batch, hidden, dtype=torch.float64) * 2).requires_grad_()
    params = [torch.tensor(v, dtype=torch.float64, requires_grad=True) for v in (decay, threshold, penalty)]
    weights = torch.randn(2, steps, batch, hidden, dtype=torch.float64)

    def run(fn):
        out = fn(current, params, config)
        loss = (out.spikes * weights[0]).sum() + (out.membrane * weights[1]).sum()
        loss = loss + 0 * current.sum()  # T=1 emits only the zero initial state
        grads = torch.autograd.grad(loss, [current, *params], allow_unused=True)
        return out, grads

    ref, ref_grads = run(reference_recurrence)
    got, got_grads = run(get_backend(backend))
    torch.testing.assert_close(got.spikes, ref.spikes, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got.membrane, ref.membrane, atol=1e-5, rtol=1e-5)
    for g, r in zip(got_grads, ref_grads):
        if r is None:
            assert g is None or torch.all(g == 0)
        else:
            torch.testing.assert_close(g, r, atol=1e-5, rtol=1e-5)


def test_reference_gradient_matches_finite_differences():
    torch.manual_seed(3)
    config = LIF(decay=0.7, threshold=0.5, penalty=0.3, reset="scale")
    current = (torch.randn(6, 2, 3, dtype=torch.float64) * 2).requires_grad_()
    params = [torch.tensor(v, dtype=torch.float64, requires_grad=True) for v in (0.7, 0.5, 0.3)]

    def fn(c, d, th, p):
        out = reference_recurrence(c, (d, th, p), config)
        return out.spikes.sum() + out.membrane.square().sum()

    # the gate is piecewise constant: gradcheck holds away from the threshold crossings
    assert torch.autograd.gradcheck(fn, (current, *params), eps=1e-7, atol=1e-4)
    assert math.isfinite(float(fn(current, *params)))
