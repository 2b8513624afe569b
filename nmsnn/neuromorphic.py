"""NIR (the Neuromorphic Intermediate Representation): a trained network as a graph that
neuromorphic toolchains (Lava, SpiNNaker2, Rockpool, Sinabs) and peer libraries (snnTorch,
Norse) read, and NIR graphs read back as nmsnn models.

NIR's neurons are continuous-time: ``LIF`` is ``tau dv/dt = (v_leak - v) + r I`` with binary
spikes at ``v_threshold`` and ``v <- v_reset``; ``LI`` is the same without spikes. nmsnn steps
them with forward Euler at a step ``dt`` (``metadata["dt"]``, 1e-4 s as snnTorch assumes): a
layer's decay ``d`` is ``tau = dt / (1 - d)`` and its input gain is 1, so ``r = tau / dt``
(``v_t = d v_{t-1} + I_t``). A decay of 1 is a non-leaky ``IF`` with ``r = 1 / dt``.

A model of L spiking layers is the chain ``input -> (affine_i -> neuron_i -> delay_i) x L ->
output``: ``neuron_i`` is a ``LIF`` (``model/neuron=lif_hard`` with binary spikes) or, for the
``integrator`` readout, an ``LI``; ``delay_i`` is nmsnn's one-step delay of every layer's output
(``Delay`` of ``dt``). The graph's input is the encoded train (``direct``: the preprocessed row at
every step); the metadata names the encoder, the time steps and the readout (the mean of the
output over the steps from ``burn_in`` on), which NIR has no primitives for.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nmsnn.core.neurons import ALIF, LIF, HardResetLIF
from nmsnn.errors import ConfigError
from nmsnn.lit.module import SpikingModule

log = logging.getLogger(__name__)

DT = 1e-4
HINT = "train with model/neuron=lif_hard (binary spikes, reset to v_reset), which NIR's LIF is"


def nir_refusal(module: SpikingModule) -> str | None:
    """Why ``module`` has no exact NIR graph (one line naming the setting), or ``None``."""
    h = module.hparams
    if h["ensemble"] > 1:
        return (
            f"model.ensemble={h['ensemble']} averages its members' outputs, which a NIR graph does "
            "not express; train with model.ensemble=1 to export NIR"
        )
    if h["encoder"] == "receptive_field":
        return (
            "model.encoder=receptive_field feeds the network Gaussian tuning curves of each "
            "feature, which are not a NIR primitive; use encoder=direct to export NIR"
        )
    if h["readout"] == "membrane":
        return (
            "model.readout=membrane reads a firing layer's membrane, which a NIR LIF does not "
            "output; use readout=integrator (a NIR LI) or spikes"
        )
    layers = list(module.model.network.layers)
    for layer in layers if h["readout"] == "spikes" else layers[:-1]:
        neuron = layer.neuron
        if isinstance(neuron, ALIF):
            return f"model/neuron=alif: NIR has no adaptive-threshold neuron; {HINT}"
        if type(neuron) is LIF and neuron.spike_fn == "relu":
            return f"model.neuron.spike_fn=relu: NIR has no graded spikes; {HINT}"
        if type(neuron) is LIF:
            return (
                "model/neuron=lif resets a fired neuron by subtracting penalty + 1 (a soft reset), "
                f"which is not a NIR primitive; {HINT}"
            )
        if type(neuron) is not HardResetLIF:
            return f"model.neuron.kind={neuron.kind!r} has no NIR counterpart; {HINT}"
        if neuron.spike_fn != "heaviside":
            return "model.neuron.spike_fn=relu: NIR has no graded spikes; use spike_fn=heaviside"
    return None


def _per_neuron(value: torch.Tensor, size: int) -> np.ndarray:
    return np.full(size, float(value), dtype=np.float64)


def _neuron_node(layer: Any, size: int, dt: float) -> Any:
    import nir

    decay = float(layer.decay)
    if not layer.fires:
        tau = dt / (1.0 - decay) if decay < 1 else math.inf
        return nir.LI(tau=np.full(size, tau), r=np.full(size, tau / dt), v_leak=np.zeros(size))
    threshold = _per_neuron(layer.threshold, size)
    v_reset = _per_neuron(layer.v_reset, size)
    if decay == 1.0:
        return nir.IF(r=np.full(size, 1.0 / dt), v_threshold=threshold, v_reset=v_reset)
    tau = np.full(size, dt / (1.0 - decay))
    return nir.LIF(tau=tau, r=tau / dt, v_leak=np.zeros(size), v_threshold=threshold, v_reset=v_reset)


def to_nir_graph(module: SpikingModule, dt: float = DT) -> Any:
    """``module``'s network as a ``nir.NIRGraph`` (see the module docstring); refuses a model
    NIR cannot express exactly with :class:`ConfigError`."""
    import nir

    reason = nir_refusal(module)
    if reason:
        raise ConfigError(f"no NIR export: {reason}.")
    h = module.hparams
    layers = list(module.model.network.layers)
    nodes: dict[str, Any] = {"input": nir.Input(input_type=np.array([h["num_inputs"]]))}
    edges, previous = [], "input"
    for i, layer in enumerate(layers):
        weight = layer.linear.weight.detach().double().cpu().numpy()
        bias = layer.linear.bias.detach().double().cpu().numpy()
        size = weight.shape[0]
        nodes[f"affine_{i}"] = nir.Affine(weight=weight, bias=bias)
        nodes[f"neuron_{i}"] = _neuron_node(layer, size, dt)
        nodes[f"delay_{i}"] = nir.Delay(delay=np.full(size, dt))
        edges += [(previous, f"affine_{i}"), (f"affine_{i}", f"neuron_{i}"), (f"neuron_{i}", f"delay_{i}")]
        previous = f"delay_{i}"
    nodes["output"] = nir.Output(output_type=np.array([h["num_outputs"]]))
    edges.append((previous, "output"))
    metadata = {
        "producer": "nmsnn",
        "dt": dt,
        "discretization": "forward Euler: decay = 1 - dt / tau, input gain r * dt / tau = 1",
        "encoder": h["encoder"],
        "time_steps": int(h["time_steps"]),
        "readout": f"{h['readout']}: {h['reduce']} of the output over steps t >= {h['burn_in']}",
        "task": h["task"],
    }
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=metadata)


def write_nir(module: SpikingModule, path: Path, dt: float = DT) -> None:
    """Write ``module`` as a NIR file (HDF5, ``nir.write``)."""
    import nir

    nir.write(str(path), to_nir_graph(module, dt))


def from_nir(source: str | Path | Any, task: str | None = None) -> SpikingModule:
    """An nmsnn model from a NIR graph (a ``.nir`` path or a ``nir.NIRGraph``) of a chain
    ``Input -> (Affine | Linear -> LIF | IF | LI [-> Delay])* -> Output``; other graphs are
    refused with the node that has no nmsnn counterpart. ``task``: ``classification`` or
    ``regression`` (default: the graph's metadata, else classification)."""
    import nir

    graph = nir.read(str(source)) if isinstance(source, (str, Path)) else source
    metadata = dict(getattr(graph, "metadata", None) or {})
    dt = float(metadata.get("dt", DT))
    stages = _chain(graph)
    neuron: dict[str, list[float]] = {"decay": [], "threshold": [], "v_reset": []}
    weights, readout = [], "spikes"
    for i, (linear, cell, delayed) in enumerate(stages):
        gain, decay, fires = _neuron_values(cell, dt, neuron)
        if not delayed:
            log.warning(
                "NIR node after layer %d has no Delay: nmsnn's layers pass their output on one step "
                "later, so this model's outputs come one step later per layer than the graph's (and a "
                "layer's bias acts alone in the steps before its input arrives)",
                i + 1,
            )
        if not fires:
            if i != len(stages) - 1:
                raise ConfigError(
                    "NIR graph has a non-spiking LI before its last layer; nmsnn reads out only the last."
                )
            readout = "integrator"
        weight = np.asarray(linear.weight, dtype=np.float64) * gain
        bias = np.asarray(getattr(linear, "bias", np.zeros(weight.shape[0])), dtype=np.float64) * gain
        weights.append((weight, bias))
        neuron["decay"].append(decay)
    sizes = [weights[0][0].shape[1], *(w.shape[0] for w, _ in weights)]
    module = SpikingModule(
        task=task or metadata.get("task", "classification"),
        num_inputs=sizes[0],
        num_outputs=sizes[-1],
        hidden=sizes[1:-1],
        neuron={"kind": HardResetLIF.kind, "spike_fn": "heaviside", **neuron},
        encoder=str(metadata.get("encoder", "direct")),
        time_steps=int(metadata.get("time_steps", 16)),
        readout=readout,
        init="torch",
    )
    with torch.no_grad():
        for layer, (weight, bias) in zip(module.model.network.layers, weights):
            layer.linear.weight.copy_(torch.as_tensor(weight))
            layer.linear.bias.copy_(torch.as_tensor(bias))
    return module


def _chain(graph: Any) -> list[tuple[Any, Any, bool]]:
    """The graph's ``(linear, neuron, delayed)`` stages from its input to its output."""
    import nir

    following: dict[str, list[str]] = {}
    for source, target in graph.edges:
        following.setdefault(source, []).append(target)
    inputs = [name for name, node in graph.nodes.items() if isinstance(node, nir.Input)]
    if len(inputs) != 1:
        raise ConfigError(f"NIR graph has {len(inputs)} Input nodes; nmsnn reads a chain with one.")
    order, name = [], inputs[0]
    while True:
        nxt = following.get(name, [])
        if len(nxt) != 1:
            if not nxt:
                break
            raise ConfigError(
                f"NIR node {name!r} feeds {nxt}: nmsnn reads a chain of layers, not a branching graph."
            )
        name = nxt[0]
        order.append((name, graph.nodes[name]))
    stages, i = [], 0
    body = [(n, node) for n, node in order if not isinstance(node, nir.Output)]
    while i < len(body):
        (lin_name, linear), *rest = body[i:]
        if not isinstance(linear, (nir.Affine, nir.Linear)) or not rest:
            raise ConfigError(f"NIR node {lin_name!r} ({type(linear).__name__}) has no nmsnn counterpart here; "
                              "nmsnn reads Affine/Linear -> LIF | IF | LI [-> Delay] layers.")  # fmt: skip
        cell_name, cell = rest[0]
        if not isinstance(cell, (nir.LIF, nir.IF, nir.LI)):
            raise ConfigError(f"NIR node {cell_name!r} ({type(cell).__name__}) has no nmsnn counterpart; "
                              "nmsnn runs LIF, IF and LI neurons.")  # fmt: skip
        delayed = len(rest) > 1 and isinstance(rest[1][1], nir.Delay)
        stages.append((linear, cell, delayed))
        i += 3 if delayed else 2
    if not stages:
        raise ConfigError("NIR graph has no Affine -> neuron layer.")
    return stages


def _uniform(node: Any, field: str) -> float:
    values = np.unique(np.asarray(getattr(node, field), dtype=np.float64))
    if values.size != 1:
        raise ConfigError(
            f"NIR {type(node).__name__}.{field} differs between neurons ({values[:3]}...); nmsnn's "
            "neuron parameters are one value per layer."
        )
    return float(values[0])


def _neuron_values(cell: Any, dt: float, neuron: dict[str, list[float]]) -> tuple[float, float, bool]:
    """The input gain (folded into the weights), the decay and whether it fires; appends the
    threshold and reset to ``neuron``."""
    import nir

    if not isinstance(cell, nir.IF) and _uniform(cell, "v_leak") != 0.0:
        raise ConfigError(f"NIR {type(cell).__name__}.v_leak is not 0; nmsnn's neurons leak towards 0.")
    if isinstance(cell, nir.IF):
        decay, gain = 1.0, _uniform(cell, "r") * dt
    else:
        tau = _uniform(cell, "tau")
        decay, gain = 1.0 - dt / tau, _uniform(cell, "r") * dt / tau
    # a producer that wrote tau and r in float32 leaves a gain of 1 off in its last bits
    gain = 1.0 if math.isclose(gain, 1.0, rel_tol=1e-6) else gain
    fires = not isinstance(cell, nir.LI)
    neuron["threshold"].append(_uniform(cell, "v_threshold") if fires else 1.0)
    neuron["v_reset"].append(_uniform(cell, "v_reset") if fires else 0.0)
    return gain, decay, fires
