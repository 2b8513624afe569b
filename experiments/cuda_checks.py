"""Correctness checks of the CUDA paths on a real GPU (the test suite runs Triton in its CPU
interpreter only).

    python experiments/cuda_checks.py [--device cuda] [--json FILE]

1. ``triton`` against the reference backend in the same dtype on the same device: random shapes
   (including widths past one block and the seed's T=500), both resets, both spike functions,
   fp32 and fp64, per-neuron parameters, an incoming state; outputs within 1e-5 and parameter
   gradients within 1e-4 relative (float32 sums over many neuron-steps). For fp32 the distance of
   both from the float64 reference is reported too: over hundreds of steps one spike gate flipped
   by rounding moves the outputs by O(1) in either implementation.
2. bf16 currents (autocast's dtype): the kernels compute in fp32 and store bf16; compared with
   the fp32 kernels on the same rounded inputs.
3. A population (3 members) against each member alone on the device: predictions and gradients.

With ``--device cpu`` (and ``TRITON_INTERPRET=1``) the same checks run, smaller, in Triton's
interpreter: that is how this script itself is tested before it meets a GPU.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from nmsnn.core.backends import get_backend
from nmsnn.core.neuron import NeuronState, reference_recurrence
from nmsnn.core.neurons import LIF


def run(fn, current, params, state, weights, config):
    out = fn(current, params, config, state)
    loss = (out.spikes.float() * weights[0]).sum() + (out.membrane.float() * weights[1]).sum()
    loss = (
        loss
        + (out.state.inner.float() * weights[2, 0]).sum()
        + (out.state.outer.float() * weights[3, 0]).sum()
    )
    inputs = [current, *params, state.inner, state.outer]
    grads = torch.autograd.grad(loss, inputs)
    return [out.spikes, out.membrane, out.state.inner, out.state.outer], list(grads)


def case(steps, batch, hidden, dtype, device, gen):
    def rnd(*shape, scale=1.0, shift=0.0):
        x = torch.rand(*shape, generator=gen, dtype=torch.float64) * scale + shift
        return x.to(device=device, dtype=dtype).requires_grad_()

    current = ((torch.randn(steps, batch, hidden, generator=gen, dtype=torch.float64) * 2)
               .to(device=device, dtype=dtype).requires_grad_())  # fmt: skip
    params = (rnd(hidden, scale=0.6, shift=0.3), rnd(hidden, scale=1.0, shift=0.3), rnd(hidden, scale=1.5))
    state = NeuronState(rnd(batch, hidden, scale=2.0, shift=-1.0), rnd(batch, hidden))
    weights = torch.randn(4, steps, batch, hidden, generator=gen, dtype=torch.float64).to(
        device, torch.float32
    )
    return current, params, state, weights


def as64(c):
    current, params, state, weights = c

    def d(t):
        return t.detach().double().requires_grad_()

    return (
        d(current),
        tuple(d(p) for p in params),
        NeuronState(d(state.inner), d(state.outer)),
        weights.double(),
    )


def worst(got, want):
    return max(float((g.detach().double() - w.detach().double()).abs().max()) for g, w in zip(got, want))


def check_reference(device: str, shapes, gen) -> dict:
    triton_fn = get_backend("triton")
    out = {"cases": 0, "worst_output": 0.0, "worst_param_grad": 0.0, "fp32_vs_float64": {}}
    failures = []
    for steps, batch, hidden in shapes:
        for reset in ("subtract", "scale"):
            for spike_fn in ("relu", "heaviside"):
                for dtype in (torch.float32, torch.float64):
                    config = LIF(reset=reset, spike_fn=spike_fn)
                    c = case(steps, batch, hidden, dtype, device, gen)
                    got_out, got_grads = run(triton_fn, *c, config)
                    ref_out, ref_grads = run(reference_recurrence, *c, config)
                    w_out, w_par = distances(got_out, got_grads, ref_out, ref_grads)
                    out["cases"] += 1
                    out["worst_output"] = max(out["worst_output"], w_out)
                    out["worst_param_grad"] = max(out["worst_param_grad"], w_par)
                    label = f"T={steps} B={batch} H={hidden} {reset}/{spike_fn}/{str(dtype)[6:]}"
                    if w_out > 1e-5 or w_par > 1e-4:
                        failures.append(f"{label}: {w_out:.2e} / {w_par:.2e}")
                    if dtype == torch.float32:
                        exact_out, exact_grads = run(reference_recurrence, *as64(c), config)
                        out["fp32_vs_float64"][label] = {
                            "triton": distances(got_out, got_grads, exact_out, exact_grads),
                            "reference": distances(ref_out, ref_grads, exact_out, exact_grads),
                        }
    out["failures"] = failures
    return out


def distances(got_out, got_grads, ref_out, ref_grads) -> tuple[float, float]:
    """Largest difference of the outputs and the input/state gradients, and the largest relative
    difference ``|g - r| / (1 + |r|)`` of the decay/threshold/penalty gradients."""
    w_out = max(
        worst(got_out, ref_out), worst([got_grads[0], *got_grads[4:]], [ref_grads[0], *ref_grads[4:]])
    )
    w_par = max(
        float(((g.double() - r.double()).abs() / (1 + r.double().abs())).max())
        for g, r in zip(got_grads[1:4], ref_grads[1:4])
    )
    return w_out, w_par


def check_bf16(device: str, gen) -> dict:
    config = LIF(reset="scale")
    c = case(64, 8, 96, torch.bfloat16, device, gen)
    out16, grads16 = run(get_backend("triton"), *c, config)
    current, params, state, weights = c

    def f32(t):
        return t.detach().float().requires_grad_()

    c32 = (
        f32(current),
        tuple(f32(p) for p in params),
        NeuronState(f32(state.inner), f32(state.outer)),
        weights,
    )
    out32, grads32 = run(get_backend("triton"), *c32, config)
    # outputs stored as bf16: within one bf16 ulp (2^-7 relative) of the fp32 results (Triton's
    # interpreter truncates where the GPU rounds to nearest)
    rel = max(
        float(((a.detach().float() - b.detach()).abs() / (b.detach().abs() + 1e-3)).max())
        for a, b in zip(out16, out32)
    )
    # gradients: the current's in bf16, the parameters' summed in fp32 from bf16-rounded terms
    grad_rel = max(float((a.float() - b).norm() / b.norm()) for a, b in zip(grads16, grads32))
    return {
        "dtypes": [str(t.dtype) for t in out16[:2]] + [str(grads16[0].dtype)],
        "worst_relative_output": rel,
        "worst_relative_grad_norm": grad_rel,
        "ok": rel <= 2**-7 + 1e-6 and grad_rel <= 1e-2 and out16[0].dtype == torch.bfloat16,
    }


def check_population(device: str) -> dict:
    from nmsnn.lit.module import SpikingModule
    from nmsnn.population.network import PopulationNetwork

    members = []
    for k, (decay, threshold) in enumerate([(0.8, 1.0), (0.9, 0.5), (0.95, 2.0)]):
        torch.manual_seed(k)
        members.append(
            SpikingModule("classification", 5, 3, hidden=[24], neuron={"decay": decay, "threshold": threshold})
            .to(device)
        )  # fmt: skip
    inputs = [m.encode(torch.randn(7, 5, device=device)) for m in members]
    targets = [torch.randint(0, 3, (7,), device=device) for _ in members]
    predictions = PopulationNetwork(members)(inputs)
    sum(m.loss(predictions[k], targets[k]) for k, m in enumerate(members)).backward()
    together = [[p.grad.clone() for p in m.parameters()] for m in members]
    pred_diff, grad_diff, bitwise = 0.0, 0.0, True
    for k, member in enumerate(members):
        member.zero_grad()
        alone = member(inputs[k]).prediction
        pred_diff = max(pred_diff, float((alone - predictions[k].detach()).abs().max()))
        bitwise &= torch.equal(alone, predictions[k].detach())
        member.loss(alone, targets[k]).backward()
        for p, g in zip(member.parameters(), together[k]):
            grad_diff = max(grad_diff, float((p.grad - g).abs().max()))
            bitwise &= torch.equal(p.grad, g)
    return {"max_prediction_diff": pred_diff, "max_grad_diff": grad_diff, "bitwise": bitwise,
            "ok": pred_diff <= 1e-5 and grad_diff <= 1e-5}  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cuda")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    gen = torch.Generator().manual_seed(0)
    if args.device == "cuda":
        shapes = [(1, 1, 1), (7, 3, 5), (64, 16, 33), (500, 64, 64), (37, 64, 1100), (64, 128, 600)]
    else:
        shapes = [(1, 1, 1), (7, 2, 5), (13, 3, 9)]
    report = {"device": torch.cuda.get_device_name(0) if args.device == "cuda" else "cpu (interpreter)",
              "torch": torch.__version__}  # fmt: skip
    import triton

    report["triton"] = triton.__version__
    for name, fn in [
        ("reference", lambda: check_reference(args.device, shapes, gen)),
        ("bf16", lambda: check_bf16(args.device, gen)),
        ("population", lambda: check_population(args.device)),
    ]:
        start = time.perf_counter()
        try:
            report[name] = fn()
        except Exception as err:  # report every check, even after one breaks
            report[name] = {"error": f"{type(err).__name__}: {err}"}
        report[name]["seconds"] = round(time.perf_counter() - start, 1)
        print(name, json.dumps(report[name]), flush=True)
    ok = (
        not report["reference"].get("failures", ["error"])
        and report["bf16"].get("ok")
        and report["population"].get("ok")
    )
    report["all_ok"] = bool(ok)
    print("ALL OK" if ok else "SOME CHECK FAILED")
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
