"""Shared by the experiment scripts: what machine and when, for their result tables."""

from __future__ import annotations

import platform
from datetime import datetime, timezone
from pathlib import Path


def cpu_name() -> str:
    """The CPU's model name (from /proc/cpuinfo where there is one)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def now() -> str:
    """The current UTC time, as the result tables print it."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
