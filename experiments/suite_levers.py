"""Quick lever measurements on the tabular suite, in one process (for choosing defaults).

Runs ``nmsnn.pipeline.train`` (the code path of ``nmsnn-train``) on the suite's tables for a few
seeds with the given overrides, and prints, per table and task, nmsnn's mean minus the best mean
baseline (of ``experiments/tabular_suite.py``'s cached baselines: run that script first to fill
``results/tabular_suite_baselines.json``) and minus the linear one. In-process runs skip the
start-up of one process per run, so a 14-table pass over 2 seeds takes a few minutes; the
results quoted in the README come from ``tabular_suite.py``, not from this script.

    python experiments/suite_levers.py --seeds 0 1 --label wd0.1 model.optimizer.weight_decay=0.1
    python experiments/suite_levers.py --tables cpus,mpg --label narrow model.hidden=[64]
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import tempfile
import time
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SUITE = REPO.parent / "shared" / "data" / "tabular-suite"
CACHE = REPO / "experiments" / "results" / "tabular_suite_baselines.json"
BASELINES = ("linear", "mlp", "rf", "hgb", "xgb", "lgbm")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--label", default="run")
    parser.add_argument("--tables", type=lambda s: s.split(","), help="comma-separated (default: all)")
    parser.add_argument("--suite-dir", type=Path, default=SUITE)
    parser.add_argument("overrides", nargs="*", help="nmsnn-train overrides")
    args = parser.parse_args()

    from hydra import compose, initialize_config_dir

    from nmsnn.pipeline import train

    suite = json.loads((args.suite_dir / "suite.json").read_text())
    cache = json.loads(CACHE.read_text())
    logging.disable(logging.WARNING)
    warnings.filterwarnings("ignore")
    gaps: dict[str, list[tuple[float, float]]] = {}
    work = Path(tempfile.mkdtemp(prefix="nmsnn-levers-"))
    start = time.perf_counter()
    for table in args.tables or list(suite):
        spec = suite[table]
        metric = "acc" if spec["task"] == "classification" else "r2"
        keys = [f"{table}|{s}|{b}" for s in args.seeds for b in BASELINES]
        if not all(k in cache for k in keys):
            print(f"{table}: no cached baselines for seeds {args.seeds}; skipped")
            continue
        mine = []
        for seed in args.seeds:
            out = work / f"{table}-{seed}"
            overrides = [
                "data=csv",
                f"data.path={args.suite_dir / spec['file']}",
                f"data.target={spec['target']}",
                f"seed={seed}",
                "logger=none",
                "trainer.enable_progress_bar=false",
                "trainer.enable_model_summary=false",
                f"paths.output_dir={out}",
                "resume=never",
                *args.overrides,
            ]
            with initialize_config_dir(config_dir=str(REPO / "conf"), version_base=None):
                cfg = compose("train", overrides=overrides)
            mine.append(train(cfg)[f"test/{metric}"])
        means = {
            b: statistics.fmean(cache[f"{table}|{s}|{b}"]["metrics"][metric] for s in args.seeds)
            for b in BASELINES
        }
        value = statistics.fmean(mine)
        best = max(means, key=means.get)
        gap, linear = value - means[best], value - means["linear"]
        gaps.setdefault(spec["task"], []).append((gap, linear))
        print(
            f"{table:14s} {value:.3f}  best {means[best]:.3f} ({best})  gap {gap:+.3f}  vs linear {linear:+.3f}"
        )
    print(
        f"== {args.label}: {' '.join(args.overrides) or '(defaults)'}; seeds {args.seeds}; "
        f"{time.perf_counter() - start:.0f} s"
    )
    for task, values in gaps.items():
        print(
            f"{task}: mean nmsnn - best {statistics.fmean(g for g, _ in values):+.4f}, "
            f"mean nmsnn - linear {statistics.fmean(lin for _, lin in values):+.4f}, "
            f"worst nmsnn - best {min(g for g, _ in values):+.3f}"
        )


if __name__ == "__main__":
    main()
