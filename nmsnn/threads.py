"""CPU threads that hold up on a shared machine.

Two settings, applied by every entry point and by the estimators:

* OpenMP's wait policy. libgomp (torch's and numba's thread pools) spins a waiting thread for a
  while before it sleeps; on a machine whose cores are busy with anything else, those spinning
  threads take the cores from the threads doing the work and a run becomes several times slower.
  :func:`set_wait_policy` sets ``OMP_WAIT_POLICY=PASSIVE`` unless the user set it. libgomp reads it
  once, when torch loads it, so it has to run before ``import torch``.
* The number of threads. A small model's per-step work is too little to split: the second thread
  only adds synchronization (and contention, when another process wants the core). ``threads=auto``
  uses one thread below :data:`SMALL_WORK`, else the cores (divided among a sweep's parallel jobs).

``OMP_NUM_THREADS`` (and an explicit ``threads=N``) always win over ``auto``. Nothing here imports
torch at module level.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator

log = logging.getLogger(__name__)

WAIT_POLICY_ENV = "OMP_WAIT_POLICY"
THREADS_ENV = "OMP_NUM_THREADS"
# Elements one time step of the recurrence touches (rows per batch x the widest layer): below it
# one thread does as well as more, and better beside a busy process; above it more threads win
# (experiments/kernel_design.md)
SMALL_WORK = 100_000


def set_wait_policy() -> bool:
    """``OMP_WAIT_POLICY=PASSIVE`` unless set; False when torch was already imported (too late)."""
    if "torch" in sys.modules:
        return False
    os.environ.setdefault(WAIT_POLICY_ENV, "PASSIVE")
    return True


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity, e.g. a SLURM or container limit)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def choose_threads(setting: int | str | None, work: int, parallel_jobs: int = 1) -> tuple[int | None, str]:
    """The thread count for ``setting`` (``auto``, ``None`` = auto, or a positive int) and why;
    ``None``: leave torch's own setting (``OMP_NUM_THREADS`` was given)."""
    if setting not in (None, "auto"):
        if isinstance(setting, bool) or not str(setting).isdigit() or int(setting) < 1:
            from nmsnn.errors import ConfigError

            raise ConfigError(f"threads={setting!r} must be a positive integer or auto.")
        return int(setting), "threads=" + str(int(setting))
    if os.environ.get(THREADS_ENV):
        return None, f"{THREADS_ENV}={os.environ[THREADS_ENV]}"
    cores = usable_cores()
    if parallel_jobs > 1:
        return max(1, cores // parallel_jobs), f"auto: {cores} cores shared by {parallel_jobs} parallel jobs"
    if work < SMALL_WORK:
        return 1, f"auto: {work:,} elements per step is small work"
    return cores, f"auto: {work:,} elements per step"


def apply_threads(setting: int | str | None, work: int, parallel_jobs: int = 1) -> int:
    """Set torch's intra-op threads as :func:`choose_threads` says, log it once, return the count."""
    import torch

    threads, why = choose_threads(setting, work, parallel_jobs)
    if threads is not None and threads != torch.get_num_threads():
        torch.set_num_threads(threads)
    count = torch.get_num_threads()
    log.info("CPU threads: %d (%s; threads=N or %s=N to change)", count, why, THREADS_ENV)
    return count


@contextlib.contextmanager
def threads_for(setting: int | str | None, work: int) -> Iterator[int]:
    """:func:`apply_threads` for the span of a block (a library call such as an estimator's
    ``fit``), restoring the caller's thread count after it."""
    import torch

    before = torch.get_num_threads()
    threads, _ = choose_threads(setting, work)
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(before)
