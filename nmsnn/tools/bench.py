"""Benchmark the recurrence backends against the per-step loop and peer libraries.

``python -m nmsnn.tools.bench --device cpu --workload all --json results.json`` measures, for every
implementation, one training step (encode noise, forward, cross-entropy, backward, Adam step) and
one inference forward on the same layer sizes, and prints a table. Each implementation runs in a
fresh subprocess so that memory peaks and thread pools do not leak between them.

Records (one per implementation and workload): ``impl, workload, device, train_ms`` (median),
``infer_ms`` (median), ``samples_per_s`` (training rows per second), ``peak_mem_mb`` (CPU: growth
of the peak resident set during one full-size training step, after a small warm-up step; CUDA: the
growth of max allocated memory), ``max_abs_diff`` (largest difference of the logits from nmsnn's
reference backend on the same weights and noise; ``None`` for peers whose neuron differs),
``max_abs_grad_diff`` (the same for the first layer's weight gradient) and ``precision``
(``fp32``, or ``bf16``: forward and loss under ``torch.autocast(dtype=torch.bfloat16)``, weights
and optimizer in fp32, differences still against the fp32 reference); for nmsnn's models also
``input_ms`` (median time of the training encoder on the batch, ``x * u_t``) and ``input_share``
(``input_ms / train_ms``: the share of the step spent outside the network).

Implementations: ``per_step_loop`` (the original library's way: every Linear called once per step
inside a Python loop over T), ``nmsnn_<backend>`` for every backend, and when installed
``snntorch`` (``snn.Leaky`` in a per-step loop) and ``spikingjelly_<impl>`` (multi-step
``LIFNode``; ``torch`` on CPU, ``triton`` on CUDA). The peers' neurons differ from nmsnn's: binary
heaviside spikes that reset by subtracting the threshold, no refractory penalty.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

DECAY, THRESHOLD, PENALTY = 0.9, 1.0, 1.5


@dataclass(frozen=True)
class Workload:
    name: str
    features: int
    sizes: tuple[int, ...]  # hidden sizes then the number of classes
    steps: int
    batch: int
    warmup: int
    repeats: int


WORKLOADS = {
    "seed_binary": Workload("seed_binary", 30, (64, 2), 500, 64, warmup=2, repeats=7),
    "wide": Workload("wide", 64, (512, 512, 10), 64, 1024, warmup=1, repeats=5),
}
QUICK = Workload("quick", 6, (8, 3), 12, 4, warmup=1, repeats=2)

SAME_NEURON = "same"
PEER_NEURON = "differs: binary spikes, reset by subtracting the threshold, no penalty"


def backends_for(device: str) -> list[str]:
    from nmsnn.core.backends import available_backends

    names = [b for b in available_backends() if b != "triton" or device == "cuda"]
    return [b for b in names if not (b == "numba" and device != "cpu")]


def all_impls(device: str) -> list[str]:
    impls = ["per_step_loop", *(f"nmsnn_{b}" for b in backends_for(device))]
    if importlib.util.find_spec("snntorch") is not None:
        impls.append("snntorch")
    if importlib.util.find_spec("spikingjelly") is not None:
        impls.append("spikingjelly_torch")
        if device == "cuda":
            impls.append("spikingjelly_triton")
    return impls


# ---------------------------------------------------------------- models


def nmsnn_network(workload: Workload, backend: str) -> nn.Module:
    from nmsnn.core.layers import SpikingNetwork
    from nmsnn.core.neurons import LIF

    sizes = [workload.features, *workload.sizes]
    neuron = LIF(decay=DECAY, threshold=THRESHOLD, penalty=PENALTY, reset="scale")
    return SpikingNetwork(
        sizes, [neuron] * (len(sizes) - 1), readout="membrane", backend=backend, init="torch"
    )


class NmsnnModel(nn.Module):
    """nmsnn's network: Linear on all steps at once, the recurrence through a backend."""

    def __init__(self, workload: Workload, backend: str) -> None:
        super().__init__()
        from nmsnn.core.encoders import UniformNoiseEncoder

        self.network = nmsnn_network(workload, backend)
        self.network.record_hidden = False  # as SpikingModule.training_step: only the loss is kept
        self.encoder = UniformNoiseEncoder(workload.steps)  # the noise training uses

    @property
    def steps(self) -> int:
        return self.encoder.time_steps

    @steps.setter
    def steps(self, value: int) -> None:
        self.encoder.time_steps = value

    def forward(self, x: Tensor, noise: Tensor | None = None) -> Tensor:
        inputs = self.encoder(x) if noise is None else x * noise
        return self.network(inputs).trace.sum(0)


class PerStepLoop(nn.Module):
    """The original's way: per step, every Linear is called on that step's input."""

    def __init__(self, workload: Workload) -> None:
        super().__init__()
        sizes = [workload.features, *workload.sizes]
        self.linears = nn.ModuleList(nn.Linear(i, o) for i, o in pairwise(sizes))

    def forward(self, x: Tensor, noise: Tensor | None = None) -> Tensor:
        batch = x.shape[0]
        inner = [x.new_zeros(batch, lin.out_features) for lin in self.linears]
        outer = [x.new_zeros(batch, lin.out_features) for lin in self.linears]
        total = x.new_zeros(batch, self.linears[-1].out_features)
        for t in range(self.steps):
            h = x * (torch.rand_like(x) if noise is None else noise[t])
            for i, lin in enumerate(self.linears):
                emitted, membrane = outer[i], inner[i]  # one-step delay
                a = lin(h) + DECAY * membrane
                o = torch.relu(a - THRESHOLD)
                gate = (o > 0).to(a.dtype)
                inner[i] = a - (PENALTY / THRESHOLD) * a * gate
                outer[i] = o
                h = emitted
            total = total + membrane
        return total


class SnnTorchModel(nn.Module):
    """snnTorch's ``Leaky`` neuron after each Linear, in a per-step loop (its usual use)."""

    def __init__(self, workload: Workload) -> None:
        super().__init__()
        import snntorch as snn

        sizes = [workload.features, *workload.sizes]
        self.linears = nn.ModuleList(nn.Linear(i, o) for i, o in pairwise(sizes))
        self.lifs = nn.ModuleList(
            snn.Leaky(beta=DECAY, threshold=THRESHOLD, reset_mechanism="subtract") for _ in self.linears
        )

    def forward(self, x: Tensor, noise: Tensor | None = None) -> Tensor:
        mems = [lif.init_leaky() for lif in self.lifs]
        total = 0.0
        for t in range(self.steps):
            h = x * (torch.rand_like(x) if noise is None else noise[t])
            for i, (lin, lif) in enumerate(zip(self.linears, self.lifs)):
                h, mems[i] = lif(lin(h), mems[i])
            total = total + mems[-1]
        return total


class SpikingJellyModel(nn.Module):
    """SpikingJelly's multi-step ``LIFNode`` (``decay_input=False``, soft reset: decay 0.9)."""

    def __init__(self, workload: Workload) -> None:
        super().__init__()
        from spikingjelly.activation_based import neuron

        sizes = [workload.features, *workload.sizes]
        self.linears = nn.ModuleList(nn.Linear(i, o) for i, o in pairwise(sizes))
        self.lifs = nn.ModuleList(
            neuron.LIFNode(
                tau=1.0 / (1.0 - DECAY),
                decay_input=False,
                v_threshold=THRESHOLD,
                v_reset=None,
                step_mode="m",
                store_v_seq=i == len(self.linears) - 1,
            )
            for i in range(len(self.linears))
        )

    def forward(self, x: Tensor, noise: Tensor | None = None) -> Tensor:
        from spikingjelly.activation_based import functional

        functional.reset_net(self)
        noise = torch.rand(self.steps, *x.shape, device=x.device) if noise is None else noise
        h = x * noise
        for lin, lif in zip(self.linears, self.lifs):
            steps, batch = h.shape[:2]
            h = lif(lin(h.reshape(steps * batch, -1)).reshape(steps, batch, -1))
        return self.lifs[-1].v_seq.sum(0)


def build(impl: str, workload: Workload) -> nn.Module:
    if impl == "per_step_loop":
        model: nn.Module = PerStepLoop(workload)
    elif impl.startswith("nmsnn_"):
        model = NmsnnModel(workload, impl.removeprefix("nmsnn_"))
    elif impl == "snntorch":
        model = SnnTorchModel(workload)
    elif impl.startswith("spikingjelly_"):
        model = SpikingJellyModel(workload)
    else:
        raise SystemExit(f"unknown implementation {impl!r}; known: {all_impls('cuda')}")
    model.steps = workload.steps
    return model


def linear_weights(model: nn.Module) -> list[nn.Linear]:
    return [m for m in model.modules() if isinstance(m, nn.Linear)]


def copy_weights(src: nn.Module, dst: nn.Module) -> None:
    with torch.no_grad():
        for a, b in zip(linear_weights(src), linear_weights(dst)):
            b.weight.copy_(a.weight)
            b.bias.copy_(a.bias)


# ---------------------------------------------------------------- measuring


def rss_mb(field: str) -> float:
    """``VmRSS`` (current) or ``VmHWM`` (peak) of this process, in MiB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return math.nan


def reset_peak_rss() -> bool:
    """Reset this process's peak RSS to its current RSS (Linux >= 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def autocast(device: torch.device, precision: str):
    """The context the forward pass and loss run in: bf16 autocast, or nothing for fp32."""
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return nullcontext()


def peak_step_memory(device: torch.device, step: Callable[[], None]) -> float:
    """MB that one ``step`` adds at its peak (CUDA allocator; RSS high-water mark on CPU, NaN
    where it cannot be reset)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        step()
        sync(device)
        return (torch.cuda.max_memory_allocated(device) - base) / 2**20
    base = rss_mb("VmRSS")
    if not reset_peak_rss():
        return math.nan
    step()
    return rss_mb("VmHWM") - base


def timed(fn: Callable[[], Any], n: int, device: torch.device) -> list[float]:
    """Milliseconds of ``n`` calls of ``fn``, each between device synchronizations."""
    out = []
    for _ in range(n):
        sync(device)
        t0 = time.perf_counter()
        fn()
        sync(device)
        out.append((time.perf_counter() - t0) * 1e3)
    return out


def worker(impl: str, workload: Workload, device_name: str, precision: str = "fp32") -> dict[str, Any]:
    """Measure one implementation on one workload in this (fresh) process."""
    device = torch.device(device_name)
    if device.type == "cpu":  # the same malloc settings for every implementation
        from nmsnn.core.backends.memory import retain_freed_memory

        retain_freed_memory()
    if impl == "spikingjelly_triton":
        os.environ["SJ_LIF_CUDA_IMPLEMENTATION"] = "triton"
    elif impl == "spikingjelly_torch":
        os.environ["SJ_LIF_CUDA_IMPLEMENTATION"] = "torch"
    torch.manual_seed(0)
    reference = build("nmsnn_reference", workload)
    model = build(impl, workload)
    copy_weights(reference, model)
    model.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.randn(workload.batch, workload.features, device=device)
    y = torch.randint(0, workload.sizes[-1], (workload.batch,), device=device)

    def train_step(rows: Tensor, labels: Tensor) -> None:
        optimizer.zero_grad(set_to_none=True)
        with autocast(device, precision):
            loss = F.cross_entropy(model(rows).float(), labels)
        loss.backward()
        optimizer.step()

    # a small warm-up step compiles kernels and creates Adam's state before memory is measured
    model.steps = 4
    train_step(x[:2], y[:2])
    model.steps = workload.steps
    sync(device)
    peak = peak_step_memory(device, lambda: train_step(x, y))
    for _ in range(workload.warmup):
        train_step(x, y)
    train = timed(lambda: train_step(x, y), workload.repeats, device)

    def infer() -> None:
        with torch.inference_mode(), autocast(device, precision):
            model(x)

    infer()
    inference = timed(infer, workload.repeats, device)

    # the input pipeline inside the step: nmsnn's training encoder (x * u_t for the batch)
    encoder = getattr(model, "encoder", None)
    input_ms = statistics.median(timed(lambda: encoder(x), 3 * workload.repeats, device)) if encoder else None

    diff, grad_diff, neuron = None, None, PEER_NEURON
    if impl == "per_step_loop" or impl.startswith("nmsnn_"):
        neuron = SAME_NEURON
        diff, grad_diff = compare_to_reference(impl, workload, device, precision)
    record = {"impl": impl, "workload": workload.name, "device": device_name, "precision": precision}
    return {**record, **timings(workload, train, inference, peak, input_ms), "max_abs_diff": diff,
            "max_abs_grad_diff": grad_diff, "neuron": neuron, "threads": torch.get_num_threads()}  # fmt: skip


def timings(
    workload: Workload, train: list[float], inference: list[float], peak: float, input_ms: float | None
) -> dict[str, Any]:
    """A record's speed and memory fields (medians of the timed steps)."""
    train_ms = statistics.median(train)
    return {
        "train_ms": round(train_ms, 3),
        "infer_ms": round(statistics.median(inference), 3),
        "samples_per_s": round(workload.batch / train_ms * 1e3, 1),
        "peak_mem_mb": None if math.isnan(peak) else round(peak, 1),
        "input_ms": None if input_ms is None else round(input_ms, 3),
        "input_share": None if input_ms is None else round(input_ms / train_ms, 4),
        "train_ms_all": [round(t, 3) for t in train],
    }


def compare_to_reference(
    impl: str, workload: Workload, device: torch.device, precision: str = "fp32"
) -> tuple[float, float]:
    """Logits and first-layer weight gradient against the fp32 reference backend (<= 16 rows)."""
    torch.manual_seed(1)
    reference = build("nmsnn_reference", workload).to(device)
    model = build(impl, workload).to(device)
    copy_weights(reference, model)
    rows = min(workload.batch, 16)
    x = torch.randn(rows, workload.features, device=device)
    y = torch.randint(0, workload.sizes[-1], (rows,), device=device)
    noise = torch.rand(workload.steps, rows, workload.features, device=device)
    results = []
    for m, mode in ((reference, "fp32"), (model, precision)):
        with autocast(device, mode):
            logits = m(x, noise).float()
            loss = F.cross_entropy(logits, y)
        loss.backward()
        results.append((logits.detach(), linear_weights(m)[0].weight.grad))
    (ref_logits, ref_grad), (logits, grad) = results
    return float((logits - ref_logits).abs().max()), float((grad - ref_grad).abs().max())


# ---------------------------------------------------------------- driver


def run_worker(
    impl: str,
    workload: str,
    device: str,
    quick: bool,
    timeout: float,
    threads: int | None,
    precision: str = "fp32",
) -> dict[str, Any]:
    cmd = [
        sys.executable,
        "-m",
        "nmsnn.tools.bench",
        "--worker",
        impl,
        "--workload",
        workload,
        "--device",
        device,
    ]
    cmd += ["--precision", precision]
    if quick:
        cmd.append("--quick")
    if threads:
        cmd += ["--threads", str(threads)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"impl": impl, "workload": workload, "device": device, "precision": precision,
                "error": f"timed out after {timeout} s"}  # fmt: skip
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        return {"impl": impl, "workload": workload, "device": device, "precision": precision,
                "error": " | ".join(tail)}  # fmt: skip
    return json.loads(lines[-1])


def fmt(value: Any, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def markdown_table(records: list[dict[str, Any]]) -> str:
    """The records as one markdown table per workload, with speed-ups over the per-step loop."""
    out = []
    for workload in dict.fromkeys(r["workload"] for r in records):
        rows = [r for r in records if r["workload"] == workload]
        base = next((r.get("train_ms") for r in rows if r["impl"] == "per_step_loop"), None)
        base_mem = next((r.get("peak_mem_mb") for r in rows if r["impl"] == "per_step_loop"), None)
        out.append(f"### {workload} ({rows[0]['device']}, {rows[0].get('precision', 'fp32')})\n")
        out.append(
            "| impl | train ms | speed-up vs per_step_loop | infer ms | samples/s | peak MB "
            "| mem vs per_step_loop | input share | max abs diff (logits / grad) | neuron |"
        )
        out.append("|---|---:|---:|---:|---:|---:|---:|---:|---|---|")
        for r in rows:
            if "error" in r:
                out.append(f"| {r['impl']} | error: {r['error']} | | | | | | | | |")
                continue
            speed = f"{base / r['train_ms']:.2f}x" if base else "n/a"
            share = "n/a" if r.get("input_share") is None else f"{100 * r['input_share']:.1f} %"
            mem = r.get("peak_mem_mb")
            mem_ratio = f"{mem / base_mem:.2f}" if mem is not None and base_mem else "n/a"
            diff = (
                f"{r['max_abs_diff']:.1e} / {r['max_abs_grad_diff']:.1e}"
                if r.get("max_abs_diff") is not None
                else "n/a"
            )
            out.append(
                f"| {r['impl']} | {r['train_ms']:.1f} | {speed} | {r['infer_ms']:.1f} | "
                f"{r['samples_per_s']:.0f} | {fmt(mem, '.0f')} | {mem_ratio} | {share} | {diff} | {r['neuron']} |"
            )
        out.append(best_line(rows))
        out.append("")
    return "\n".join(out)


def best_line(rows: list[dict[str, Any]]) -> str:
    """One sentence: nmsnn's fastest implementation and how many times faster it is than the others."""
    timed = {r["impl"]: r["train_ms"] for r in rows if "error" not in r}
    ours = {k: v for k, v in timed.items() if k.startswith("nmsnn_") and k != "nmsnn_reference"}
    if not ours:
        return ""
    best = min(ours, key=ours.get)
    others = [f"{timed[k] / ours[best]:.2f}x {k}" for k in timed if not k.startswith("nmsnn_")]
    return (
        f"\nFastest nmsnn backend: `{best}` ({ours[best]:.2f} ms per training step): "
        + ", ".join(others)
        + "."
    )


def environment() -> dict[str, Any]:
    env: dict[str, Any] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
    }
    for name in ("numba", "triton", "snntorch", "spikingjelly"):
        if importlib.util.find_spec(name) is not None:
            from importlib.metadata import PackageNotFoundError, version

            try:
                env[name] = version(name)
            except PackageNotFoundError:
                env[name] = "installed"
    try:
        with open("/proc/cpuinfo") as f:
            env["cpu"] = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        env["cpu"] = platform.processor()
    if torch.cuda.is_available():
        env["gpu"] = torch.cuda.get_device_name(0)
    return env


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nmsnn.tools.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--workload", choices=[*WORKLOADS, "all"], default="all")
    parser.add_argument("--impls", help="comma-separated implementations (default: all available)")
    parser.add_argument("--json", type=Path, help="write the records to this JSON file")
    parser.add_argument("--quick", action="store_true", help="a tiny workload (for tests)")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds per implementation")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument(
        "--precision", choices=["fp32", "bf16"], default="fp32", help="bf16: forward and loss under autocast"
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is available")
    workloads = list(WORKLOADS) if args.workload == "all" else [args.workload]

    if args.worker:
        if args.threads:
            torch.set_num_threads(args.threads)
        workload = QUICK if args.quick else WORKLOADS[workloads[0]]
        print(json.dumps(worker(args.worker, workload, args.device, args.precision)))
        return 0

    impls = args.impls.split(",") if args.impls else all_impls(args.device)
    if args.quick:
        workloads = workloads[:1]
    env = environment()
    records = []
    for name in workloads:
        for impl in impls:
            record = run_worker(
                impl, name, args.device, args.quick, args.timeout, args.threads, args.precision
            )
            if args.quick:
                record["workload"] = QUICK.name
            record["environment"] = env
            records.append(record)
            print(f"{name:12s} {impl:20s} " + (record.get("error") or f"{record['train_ms']:.1f} ms/step"))
    print()
    print(markdown_table(records))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(records, indent=1) + "\n")
    return 0 if all("error" not in r for r in records) else 1


if __name__ == "__main__":
    sys.exit(main())
