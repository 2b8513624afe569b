"""Would a population train as fast inside Lightning's fit loop as in its own loop?

Builds the members of a sweep as the population launcher does (the bundled default, one member
per configuration of ``--grid``), then trains them twice for the same epochs, each time from the
same initial weights and optimizer state:

* ``own loop``: a plain Python loop over epochs and batches, as the population launcher ran its
  members before it trained them through Lightning (no validation, so both sides do the same
  work);
* ``Lightning``: the same step (the stacked forward, the members' summed loss, one optimizer
  step) as the ``training_step`` of a manual-optimization ``LightningModule`` driven by
  ``L.Trainer.fit`` (no logger, checkpointing, progress bar or validation: Lightning's loop and
  hooks only).

Its result decided that the population trains in Lightning's fit loop
(:class:`~nmsnn.population.training.PopulationLoop`). It reports milliseconds per optimizer step, fastest of ``--repeats`` alternated rounds (the
machine is shared).

    python experiments/population_through_lightning.py [--members 16] [--epochs 10] [--repeats 3]
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import lightning as L
import torch
from hydra import compose, initialize_config_module

sys.path.insert(0, str(Path(__file__).resolve().parent))
from environment import cpu_name, now

from nmsnn.console import tidy_third_party_output
from nmsnn.files import write_text
from nmsnn.pipeline import build
from nmsnn.population.training import Member, PopulationTrainer

DECAYS = (0.7, 0.8, 0.9, 0.95)
THRESHOLDS = (0.5, 0.75, 1.0, 1.5)


def members(count: int, workdir: Path) -> list[Member]:
    """``count`` members of the default model on the bundled set, decay x threshold varying."""
    grid = [(d, t) for t in THRESHOLDS for d in DECAYS][:count]
    made, shared = [], None
    with initialize_config_module("nmsnn.conf", version_base="1.3"):
        for k, (decay, threshold) in enumerate(grid):
            cfg = compose(
                "train",
                overrides=[
                    f"paths.output_dir={workdir / str(k)}",
                    "logger=none",
                    f"model.neuron.decay={decay}",
                    f"model.neuron.threshold={threshold}",
                ],
            )
            datamodule, module = build(cfg, datamodule=shared)
            shared = datamodule
            made.append(Member(cfg, module, datamodule, workdir / str(k)))
    return made


def own_loop(trainer: PopulationTrainer, epochs: int) -> float:
    """Seconds for ``epochs`` training epochs of the population's own loop."""
    start = time.perf_counter()
    for epoch in range(epochs):  # the loop nmsnn's population ran before it ran in Lightning's
        active = trainer.active()
        batches = trainer.epoch_batches(epoch, active)
        sums, seen = {k: [0.0, 0] for k in active}, {k: [] for k in active}
        for step in range(len(batches[active[0]])):
            if not trainer.train_step(epoch, step, batches, sums, seen):
                break
        trainer.end_train_epoch(epoch, active, sums, seen)
    return time.perf_counter() - start


class LightningPopulation(L.LightningModule):
    """The population's training epoch inside Lightning's loop (manual optimization): the same
    :meth:`PopulationTrainer.train_step` per batch and the same end-of-epoch work."""

    def __init__(self, trainer: PopulationTrainer) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.population = trainer
        self.members = torch.nn.ModuleList([m.module for m in trainer.members])

    def on_train_epoch_start(self) -> None:
        self.active = self.population.active()
        self.batches = self.population.epoch_batches(self.current_epoch, self.active)
        self.sums = {k: [0.0, 0] for k in self.active}
        self.seen = {k: [] for k in self.active}

    def training_step(self, step: torch.Tensor, batch_idx: int) -> None:
        self.population.train_step(self.current_epoch, batch_idx, self.batches, self.sums, self.seen)

    def on_train_epoch_end(self) -> None:
        self.population.end_train_epoch(self.current_epoch, self.active, self.sums, self.seen)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return self.population.optimizer


def lightning_loop(trainer: PopulationTrainer, epochs: int) -> float:
    """Seconds for ``epochs`` epochs of the same step driven by ``L.Trainer.fit``."""
    steps = len(trainer.data[0]["train"][2])
    loader = torch.utils.data.DataLoader(torch.arange(steps), batch_size=None)
    module = LightningPopulation(trainer)
    fit = trainer.loop_trainer(epochs)
    start = time.perf_counter()
    fit.fit(module, train_dataloaders=loader)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--members", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).parent / "results" / "population_through_lightning"
    )
    args = parser.parse_args()
    tidy_third_party_output()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        built = members(args.members, Path(tmp))
        start_state = [copy.deepcopy(m.module.state_dict()) for m in built]
        times: dict[str, list[float]] = {"own loop": [], "Lightning": []}
        steps = None
        for _ in range(args.repeats):
            for name, run in (("own loop", own_loop), ("Lightning", lightning_loop)):
                for member, state in zip(built, start_state):
                    member.module.load_state_dict(state)
                trainer = PopulationTrainer(built)
                steps = len(trainer.data[0]["train"][2]) * args.epochs
                times[name].append(run(trainer, args.epochs))
    per_step = {name: 1000 * min(values) / steps for name, values in times.items()}
    ratio = per_step["Lightning"] / per_step["own loop"]
    record = {
        "date": now(),
        "machine": f"{platform.machine()}, {cpu_name()}, torch threads 1",
        "members": args.members,
        "epochs": args.epochs,
        "steps": steps,
        "ms_per_step": per_step,
        "all_seconds": times,
        "lightning_over_own": ratio,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_text(json.dumps(record, indent=2), args.out.with_suffix(".json"), overwrite=True)
    lines = [
        "# The population's training step: its own loop against Lightning's fit loop",
        "",
        f"Generated {record['date']} by `experiments/population_through_lightning.py --members "
        f"{args.members} --epochs {args.epochs} --repeats {args.repeats}`. Machine: {record['machine']}.",
        f"{args.members} members of the default model on the bundled breast-cancer set (decay x threshold "
        f"grid), {steps} optimizer steps, the same step in both; fastest of {args.repeats} alternated rounds.",
        "",
        "| loop | ms per step |",
        "| --- | --- |",
        *(f"| {name} | {value:.2f} |" for name, value in per_step.items()),
        "",
        f"Lightning / own loop: {ratio:.2f}x.",
        "",
    ]
    write_text("\n".join(lines), args.out.with_suffix(".md"), overwrite=True)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
