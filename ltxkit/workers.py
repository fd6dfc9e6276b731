"""Worker processes for CPU-bound decoding (verify's files, restore's spans).

Decoding is Python per page and the LZ4 and CRC codecs hold the GIL, so threads do not add cores;
processes do. Workers are forked where the platform can (no re-import, and a restore worker
inherits the output file's descriptor); elsewhere callers stay in one process.

Two shapes: `fork_pool` for many tasks (verify's files), and `fork_call` for one call in one
child (restore's spans), which costs a fork and a pipe instead of a pool's start-up (about 60 ms
here: importing multiprocessing, a manager thread, queues).
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import concurrent.futures


def default_jobs() -> int:
    """One worker per core this process may run on, at most 8."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return max(1, min(cores, 8))


def can_fork() -> bool:
    return hasattr(os, "fork")


def fork_pool(workers: int) -> concurrent.futures.ProcessPoolExecutor:
    """A pool of `workers` forked processes (call only where `can_fork()`)."""
    import concurrent.futures
    import multiprocessing

    return concurrent.futures.ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("fork"))


class WorkerDied(Exception):
    """A forked worker ended without handing anything back (killed, or it exited before sending)."""


class Forked:
    """One call running in a forked child; `wait()` reaps it, `result()` returns or raises its outcome."""

    def __init__(self, pid: int, read_fd: int) -> None:
        self._pid = pid
        self._fd = read_fd
        self._outcome: tuple[bool, Any] | None = None

    def wait(self) -> None:
        """Collect the child's outcome and reap it; never raises (safe in a `finally`)."""
        if self._outcome is not None:
            return
        with os.fdopen(self._fd, "rb") as pipe:  # read to EOF before waiting: a full pipe would block the child
            data = pipe.read()
        _, status = os.waitpid(self._pid, 0)
        try:
            self._outcome = pickle.loads(data)
        except Exception:  # an empty or cut-off pipe: the child died mid-way
            code = os.waitstatus_to_exitcode(status)
            self._outcome = (False, WorkerDied(f"worker {self._pid} ended with status {code} and no result"))

    def result(self) -> Any:
        self.wait()
        assert self._outcome is not None
        ok, value = self._outcome
        if ok:
            return value
        raise value


def fork_call(fn: Callable[..., Any], *args: Any) -> Forked:
    """Run `fn(*args)` in a forked child; its return value or exception comes back pickled.

    The child shares the parent's open descriptors (a restore worker writes through the output
    file's), and leaves with `os._exit`, so no buffered output or cleanup of the parent runs twice.
    """
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child; its outcome is what the tests check
        status = 0
        try:
            os.close(read_fd)
            try:
                payload = pickle.dumps((True, fn(*args)), protocol=pickle.HIGHEST_PROTOCOL)
            except BaseException as exc:  # every failure goes back to the parent
                try:
                    payload = pickle.dumps((False, exc), protocol=pickle.HIGHEST_PROTOCOL)
                except Exception:
                    payload = pickle.dumps((False, WorkerDied(f"{type(exc).__name__}: {exc}")))
            with os.fdopen(write_fd, "wb") as pipe:
                pipe.write(payload)
        except BaseException:
            status = 1
        finally:
            os._exit(status)
    os.close(write_fd)
    return Forked(pid, read_fd)
