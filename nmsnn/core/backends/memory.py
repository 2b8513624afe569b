"""Keep freed CPU memory in the process instead of handing it back to the OS after every step.

A training step allocates and frees the same large tensors (``[T, B, H]`` currents, spikes,
gradients: 8 MB each in the seed's setting, 128 MB on ``wide``) every time. glibc's malloc
serves blocks above its mmap threshold with fresh ``mmap`` calls and trims the top of its heap
when more than the trim threshold is free, so each step touched fresh pages again (page faults
were a large share of a small training step: ``experiments/kernel_design.md``).
:func:`retain_freed_memory` raises both thresholds once per process (``mallopt``),
so freed blocks are reused. The cost is that the process keeps its peak memory until it exits.
It is called by the ``numba`` backend on first use and by ``python -m nmsnn.tools.bench`` for every
implementation alike; set ``NMSNN_RETAIN_MEMORY=0`` to leave malloc's settings alone.
"""

from __future__ import annotations

import ctypes
import logging
import os
import platform

log = logging.getLogger(__name__)

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
LIMIT = 1 << 30  # blocks up to 1 GiB come from the heap; up to 2 GiB - 1 of free top is kept
_STATE: dict[str, bool] = {}


def retain_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds (once per process); ``True`` if they are set."""
    if "done" in _STATE:
        return _STATE["done"]
    done = False
    if os.environ.get("NMSNN_RETAIN_MEMORY", "1") != "0" and platform.libc_ver()[0] == "glibc":
        try:
            libc = ctypes.CDLL("libc.so.6")
            done = bool(libc.mallopt(M_MMAP_THRESHOLD, LIMIT)) and bool(
                libc.mallopt(M_TRIM_THRESHOLD, 2 * LIMIT - 1)
            )
        except (OSError, AttributeError):
            done = False
        log.debug("glibc malloc keeps freed memory: %s", done)
    _STATE["done"] = done
    return done
