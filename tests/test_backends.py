"""Fast recurrence backends: agreement with the reference, saved memory, ``auto``'s choices.

Triton's kernels run here in its CPU interpreter, which needs ``TRITON_INTERPRET=1`` before triton
is first imported (importing lightning imports it). ``conftest.py`` sets it and imports triton
and the kernels first; where triton still runs without it (``TRITON_INTERPRET=0`` in the environment),
``test_triton_in_a_fresh_interpreter`` reruns the Triton cases in a subprocess.
"""

from __future__ import annotations

import logging
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import nmsnn.core.backends as backends
from nmsnn.core.backends import (
    auto_choice,
    cpu_backends,
    get_backend,
    installed,
    reset_auto,
    triton_runs_on_cpu,
)
from nmsnn.core.layers import SpikingNetwork
from nmsnn.core.neuron import NeuronState, reference_recurrence
from nmsnn.core.neurons import LIF
from nmsnn.errors import ConfigError

FAST = [b for b in cpu_backends() if b != "reference"]


def _case(steps, batch, hidden, decay, threshold, penalty, per_neuron, with_state, dtype, seed):
    g = torch.Generator().manual_seed(seed)
    current = (torch.randn(steps, batch, hidden, generator=g, dtype=dtype) * 2).requires_grad_()
    shape = (hidden,) if per_neuron else ()

    def param(value, spread):
        base = torch.full(shape, value, dtype=dtype)
        if per_neuron:
            base = base * (1 + spread * torch.rand(shape, generator=g, dtype=dtype))
        return base

    decay_t = param(decay, -0.5).requires_grad_()
    threshold_t = param(threshold, 0.5)
    if math.isfinite(threshold):
        threshold_t.requires_grad_()
    penalty_t = param(penalty, 0.5).requires_grad_()
    state = None
    if with_state:
        inner = (torch.randn(batch, hidden, generator=g, dtype=dtype) * 2).requires_grad_()
        outer = torch.rand(batch, hidden, generator=g, dtype=dtype).requires_grad_()
        state = NeuronState(inner, outer)
    weights = torch.randn(4, steps, batch, hidden, generator=g, dtype=dtype)
    return current, (decay_t, threshold_t, penalty_t), state, weights


def _check(got, ref, n_params, exact=None):
    """Outputs and per-element gradients within 1e-5; decay/threshold/penalty gradients are sums
    over every neuron-step, whose float32 rounding depends on the summation order: 1e-4 there.

    ``exact``: the reference's gradients evaluated in float64 on the same (float32) inputs. A
    float32 parameter gradient summed from terms much larger than itself (a large surrogate gain
    with a small threshold: terms of 1e4 summing to ~4) carries a rounding error of the size of
    the terms' ulp in the reference too; there it passes when it is within 1e-4 of the float64
    value or no further from it than twice the float32 reference is."""
    for name, g, r in zip(["spikes", "membrane", "inner", "outer"], got[0], ref[0]):
        torch.testing.assert_close(g, r, atol=1e-5, rtol=1e-5, msg=lambda m, n=name: f"{n}: {m}")
    for i, (g, r) in enumerate(zip(got[1], ref[1])):
        tol = 1e-4 if 1 <= i <= n_params and r.dtype == torch.float32 else 1e-5
        if tol == 1e-4 and exact is not None:
            truth = exact[i]
            allowed = torch.maximum(2 * (r.double() - truth).abs(), 1e-4 + 1e-4 * truth.abs())
            worst = ((g.double() - truth).abs() - allowed).max()
            assert worst <= 0, f"gradient {i}: {worst} beyond the float32 reference's own error"
            continue
        torch.testing.assert_close(g, r, atol=tol, rtol=tol, msg=lambda m, i=i: f"gradient {i}: {m}")


def _float64(case):
    """The same case (the same float32 values) in float64."""
    current, params, state, weights = case

    def d(t):
        return t.detach().double().requires_grad_(t.requires_grad)

    state = None if state is None else NeuronState(d(state.inner), d(state.outer))
    return d(current), tuple(d(p) for p in params), state, weights.double()


def _run(fn, current, params, state, weights, config):
    out = fn(current, params, config, state)
    loss = (out.spikes * weights[0]).sum() + (out.membrane * weights[1]).sum()
    loss = loss + (out.state.inner * weights[2, 0]).sum() + (out.state.outer * weights[3, 0]).sum()
    inputs = [current, *(p for p in params if p.requires_grad)]
    if state is not None:
        inputs += [state.inner, state.outer]
    grads = torch.autograd.grad(loss, inputs, allow_unused=True)
    grads = [torch.zeros_like(x) if gr is None else gr for x, gr in zip(inputs, grads)]
    return [out.spikes, out.membrane, out.state.inner, out.state.outer], grads


@pytest.mark.parametrize("backend", FAST)
@settings(max_examples=30, deadline=None)
@given(
    steps=st.integers(1, 40),
    batch=st.integers(1, 5),
    hidden=st.integers(1, 40),
    decay=st.floats(0.05, 1.0),
    threshold=st.one_of(st.floats(0.05, 2.0), st.just(math.inf)),
    penalty=st.floats(0.0, 2.0),
    reset=st.sampled_from(["subtract", "scale"]),
    spike_fn=st.sampled_from(["relu", "heaviside"]),
    per_neuron=st.booleans(),
    with_state=st.booleans(),
    dtype=st.sampled_from([torch.float32, torch.float64]),
    seed=st.integers(0, 2**16),
)
def test_backend_matches_reference(
    backend,
    steps,
    batch,
    hidden,
    decay,
    threshold,
    penalty,
    reset,
    spike_fn,
    per_neuron,
    with_state,
    dtype,
    seed,
):
    if backend == "triton":  # the interpreter is slow: keep its cases small
        steps, batch, hidden = min(steps, 12), min(batch, 3), min(hidden, 12)
    config = LIF(reset=reset, spike_fn=spike_fn)
    case = _case(steps, batch, hidden, decay, threshold, penalty, per_neuron, with_state, dtype, seed)
    ref = _run(reference_recurrence, *case, config)
    got = _run(get_backend(backend), *case, config)
    exact = _run(reference_recurrence, *_float64(case), config)[1] if dtype == torch.float32 else None
    _check(got, ref, sum(p.requires_grad for p in case[1]), exact)


@pytest.mark.parametrize("backend", FAST)
def test_backend_long_sequence_float32(backend):
    """T=300 at the seed's width: one flipped gate would show; the loss sums every step."""
    if backend == "triton":
        pytest.skip("too slow for Triton's interpreter")
    config = LIF(decay=0.9, threshold=1.0, penalty=1.5, reset="scale")
    case = _case(300, 8, 64, 0.9, 1.0, 1.5, False, False, torch.float32, 7)
    ref = _run(reference_recurrence, *case, config)
    got = _run(get_backend(backend), *case, config)
    _check(got, ref, 3)


@pytest.mark.parametrize("backend", FAST)
def test_backend_inference_and_streaming(backend):
    """Without grad nothing is saved; chunks with the state carried over equal one long call."""
    config = LIF(reset="subtract", spike_fn="heaviside")
    params = [torch.tensor(v) for v in (0.8, 0.6, 0.3)]
    current = torch.randn(20, 3, 5) * 2
    fn = get_backend(backend)
    with torch.no_grad():
        whole = fn(current, params, config)
        first = fn(current[:8], params, config)
        second = fn(current[8:], params, config, first.state)
    ref = reference_recurrence(current, params, config)
    torch.testing.assert_close(whole.spikes, ref.spikes)
    torch.testing.assert_close(whole.membrane, ref.membrane)
    torch.testing.assert_close(torch.cat([first.spikes, second.spikes]), ref.spikes)
    torch.testing.assert_close(second.state.inner, ref.state.inner)


@pytest.mark.parametrize("backend", FAST)
@pytest.mark.parametrize("readout", ["integrator", "membrane"])
def test_network_with_backend_matches_reference(backend, readout):
    """A whole network (learnable neurons, a non-firing integrator readout) trains identically."""
    torch.manual_seed(0)
    neurons = [LIF(learnable=True, reset="scale"), LIF(learnable=True)]
    nets = {
        b: SpikingNetwork([6, 16, 3], neurons, readout=readout, backend=b) for b in ("reference", backend)
    }
    nets[backend].load_state_dict(nets["reference"].state_dict())
    x = torch.randn(10, 4, 6) * 2
    grads = {}
    for name, net in nets.items():
        trace = net(x).trace
        trace.square().sum().backward()
        grads[name] = (trace.detach(), {k: p.grad for k, p in net.named_parameters()})
    ref_trace, ref_grads = grads["reference"]
    trace, got_grads = grads[backend]
    torch.testing.assert_close(trace, ref_trace)
    for key, g in ref_grads.items():
        torch.testing.assert_close(got_grads[key], g, atol=1e-4, rtol=1e-5, msg=lambda m, k=key: f"{k}: {m}")


@pytest.mark.skipif(not installed("numba"), reason="numba is not installed")
def test_numba_bfloat16_runs_in_float32():
    config = LIF()
    params = [torch.tensor(v) for v in (0.9, 1.0, 1.5)]
    current = (torch.randn(30, 4, 8) * 2).to(torch.bfloat16).requires_grad_()
    out = get_backend("numba")(current, params, config)
    assert out.spikes.dtype == torch.bfloat16
    out.membrane.float().sum().backward()
    assert current.grad.dtype == torch.bfloat16
    # like torch's own mixed-dtype ops, the parameters take the current's dtype
    ref = get_backend("fused")(current.detach().float(), tuple(p.bfloat16().float() for p in params), config)
    torch.testing.assert_close(out.membrane.float(), ref.membrane, atol=0.05, rtol=0.02)


def _saved_bytes(fn, *args) -> int:
    """Bytes of distinct tensors autograd keeps for backward while ``fn`` runs."""
    seen: dict[tuple[int, int], int] = {}

    def pack(t):
        seen[(t.untyped_storage().data_ptr(), t.storage_offset())] = t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn(*args)
    return sum(seen.values())


@pytest.mark.parametrize("backend", [b for b in FAST if b != "triton"])
def test_fused_backward_saves_one_number_per_neuron_step(backend):
    steps, batch, hidden = 50, 4, 32
    config = LIF(reset="scale")
    current = torch.randn(steps, batch, hidden).requires_grad_()
    params = [torch.tensor(v, requires_grad=True) for v in (0.9, 1.0, 1.5)]
    fused = _saved_bytes(get_backend(backend), current, params, config)
    reference = _saved_bytes(reference_recurrence, current, params, config)
    one_per_step = steps * batch * hidden * 4
    assert fused <= one_per_step + 8 * batch * hidden * 4  # a_t, plus [N] parameters and state
    assert reference >= 3 * fused, (reference, fused)


def test_auto_uses_numba_on_cpu_when_installed(monkeypatch, caplog):
    monkeypatch.setattr(backends, "installed", lambda name: True)
    reset_auto()
    with caplog.at_level(logging.INFO, logger="nmsnn.core.backends"):
        assert auto_choice("cpu") == "numba"
        assert auto_choice("cuda") == "triton"
    assert "uses 'numba'" in caplog.text
    reset_auto()


def test_auto_falls_back_when_not_installed(monkeypatch, caplog):
    monkeypatch.setattr(backends, "installed", lambda name: name not in ("numba", "triton"))
    reset_auto()
    with caplog.at_level(logging.INFO, logger="nmsnn.core.backends"):
        assert auto_choice("cpu") == "fused"
        assert auto_choice("cuda") == "fused"
        assert auto_choice("mps") == "fused"
    assert "numba is not installed" in caplog.text and "triton is not installed" in caplog.text
    reset_auto()


def test_auto_falls_back_when_the_compiled_backend_fails(monkeypatch, caplog):
    def broken(*args, **kwargs):
        raise RuntimeError("compilation failed")

    monkeypatch.setattr(backends, "installed", lambda name: True)
    monkeypatch.setitem(backends.BACKENDS, "numba", broken)
    reset_auto()
    config = LIF()
    params = [torch.tensor(v) for v in (0.9, 1.0, 1.5)]
    current = torch.randn(6, 2, 3) * 2
    with caplog.at_level(logging.WARNING, logger="nmsnn.core.backends"):
        out = get_backend("auto")(current, params, config)
    assert "numba failed (RuntimeError: compilation failed)" in caplog.text
    assert auto_choice("cpu") == "fused"
    torch.testing.assert_close(out.spikes, reference_recurrence(current, params, config).spikes)
    # with the hints too: the failure comes before any kernel ran, so the current is intact
    reset_auto()
    mine = current.clone().requires_grad_()
    out = get_backend("auto")(mine * 1.0, params, config, None, record=False, consume=True)
    assert out.membrane is None and auto_choice("cpu") == "fused"
    torch.testing.assert_close(out.spikes, reference_recurrence(current, params, config).spikes)
    reset_auto()


def test_missing_optional_backend_is_a_config_error(monkeypatch):
    monkeypatch.setattr(backends, "installed", lambda name: name != "numba")
    with pytest.raises(ConfigError, match=r"needs the numba package.*nmsnn\[fast\]"):
        get_backend("numba")


@pytest.mark.skipif(not installed("numba"), reason="numba is not installed")
def test_numba_rejects_non_cpu_tensors():
    from nmsnn.core.backends.numba_cpu import numba_recurrence

    current = torch.randn(3, 2, 2, device="meta")
    with pytest.raises(RuntimeError, match="runs on CPU tensors"):
        numba_recurrence(current, tuple(torch.tensor(v) for v in (0.9, 1.0, 1.5)), LIF())


MODELS_TESTS = str(Path(__file__).with_name("test_neuron_models.py"))


@pytest.mark.skipif(
    not installed("triton") or triton_runs_on_cpu(), reason="triton absent, or its cases ran in-process"
)
def test_triton_in_a_fresh_interpreter():
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    pytest_args = ["-q", "-p", "no:cacheprovider", __file__, MODELS_TESTS, "-k", "triton"]
    result = subprocess.run(
        [sys.executable, "-m", "pytest", *pytest_args],
        cwd=Path(__file__).parents[1],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert " passed" in result.stdout


@pytest.mark.skipif(not installed("numba") or not hasattr(os, "fork"), reason="numba absent or no fork")
def test_numba_thread_split_works_in_a_forked_child():
    """The thread pool is per process: a forked child (e.g. a ``ddp_fork`` worker) makes its own."""
    from nmsnn.core.backends.numba_cpu import run_split

    def covered() -> list[tuple[int, int]]:
        ranges: list[tuple[int, int]] = []
        run_split(lambda lo, hi: ranges.append((lo, hi)), (), 1 << 20, 1024, threads=2)
        return sorted(ranges)

    assert covered() == [(0, 512), (512, 1024)]  # creates the pool in this process
    pid = os.fork()
    if pid == 0:  # child: must not wait forever on the parent's pool, whose threads are gone
        signal.alarm(30)
        os._exit(0 if covered() == [(0, 512), (512, 1024)] else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


@pytest.mark.skipif(not installed("numba"), reason="numba is not installed")
@settings(max_examples=25, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 24), min_size=3, max_size=4),
    steps=st.integers(2, 40),  # at T=1 the delayed outputs are the initial state: no graph
    batch=st.integers(1, 6),
    reset=st.sampled_from(["subtract", "scale"]),
    spike_fn=st.sampled_from(["relu", "heaviside"]),
    learnable=st.booleans(),
    readout=st.sampled_from(["integrator", "membrane", "spikes"]),
    record=st.booleans(),
    dtype=st.sampled_from([torch.float32, torch.float64]),
    seed=st.integers(0, 2**16),
)
def test_folded_layers_match_the_reference(
    sizes, steps, batch, reset, spike_fn, learnable, readout, record, dtype, seed
):
    """numba folds a layer with a small next Linear into one node: same trace, activity and
    gradients as the reference, whatever the widths (multiples of 16 or not), depth and neuron."""
    torch.manual_seed(seed)
    neurons = [LIF(learnable=learnable, reset=reset, spike_fn=spike_fn)] * (len(sizes) - 1)
    nets = {
        b: SpikingNetwork(sizes, neurons, readout=readout, backend=b).to(dtype)
        for b in ("reference", "numba")
    }
    with torch.no_grad():  # non-zero biases: numba adds each layer's bias inside its node
        for layer in nets["reference"].layers:
            layer.linear.bias.uniform_(-0.5, 0.5)
    nets["numba"].load_state_dict(nets["reference"].state_dict())
    nets["numba"].record_hidden = record
    x = torch.randn(steps, batch, sizes[0], dtype=dtype) * 2
    results = {}
    for name, net in nets.items():
        out = net(x)
        (out.trace.square().sum() + out.trace.sum()).backward()
        results[name] = out, {k: p.grad for k, p in net.named_parameters()}
    (ref, ref_grads), (got, got_grads) = results["reference"], results["numba"]
    tol = 1e-5 if dtype == torch.float32 else 1e-9
    torch.testing.assert_close(got.trace, ref.trace, atol=tol, rtol=tol)
    for i, (g, r) in enumerate(zip(got.layers, ref.layers)):
        torch.testing.assert_close(g.spikes, r.spikes, atol=tol, rtol=tol)
        hidden = i + 1 < len(got.layers)
        if hidden and not record and g.membrane is None:
            continue
        torch.testing.assert_close(g.membrane, r.membrane, atol=tol, rtol=tol)
    params = dict(nets["reference"].named_parameters())
    for key, r in ref_grads.items():
        # a parameter that cannot reach the output yet (T=2) has no reference gradient: zeros here
        r = torch.zeros_like(params[key]) if r is None else r
        g = got_grads[key]
        scale = 1e-4 if dtype == torch.float32 else 1e-9  # sums over rows and steps
        torch.testing.assert_close(g, r, atol=scale, rtol=scale, msg=lambda m, k=key: f"{k}: {m}")


@pytest.mark.skipif(not installed("numba"), reason="numba is not installed")
def test_fold_is_used_for_a_small_next_layer_and_skips_the_hidden_membrane():
    torch.manual_seed(0)
    net = SpikingNetwork([5, 32, 2], [LIF(reset="scale")] * 2, backend="numba")
    x = torch.randn(30, 4, 5)
    with net.hidden_activity(False):
        out = net(x)
    assert out.layers[0].membrane is None and out.layers[0].spikes is not None
    assert type(out.layers[1].spikes.grad_fn).__name__ == "FusedRecurrenceBackward"
    assert "Folded" in type(out.layers[0].state.inner.grad_fn).__name__
    assert net.record_hidden, "restored after the block"
    out = net(x)
    assert out.layers[0].membrane.shape == (30, 4, 32)
    with torch.no_grad():  # inference does not fold
        assert net(x).layers[0].membrane is not None
    wide = SpikingNetwork([5, 32, 17], [LIF()] * 2, backend="numba")
    node = wide(x).layers[1].spikes.grad_fn  # the last layer's own node, its current from its Linear
    assert type(node.next_functions[0][0].next_functions[0][0]).__name__ == "_TimeLinearBackward"


@pytest.mark.skipif(not installed("numba"), reason="numba is not installed")
def test_folded_forward_does_not_depend_on_how_rows_are_grouped():
    """Elementwise per neuron and per row: a row's trace is bitwise the same in any batch."""
    torch.manual_seed(0)
    net = SpikingNetwork([7, 64, 3], [LIF(reset="scale")] * 2, readout="membrane", backend="numba")
    x = torch.randn(50, 12, 7) * 2
    whole = net(x).trace
    parts = torch.cat([net(x[:, i : i + 5]).trace for i in range(0, 12, 5)], dim=1)
    assert torch.equal(whole, parts)


@pytest.mark.skipif(not installed("numba"), reason="numba is not installed")
def test_numba_node_backward_runs_once_and_says_so():
    """The node writes the current's gradient over its saved state: a second backward through it
    (``retain_graph``) is refused with a message, not computed from overwritten values."""
    net = SpikingNetwork([5, 16, 2], [LIF()] * 2, backend="numba")
    loss = net(torch.randn(6, 3, 5)).trace.sum()
    loss.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="cannot run twice"):
        loss.backward()


@pytest.mark.parametrize("backend", [b for b in FAST if b != "numba"])
def test_network_trains_under_bf16_autocast(backend):
    """Autocast (bf16) runs the Linears in bf16 and the recurrence in fp32; gradients reach the
    fp32 parameters in fp32, within 10 % (in norm) of the fp32 run's: bf16 keeps about 3
    significant digits, and a rounded current flips some spike gates."""
    import torch.nn.functional as F

    torch.manual_seed(0)
    neurons = [LIF(learnable=True, reset="scale"), LIF()]
    nets = {
        p: SpikingNetwork([6, 16, 3], neurons, readout="membrane", backend=backend) for p in ("fp32", "bf16")
    }
    nets["bf16"].load_state_dict(nets["fp32"].state_dict())
    x, y = torch.randn(10, 4, 6) * 2, torch.randint(0, 3, (4,))
    for precision, net in nets.items():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            loss = F.cross_entropy(net(x).trace.sum(0).float(), y)
        loss.backward()
    for (name, p16), p32 in zip(nets["bf16"].named_parameters(), nets["fp32"].parameters()):
        assert p16.grad.dtype == torch.float32 and torch.isfinite(p16.grad).all(), name
        error = (p16.grad - p32.grad).norm() / p32.grad.norm()
        assert error < 0.1, f"{name}: relative error {error:.3f}"


@pytest.mark.parametrize("backend", [b for b in FAST if b != "numba"])
def test_unrecorded_hidden_membrane_is_dropped_by_every_backend(backend):
    """Without ``record_hidden`` the other backends' hidden membrane is released at once (as the
    numba node never writes it); the readout and the gradients do not change."""
    torch.manual_seed(0)
    net = SpikingNetwork([5, 24, 20, 3], [LIF(reset="scale")] * 3, backend=backend)
    x = torch.randn(9, 4, 5)
    results = []
    for record in (True, False):
        net.zero_grad()
        with net.hidden_activity(record):
            out = net(x)
        hidden = [layer.membrane for layer in out.layers[:-1]]
        assert all((m is None) != record for m in hidden)
        assert out.layers[-1].membrane is not None  # the readout's layer always keeps it
        out.trace.square().sum().backward()
        results.append([out.trace.detach(), *(p.grad.clone() for p in net.parameters())])
    for a, b in zip(*results):
        assert torch.equal(a, b)


@pytest.mark.parametrize("backend", FAST)
def test_hints_change_no_number(backend):
    """``record=False`` leaves the membrane out and ``consume=True`` lets the compiled kernels
    write their saved state over the current; outputs and gradients stay bitwise the same."""
    config = LIF(reset="scale", spike_fn="heaviside")
    case = _case(11, 3, 7, 0.8, 0.7, 0.4, True, True, torch.float32, 5)
    current, params, state, weights = case
    results = {}
    for record, consume in ((True, False), (False, True)):
        cur = current.detach().clone().requires_grad_()
        linear = cur * 1.0  # a fresh tensor the node may overwrite, as a Linear's output
        out = get_backend(backend)(linear, params, config, state, record=record, consume=consume)
        assert (out.membrane is None) != record
        loss = (out.spikes * weights[0]).sum() + (out.state.inner * weights[2, 0]).sum()
        grads = torch.autograd.grad(loss, [cur, *(p for p in params if p.requires_grad)])
        results[consume] = [out.spikes, out.state.inner, out.state.outer, *grads]
        if consume and backend in ("numba", "triton"):
            assert not torch.equal(linear, current), "the kernels wrote the saved state over it"
    for a, b in zip(results[False], results[True]):
        assert torch.equal(a, b)
