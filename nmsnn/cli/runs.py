"""``nmsnn-runs DIR``: one table of the runs under a directory (single runs and sweeps alike).

nmsnn-runs logs/train                      # every run and sweep job, best val/loss first
nmsnn-runs logs/train/multiruns/<sweep> --sort test/acc --csv runs.csv
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="nmsnn-runs", description=__doc__.split("\n", 1)[0].strip("`"))
    parser.add_argument("directory", type=Path, help="a run, a sweep, or any folder holding runs")
    parser.add_argument(
        "--sort", default="val/loss", help="metric to sort by (default val/loss; direction by name)"
    )
    parser.add_argument("--csv", type=Path, help="also write the table as CSV (full precision)")
    parser.add_argument("--columns", nargs="+", help="metrics to show (default: every non-spike metric)")
    args = parser.parse_args(argv)
    if not args.directory.is_dir():
        print(f"error: {args.directory}: not a directory.", file=sys.stderr)
        return 2
    from nmsnn.files import write_csv
    from nmsnn.runs import runs_table
    from nmsnn.sweeps import markdown_table

    table = runs_table(args.directory, args.sort)
    if table.empty:
        print(
            f"error: {args.directory}: no runs found (no metrics.json, .hydra or FAILED below it).",
            file=sys.stderr,
        )
        return 2
    if args.csv:
        write_csv(table, args.csv, overwrite=True)
    shown = table
    if args.columns:
        missing = [c for c in args.columns if c not in table.columns]
        if missing:
            print(
                f"error: --columns {missing} are not in the table; it has {list(table.columns)}.",
                file=sys.stderr,
            )
            return 2
        fixed = [c for c in table.columns if not c.startswith(("val/", "test/", "train/"))]
        shown = table[[c for c in fixed if c not in args.columns] + args.columns]
    print(markdown_table(shown.map(lambda v: float(f"{v:.4g}") if isinstance(v, float) else v)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
