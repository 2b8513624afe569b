"""``python -m nmsnn.tools.bench`` on a tiny workload writes valid records (speed is not asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from nmsnn.tools.bench import WORKLOADS, markdown_table

KEYS = {"impl", "workload", "device", "train_ms", "infer_ms", "samples_per_s", "peak_mem_mb", "max_abs_diff"}


def test_bench_quick_writes_json_records(tmp_path: Path):
    out = tmp_path / "bench.json"
    result = subprocess.run(
        [sys.executable, "-m", "nmsnn.tools.bench", "--quick", "--threads", "1", "--json", str(out),
         "--impls", "per_step_loop,nmsnn_fused"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    records = json.loads(out.read_text())
    assert [r["impl"] for r in records] == ["per_step_loop", "nmsnn_fused"]
    for record in records:
        assert KEYS <= set(record), record
        assert record["workload"] == "quick" and record["device"] == "cpu"
        assert record["train_ms"] > 0 and record["infer_ms"] > 0 and record["samples_per_s"] > 0
        assert record["max_abs_diff"] < 1e-4  # same neuron as the reference, same weights and noise
    assert "| per_step_loop |" in result.stdout and "speed-up vs per_step_loop" in result.stdout


def test_markdown_table_reports_errors_and_ratios():
    records = [
        {"impl": "per_step_loop", "workload": "w", "device": "cpu", "train_ms": 10.0, "infer_ms": 1.0,
         "samples_per_s": 1.0, "peak_mem_mb": 100.0, "max_abs_diff": 0.0, "max_abs_grad_diff": 0.0,
         "neuron": "same"},
        {"impl": "nmsnn_x", "workload": "w", "device": "cpu", "train_ms": 2.0, "infer_ms": 1.0,
         "samples_per_s": 5.0, "peak_mem_mb": 25.0, "max_abs_diff": None, "neuron": "differs"},
        {"impl": "broken", "workload": "w", "device": "cpu", "error": "ImportError: nope"},
    ]  # fmt: skip
    table = markdown_table(records)
    assert "| nmsnn_x | 2.0 | 5.00x |" in table and "| 0.25 |" in table
    assert "error: ImportError: nope" in table
    assert set(WORKLOADS) == {"seed_binary", "wide"}


def test_bench_bf16_records_their_precision(tmp_path: Path):
    """``--precision bf16`` runs the step under autocast; differences are still against fp32."""
    out = tmp_path / "bench.json"
    result = subprocess.run(
        [sys.executable, "-m", "nmsnn.tools.bench", "--quick", "--threads", "1", "--json", str(out),
         "--impls", "per_step_loop,nmsnn_fused", "--precision", "bf16"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    records = json.loads(out.read_text())
    assert [r["precision"] for r in records] == ["bf16", "bf16"]
    assert all(0 < r["max_abs_diff"] < 1.0 for r in records)  # bf16 rounding: not zero, not garbage
    assert "(cpu, bf16)" in result.stdout and "Fastest nmsnn backend: `nmsnn_fused`" in result.stdout


def test_fastest_line_compares_the_best_nmsnn_backend_with_every_other():
    from nmsnn.tools.bench import best_line

    rows = [
        {"impl": "per_step_loop", "train_ms": 30.0},
        {"impl": "nmsnn_reference", "train_ms": 1.0},  # the reference is not a contender
        {"impl": "nmsnn_numba", "train_ms": 3.0},
        {"impl": "nmsnn_fused", "train_ms": 6.0},
        {"impl": "spikingjelly_triton", "train_ms": 4.5},
        {"impl": "snntorch", "error": "missing"},
    ]
    assert best_line(rows) == (
        "\nFastest nmsnn backend: `nmsnn_numba` (3.00 ms per training step): "
        "10.00x per_step_loop, 1.50x spikingjelly_triton."
    )
