"""Epoch time of the bundled default with the spike-statistics callback on versus off.

Runs `nmsnn-train` (through Hydra's compose API) with early stopping off for a fixed number of
epochs, alternating callback on / off, and reports the median wall time per epoch (training and
validation, measured from epoch start to the end of validation).

    python experiments/spike_stats_overhead.py [--epochs 30] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import lightning as L
from hydra import compose, initialize_config_module

from nmsnn.cli.train import train


class EpochTimer(L.Callback):
    def __init__(self) -> None:
        self.times: list[float] = []

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._start = time.perf_counter()

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking and trainer.state.fn == "fit":
            self.times.append(time.perf_counter() - self._start)


TIMERS: dict[str, EpochTimer] = {}


def make_timer(key: str) -> EpochTimer:
    TIMERS[key] = EpochTimer()
    return TIMERS[key]


def epoch_times(stats_on: bool, epochs: int, key: str) -> list[float]:
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
    return TIMERS[key].times[1:]  # the first epoch includes warm-up


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    on, off = [], []
    for r in range(args.repeats):
        off += epoch_times(False, args.epochs, f"off{r}")
        on += epoch_times(True, args.epochs, f"on{r}")
    m_on, m_off = statistics.median(on), statistics.median(off)
    print(f"median epoch time, callback off: {m_off * 1000:.1f} ms ({len(off)} epochs)")
    print(f"median epoch time, callback on:  {m_on * 1000:.1f} ms ({len(on)} epochs)")
    print(f"mean epoch time off/on: {statistics.mean(off) * 1000:.1f} / {statistics.mean(on) * 1000:.1f} ms")
    print(f"overhead (medians): {100 * (m_on / m_off - 1):+.1f} %; (means): {100 * (statistics.mean(on) / statistics.mean(off) - 1):+.1f} %")


if __name__ == "__main__":
    main()
