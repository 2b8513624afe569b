"""A probe callback: each ensemble member's own best epoch with ``data.folds`` (classification).

With ``data.folds=F`` all members share one stopping epoch and one tested checkpoint, chosen on
their mean out-of-fold loss. This callback asks what choosing per member would give: at every
validation epoch it computes member k's cross-entropy on the rows of its held-out fold
(``k % F``), keeps each member's weights at its lowest, and at the end of the fit scores on the
test rows (a) the members at the epoch of the lowest mean loss, what the checkpoint holds, and
(b) each member at its own best epoch, averaged. Both come from the same training run. It
writes ``member_best.json`` into the run directory. Not part of the package: a measurement.

    PYTHONPATH=$PWD/experiments python experiments/tabular_suite.py --only-nmsnn --seeds 2 3 4 \\
        --tables birthwt mroz participation hdma chile titanic kyphosis \\
        --variant 'mb=data.folds=4,+callbacks.member_best={_target_:member_best.MemberBest}' \\
        --variants mb --out /tmp/mb/out --work-dir /tmp/mb/work
    python experiments/member_best.py --runs /tmp/mb/out.json --work-dir /tmp/mb/work
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from lightning.pytorch.callbacks import Callback

RESULTS = Path(__file__).resolve().parent / "results" / "tabular_suite.json"


def _batches(loader, module):
    for batch in loader:
        batch = {k: v.to(module.device) if torch.is_tensor(v) else v for k, v in batch.items()}
        yield module.on_after_batch_transfer(batch, 0)


def _state(module) -> dict[str, torch.Tensor]:
    return {name: t.detach().cpu().clone() for name, t in module.state_dict().items()}


class MemberBest(Callback):
    """Keeps each member's state at its lowest loss on its own held-out fold (see the module)."""

    def __init__(self) -> None:
        self.best: list[float] = []
        self.states: list[dict | None] = []
        self.epochs: list[int | None] = []
        self.joint = (float("inf"), None, None)  # (mean loss, epoch, state)

    @torch.no_grad()
    def on_validation_epoch_end(self, trainer, module) -> None:
        if trainer.sanity_checking or module.task != "classification":
            return
        folds, members = module.hparams.folds, module.hparams.ensemble
        was_training = module.training
        module.eval()
        sums, counts = torch.zeros(members), torch.zeros(members)
        for batch in _batches(trainer.datamodule.val_dataloader(), module):
            prediction = module(batch["x"]).prediction  # [B, K, C]
            for k in range(members):  # the module's own loss, member k alone on its held-out rows
                rows = batch["fold"] == k % folds
                sums[k] += module.row_losses(prediction[rows, k : k + 1], batch["y"][rows]).sum().cpu()
                counts[k] += rows.sum().cpu()
        module.train(was_training)
        loss = sums / counts
        if not self.best:
            self.best, self.states, self.epochs = [float("inf")] * members, [None] * members, [None] * members
        state = None
        for k in range(members):
            if loss[k] < self.best[k]:
                state = state or _state(module)
                self.best[k], self.states[k], self.epochs[k] = float(loss[k]), state, trainer.current_epoch
        if float(loss.mean()) < self.joint[0]:
            self.joint = (float(loss.mean()), trainer.current_epoch, state or _state(module))

    @torch.no_grad()
    def on_fit_end(self, trainer, module) -> None:
        if not self.best:  # a regression run, or no validation epoch
            return
        current, was_training = _state(module), module.training
        module.eval()

        def test_outputs(state):
            module.load_state_dict(state)
            outputs, targets = [], []
            for batch in _batches(trainer.datamodule.test_dataloader(), module):
                outputs.append(module(batch["x"]).prediction.cpu())  # [B, K, C]
                targets.append(batch["y"].cpu())
            return torch.cat(outputs), torch.cat(targets)

        def accuracy(outputs):  # the members' mean probabilities, as the module predicts
            return float((module.predict_values(outputs).argmax(-1) == y).float().mean())

        joint, y = test_outputs(self.joint[2])
        own = torch.stack([test_outputs(s)[0][:, k] for k, s in enumerate(self.states)], 1)
        result = {
            "joint_acc": accuracy(joint),
            "member_acc": accuracy(own),
            "joint_epoch": self.joint[1],
            "member_epochs": self.epochs,
        }
        module.load_state_dict(current)
        module.train(was_training)
        Path(trainer.default_root_dir, "member_best.json").write_text(json.dumps(result))


def main(argv: list[str] | None = None) -> None:
    """Print, per table, the two scores' mean gap to the best baseline of Table 1 (same seeds)."""
    p = argparse.ArgumentParser(description="Summarize MemberBest's runs of tabular_suite.py.")
    p.add_argument("--runs", type=Path, required=True, help="tabular_suite.py's <out>.json")
    p.add_argument("--work-dir", type=Path, required=True, help="tabular_suite.py's --work-dir")
    args = p.parse_args(argv)
    baselines: dict[str, dict[str, dict[int, float]]] = defaultdict(lambda: defaultdict(dict))
    for r in json.loads(RESULTS.read_text())["records"]:
        if r["kind"] == "baseline" and r["task"] == "classification" and r.get("status", "ok") == "ok":
            baselines[r["table"]][r["name"]][r["seed"]] = r["metrics"]["acc"]
    runs: dict[str, dict[int, dict]] = defaultdict(dict)
    for r in json.loads(args.runs.read_text())["records"]:
        found = list(args.work_dir.glob(f"**/{r['run_name']}/member_best.json"))
        if found:
            runs[r["table"]][r["seed"]] = json.loads(found[0].read_text())
    gaps: dict[str, list[float]] = defaultdict(list)
    print("| table | best baseline | shared epoch | each member's own epoch |\n|---|---|---|---|")
    for table, by_seed in runs.items():
        seeds = sorted(by_seed)
        means = {n: np.mean([b[s] for s in seeds]) for n, b in baselines[table].items()}
        best = max(means, key=means.get)
        cells = []
        for kind in ("joint_acc", "member_acc"):
            gap = float(np.mean([by_seed[s][kind] for s in seeds]) - means[best])
            gaps[kind].append(gap)
            cells.append(f"{gap:+.3f}")
        print(f"| {table} | {means[best]:.3f} ({best}) | " + " | ".join(cells) + " |")
    print("| mean | | " + " | ".join(f"{np.mean(gaps[k]):+.4f}" for k in ("joint_acc", "member_acc")) + " |")


if __name__ == "__main__":
    sys.exit(main())
