"""Worker processes for CPU-bound decoding (verify's files, restore's spans).

Decoding is Python per page and the LZ4 and CRC codecs hold the GIL, so threads do not add cores;
processes do. Workers are forked where the platform can (no re-import, and a restore worker
inherits the output file's descriptor); elsewhere callers stay in one process.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import os


def default_jobs() -> int:
    """One worker per core this process may run on, at most 8."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return max(1, min(cores, 8))


def can_fork() -> bool:
    return "fork" in multiprocessing.get_all_start_methods()


def fork_pool(workers: int) -> concurrent.futures.ProcessPoolExecutor:
    """A pool of `workers` forked processes (call only where `can_fork()`)."""
    return concurrent.futures.ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("fork"))
