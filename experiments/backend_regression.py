"""Did a change slow a backend down? ``python -m nmsnn.tools.bench`` at two commits, interleaved.

Runs ``python -m nmsnn.tools.bench --device cpu --workload all --threads 1`` from a checkout of the
``--before`` commit and from this working tree, alternating ``--rounds`` times (before, after,
before, after, ...), so that both sides see the same load on a shared machine. For every
implementation it keeps each side's fastest training and inference step (the least disturbed
measurement) and writes a table of after / before ratios beside every round's records.

    python experiments/backend_regression.py --before f2a5833 --rounds 2 \\
        --out experiments/results/backend_regression_neuron_models
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH = ["-m", "nmsnn.tools.bench", "--device", "cpu", "--workload", "all", "--threads", "1"]


def run_bench(tree: Path, out: Path) -> list[dict]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    subprocess.run([sys.executable, *BENCH, "--json", str(out)], cwd=tree, env=env, check=True)
    return json.loads(out.read_text())


def fastest(rounds: list[list[dict]]) -> dict[tuple[str, str], dict[str, float]]:
    best: dict[tuple[str, str], dict[str, float]] = {}
    for records in rounds:
        for r in records:
            if r.get("train_ms") is None:
                continue
            key = (r["workload"], r["impl"])
            seen = best.setdefault(key, {"train_ms": float("inf"), "infer_ms": float("inf")})
            seen["train_ms"] = min(seen["train_ms"], min(r.get("train_ms_all") or [r["train_ms"]]))
            seen["infer_ms"] = min(seen["infer_ms"], r["infer_ms"])
    return best


def table(before: dict, after: dict, commit: str, rounds: int) -> str:
    lines = [
        f"# Backend speed before and after: {commit} against the working tree",
        "",
        f"`python -m nmsnn.tools.bench --device cpu --workload all --threads 1`, {rounds} interleaved rounds "
        "per side on the same machine; each cell is the side's fastest step over its rounds.",
        "",
        "| workload | impl | train ms before | train ms after | after / before | infer ms before | infer ms after | after / before |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for key in sorted(set(before) & set(after)):
        b, a = before[key], after[key]
        lines.append(
            f"| {key[0]} | {key[1]} | {b['train_ms']:.1f} | {a['train_ms']:.1f} | {a['train_ms'] / b['train_ms']:.3f} "
            f"| {b['infer_ms']:.1f} | {a['infer_ms']:.1f} | {a['infer_ms'] / b['infer_ms']:.3f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", required=True, help="the commit to compare against")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", type=Path, required=True, help="prefix of the .md and .json outputs")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        old = Path(scratch) / "before"
        subprocess.run(["git", "worktree", "add", "--detach", str(old), args.before], cwd=ROOT, check=True)
        try:
            sides: dict[str, list[list[dict]]] = {"before": [], "after": []}
            for i in range(args.rounds):
                for side, tree in (("before", old), ("after", ROOT)):
                    sides[side].append(run_bench(tree, Path(scratch) / f"{side}_{i}.json"))
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(old)], cwd=ROOT, check=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps({"before_commit": args.before, **sides}, indent=1))
    text = table(fastest(sides["before"]), fastest(sides["after"]), args.before, args.rounds)
    args.out.with_suffix(".md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
