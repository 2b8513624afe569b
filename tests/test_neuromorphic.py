"""NIR export and import: the graph holds what the model holds, a peer library (snnTorch) runs it
to the same spikes, a peer's graph imports and predicts, and what NIR cannot express is refused."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from nmsnn.errors import ConfigError
from nmsnn.lit.module import SpikingModule
from tests.conftest import run_cli

nir = pytest.importorskip("nir")

HARD = {
    "kind": "lif_hard",
    "decay": [0.9, 0.8, 0.7],
    "threshold": [0.6, 0.5, 0.4],
    "v_reset": [0.0, 0.0, 0.0],
}


def model(readout: str = "spikes", neuron: dict | None = None, **kwargs) -> SpikingModule:
    torch.manual_seed(0)
    settings = {
        "task": "classification",
        "num_inputs": 4,
        "num_outputs": 3,
        "hidden": [8, 6],
        "time_steps": 12,
    }
    return SpikingModule(
        **settings, neuron=neuron or HARD, readout=readout, encoder="direct", **kwargs
    ).double()


def test_exported_graph_holds_the_models_layers(tmp_path):
    from nmsnn.neuromorphic import DT, write_nir

    module = model("integrator")
    write_nir(module, tmp_path / "model.nir")
    graph = nir.read(str(tmp_path / "model.nir"))
    chain = (
        ["input"] + [f"{kind}_{i}" for i in range(3) for kind in ("affine", "neuron", "delay")] + ["output"]
    )
    assert set(graph.nodes) == set(chain)
    assert sorted(graph.edges) == sorted(itertools.pairwise(chain))
    layers = module.model.network.layers
    for i, layer in enumerate(layers):
        affine = graph.nodes[f"affine_{i}"]
        np.testing.assert_array_equal(affine.weight, layer.linear.weight.detach().numpy())
        np.testing.assert_array_equal(affine.bias, layer.linear.bias.detach().numpy())
        np.testing.assert_allclose(graph.nodes[f"delay_{i}"].delay, DT)
    for i in range(2):
        lif = graph.nodes[f"neuron_{i}"]
        assert isinstance(lif, nir.LIF) and lif.tau.shape == (layers[i].linear.out_features,)
        np.testing.assert_allclose(1 - DT / lif.tau, HARD["decay"][i])
        np.testing.assert_allclose(lif.r * DT / lif.tau, 1.0)
        np.testing.assert_allclose(lif.v_threshold, HARD["threshold"][i])
        np.testing.assert_allclose(lif.v_reset, 0.0)
    readout = graph.nodes["neuron_2"]
    assert isinstance(readout, nir.LI)
    np.testing.assert_allclose(1 - DT / readout.tau, HARD["decay"][2])
    assert graph.metadata["encoder"] == "direct" and graph.metadata["time_steps"] == 12


@pytest.mark.parametrize(
    ("neuron", "readout", "message"),
    [
        ({"kind": "lif"}, "integrator", "NIR has no graded spikes; train with model/neuron=lif_hard"),
        ({"kind": "lif", "spike_fn": "heaviside"}, "integrator", "soft reset"),
        ({"kind": "alif"}, "integrator", "NIR has no adaptive-threshold neuron"),
        (
            {"kind": "lif_hard", "spike_fn": "relu"},
            "integrator",
            "NIR has no graded spikes; use spike_fn=heaviside",
        ),
        (HARD, "membrane", "model.readout=membrane"),
    ],
)
def test_what_nir_cannot_express_is_refused_with_its_reason(tmp_path, neuron, readout, message):
    from nmsnn.export import export

    module = model(readout, neuron)
    with pytest.raises(ConfigError, match="formats=\\[nir\\]: ") as err:
        export(module, _preprocessor(), tmp_path, formats=["nir"])
    assert message in str(err.value) and "\n" not in str(err.value)
    assert not list(tmp_path.iterdir())  # refused before any file is written


def _preprocessor():
    from nmsnn.data.datamodule import TabularDataModule

    dm = TabularDataModule(dataset="iris")
    dm.setup("fit")
    return dm.preprocessor


def _snntorch_run(net: torch.nn.Module, train: torch.Tensor) -> torch.Tensor:
    """snnTorch's network (in float64) stepped over ``train [T, B, F]``: its output spikes
    ``[T, B, O]`` (snnTorch emits float32 spikes, 0 or 1: each Linear reads them as float64)."""
    import snntorch.utils

    net.double()
    for linear in (m for m in net.modules() if isinstance(m, torch.nn.Linear)):
        linear.register_forward_pre_hook(lambda mod, args: (args[0].to(mod.weight.dtype), *args[1:]))

    snntorch.utils.reset(net)
    outputs = []
    for x in train:
        out = net(x)
        outputs.append(out[0] if isinstance(out, tuple) else out)
    return torch.stack(outputs).double()


def _without_delays(graph):
    """The graph with its Delay nodes bridged (snnTorch has no Delay primitive)."""
    delays = {name for name, node in graph.nodes.items() if isinstance(node, nir.Delay)}
    into = {target: source for source, target in graph.edges if target in delays}
    edges = [(into.get(s, s), t) for s, t in graph.edges if t not in delays]
    nodes = {name: node for name, node in graph.nodes.items() if name not in delays}
    return nir.NIRGraph(nodes=nodes, edges=edges)


def test_snntorch_runs_the_exported_graph_to_the_same_spikes():
    """nmsnn -> NIR -> snnTorch on the same encoded inputs (float64): every output spike equal.
    nmsnn's layers pass their output on one step later (the graph's Delay nodes); snnTorch has
    no Delay primitive, so it runs the graph without them and its spikes come ``depth`` steps
    earlier: compared after that shift."""
    snntorch = pytest.importorskip("snntorch")
    from snntorch.import_nir import import_from_nir

    from nmsnn.neuromorphic import to_nir_graph

    module = model("spikes")
    with torch.no_grad():  # inputs that make every layer fire sometimes
        for layer in module.model.network.layers:
            layer.linear.weight.mul_(2.0)
    train = module.model.encoder(torch.randn(5, 4, dtype=torch.float64) * 2)  # [T, B, F]
    with torch.no_grad():
        ours = module.model.network(train).layers[-1].spikes
    peer = import_from_nir(_without_delays(to_nir_graph(module)))
    with torch.no_grad():
        theirs = _snntorch_run(peer, train)
    depth = len(module.model.network.layers)
    assert ours[depth:].sum() > 0, "no output spikes to compare"
    torch.testing.assert_close(ours[depth:], theirs[:-depth], rtol=0, atol=0)
    assert snntorch.__version__


def test_a_graph_exported_by_snntorch_imports_and_predicts():
    """snnTorch -> NIR -> ``nmsnn.from_nir``: the imported network's spikes are snnTorch's, one
    step later per layer (the graph has no Delay nodes, which nmsnn's layers add; the layers have
    no bias, which a delayed layer would integrate alone in its first steps)."""
    pytest.importorskip("snntorch")
    import snntorch as snn
    from snntorch.export_nir import export_to_nir

    import nmsnn

    torch.manual_seed(1)
    beta, threshold = 0.85, 0.5

    def leaky(size: int, **kwargs) -> torch.nn.Module:  # per-neuron values: typed NIR nodes; the
        # reset at the step of the spike, as NIR's LIF (snnTorch's default resets one step later)
        full = {"beta": torch.full((size,), beta), "threshold": torch.full((size,), threshold)}
        return snn.Leaky(**full, reset_mechanism="zero", reset_delay=False, init_hidden=True, **kwargs)

    peer = torch.nn.Sequential(torch.nn.Linear(4, 8), leaky(8), torch.nn.Linear(8, 3), leaky(3, output=True))
    with torch.no_grad():
        peer[0].weight.mul_(3.0)
        # without biases: nmsnn's layers also integrate their bias in the steps before their
        # delayed input arrives, so with biases the trains differ by more than the shift
        for linear in (peer[0], peer[2]):
            linear.bias.zero_()
    graph = export_to_nir(peer, torch.randn(4))  # one unbatched row: the graph's input type
    module = nmsnn.from_nir(graph).double()
    layer = module.model.network.layers[0]
    assert layer.neuron.kind == "lif_hard" and math.isclose(float(layer.decay), beta, rel_tol=1e-6)
    train = torch.randn(16, 5, 4, dtype=torch.float64) * 2
    with torch.no_grad():
        ours = module.model.network(train).layers[-1].spikes
        theirs = _snntorch_run(peer, train)
    assert theirs.sum() > 0
    torch.testing.assert_close(ours[2:], theirs[:-2], rtol=0, atol=0)
    assert module.predict_rows(torch.randn(7, 4, dtype=torch.float64)).shape == (7, 3)
    # and it trains: the imported layers are ordinary lif_hard layers with a surrogate gradient
    rows, labels = torch.randn(7, 4, dtype=torch.float64), torch.tensor([0, 1, 2, 0, 1, 2, 0])
    module.train()
    module.loss(module(rows).prediction, labels).backward()
    grad = module.model.network.layers[0].linear.weight.grad
    assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0


def test_from_nir_refuses_what_nmsnn_cannot_run_by_name():
    import nmsnn

    n = 3
    base = {
        "input": nir.Input(input_type=np.array([2])),
        "affine": nir.Affine(weight=np.ones((n, 2)), bias=np.zeros(n)),
        "output": nir.Output(output_type=np.array([n])),
    }
    cuba = nir.CubaLIF(tau_mem=np.ones(n), tau_syn=np.ones(n), r=np.ones(n), v_leak=np.zeros(n),
                       v_threshold=np.ones(n), v_reset=np.zeros(n), w_in=np.ones(n))  # fmt: skip
    graph = nir.NIRGraph(
        nodes={**base, "cell": cuba}, edges=[("input", "affine"), ("affine", "cell"), ("cell", "output")]
    )
    with pytest.raises(ConfigError, match="'cell' \\(CubaLIF\\) has no nmsnn counterpart"):
        nmsnn.from_nir(graph)
    leaky = nir.LIF(
        tau=np.full(n, 1e-3),
        r=np.full(n, 10.0),
        v_leak=np.ones(n),
        v_threshold=np.ones(n),
        v_reset=np.zeros(n),
    )
    graph = nir.NIRGraph(
        nodes={**base, "cell": leaky}, edges=[("input", "affine"), ("affine", "cell"), ("cell", "output")]
    )
    with pytest.raises(ConfigError, match=r"LIF\.v_leak is not 0"):
        nmsnn.from_nir(graph)


@pytest.mark.slow
def test_nmsnn_export_writes_nir_from_the_command_line(tmp_path):
    run = tmp_path / "run"
    train = [
        "model/neuron=lif_hard",
        "model.encoder=direct",  # the classification default's receptive fields have no NIR form
        "data=iris",
        "trainer.max_epochs=2",
        "logger=none",
        f"hydra.run.dir={run}",
    ]
    run_cli("nmsnn-train", *train, cwd=tmp_path)
    ckpt = run / "checkpoints" / "best.ckpt"
    out = tmp_path / "exported"
    result = run_cli("nmsnn-export", f"ckpt_path={ckpt}", f"output_dir={out}", "formats=[nir]", cwd=tmp_path)
    assert (out / "model.nir").exists() and str(out / "model.nir") in result.stdout
    graph = nir.read(str(out / "model.nir"))
    assert isinstance(graph.nodes["neuron_0"], nir.LIF) and isinstance(graph.nodes["neuron_1"], nir.LI)
    again = run_cli(
        "nmsnn-export", f"ckpt_path={ckpt}", f"output_dir={out}", "formats=[nir]", cwd=tmp_path, check=False
    )
    assert again.returncode != 0 and "file(s) exist" in again.stderr and not list(out.glob("*.tmp*"))
    refused = tmp_path / "lif"
    run_cli(
        "nmsnn-train",
        "data=iris",
        "model.encoder=direct",
        "trainer.max_epochs=1",
        "logger=none",
        f"hydra.run.dir={refused}",
        cwd=tmp_path,
    )
    lif = run_cli("nmsnn-export", f"ckpt_path={refused / 'checkpoints' / 'best.ckpt'}", f"output_dir={tmp_path / 'x'}",
                  "formats=[nir]", cwd=tmp_path, check=False)  # fmt: skip
    assert lif.returncode != 0 and "NIR has no graded spikes; train with model/neuron=lif_hard" in lif.stderr
    assert "Traceback" not in lif.stderr and not (tmp_path / "x").exists()
