"""Epoch time of the bundled default with the spike-statistics callback on versus off.

Runs `nmsnn-train` (through Hydra's compose API) with early stopping off for a fixed number of
epochs, alternating callback on / off, and reports the median time per epoch (training and
validation, from epoch start to the end of validation): wall time, and the process's CPU time,
which other jobs on a shared machine disturb less. Torch runs on one thread so that CPU time is
not inflated by threads waiting for a busy core.

    python experiments/spike_stats_overhead.py [--epochs 30] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import lightning as L
import torch
from hydra import compose, initialize_config_module

from nmsnn.pipeline import train


class EpochTimer(L.Callback):
    def __init__(self) -> None:
        self.times: list[float] = []

        self.cpu: list[float] = []

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._start, self._cpu = time.perf_counter(), time.process_time()

    def on_validation_end(self, trainer, pl_module) -> None:  # after every callback's epoch end
        if not trainer.sanity_checking and trainer.state.fn == "fit":
            self.times.append(time.perf_counter() - self._start)
            self.cpu.append(time.process_time() - self._cpu)


TIMERS: dict[str, EpochTimer] = {}


def make_timer(key: str) -> EpochTimer:
    TIMERS[key] = EpochTimer()
    return TIMERS[key]


def epoch_times(stats_on: bool, epochs: int, key: str) -> tuple[list[float], list[float]]:
    overrides = [
        f"paths.output_dir={tempfile.mkdtemp()}",
        f"trainer.max_epochs={epochs}",
        "callbacks.early_stopping=null",
        "trainer.enable_progress_bar=false",
        "trainer.enable_model_summary=false",
        "+callbacks.timer._target_=__main__.make_timer",
        f"+callbacks.timer.key={key}",
    ]
    if not stats_on:
        overrides.append("callbacks.spike_statistics=null")
    with initialize_config_module("nmsnn.conf", version_base="1.3"):
        train(compose("train", overrides=overrides))
    return TIMERS[key].times[1:], TIMERS[key].cpu[1:]  # the first epoch includes warm-up


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    runs: dict[str, tuple[list[float], list[float]]] = {"off": ([], []), "on": ([], [])}
    for r in range(args.repeats):
        for name in ("off", "on"):
            wall, cpu = epoch_times(name == "on", args.epochs, f"{name}{r}")
            runs[name][0].extend(wall)
            runs[name][1].extend(cpu)
    for i, kind in enumerate(("wall", "CPU")):
        off, on = statistics.median(runs["off"][i]), statistics.median(runs["on"][i])
        print(
            f"median {kind} time per epoch: callback off {off * 1000:.1f} ms, on {on * 1000:.1f} ms "
            f"({len(runs['on'][i])} epochs each): overhead {100 * (on / off - 1):+.1f} %"
        )


if __name__ == "__main__":
    main()
