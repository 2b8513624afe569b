"""``nmsnn-runs DIR``: one table of the runs under a directory (single runs and sweeps alike).

nmsnn-runs logs/train                      # every run and sweep job, best val/loss first
nmsnn-runs logs/train/multiruns/<sweep> --sort test/acc --csv runs.csv
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="nmsnn-runs", description=__doc__.split("\n", 1)[0].replace("``", "")
    )
    parser.add_argument("directory", type=Path, help="a run, a sweep, or any folder holding runs")
    parser.add_argument(
        "--sort", help="metric to sort by (default val/loss where the runs have it; direction by name)"
    )
    parser.add_argument("--csv", type=Path, help="also write the table as CSV (full precision)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --csv file")
    parser.add_argument("--columns", nargs="+", help="metrics to show (default: every non-spike metric)")
    args = parser.parse_args(argv)
    if not args.directory.is_dir():
        print(f"error: {args.directory}: not a directory.", file=sys.stderr)
        return 2
    if args.csv and args.csv.exists() and not args.overwrite:
        print(f"error: {args.csv} exists; pass --overwrite to replace it.", file=sys.stderr)
        return 2
    from nmsnn.files import write_csv
    from nmsnn.runs import runs_table
    from nmsnn.sweeps import markdown_table

    table = runs_table(args.directory, args.sort or "val/loss")
    if table.empty:
        print(
            f"error: {args.directory}: no runs found (no metrics.json, .hydra or FAILED below it).",
            file=sys.stderr,
        )
        return 2
    unknown = [
        c for c in [*(args.columns or []), *([args.sort] if args.sort else [])] if c not in table.columns
    ]
    if unknown:
        print(f"error: {unknown} not in the table; it has {list(table.columns)}.", file=sys.stderr)
        return 2
    if args.csv:
        write_csv(table, args.csv, overwrite=True)
    shown = table
    if args.columns:
        fixed = [c for c in table.columns if not c.startswith(("val/", "test/", "train/"))]
        shown = table[[c for c in fixed if c not in args.columns] + args.columns]
    try:
        print(markdown_table(shown.map(lambda v: float(f"{v:.4g}") if isinstance(v, float) else v)))
        sys.stdout.flush()
    except BrokenPipeError:  # nmsnn-runs DIR | head: the reader has all it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


if __name__ == "__main__":
    sys.exit(main())
