"""Fastest of 8 training steps of ``python -m nmsnn.tools.bench``'s seed_binary workload, one thread,
for the implementations named on the command line: a quick check to interleave between two
checkouts when the full benchmark's medians move with the machine's load.

    PYTHONPATH=TREE python experiments/backend_step_timing.py nmsnn_reference,nmsnn_fused,nmsnn_numba
"""

import json
import sys
import time

import torch

from nmsnn.tools.bench import WORKLOADS, build


def fastest_step(impl: str, steps: int = 8) -> float:
    """Milliseconds of the fastest of ``steps`` training steps (after two warm-up steps)."""
    workload = WORKLOADS["seed_binary"]
    torch.manual_seed(0)
    model = build(impl, workload)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.randn(workload.batch, workload.features)
    y = torch.randint(0, 2, (workload.batch,))

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(x).float(), y).backward()
        optimizer.step()

    step()
    step()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        times.append((time.perf_counter() - start) * 1e3)
    return min(times)


if __name__ == "__main__":
    torch.set_num_threads(1)
    print(json.dumps({impl: fastest_step(impl) for impl in sys.argv[1].split(",")}))
