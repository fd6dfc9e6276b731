"""Worker processes for CPU-bound decoding (verify's files, restore's spans).

Decoding is Python per page and the LZ4 and CRC codecs hold the GIL, so threads do not add cores;
processes do. Workers are forked where the platform can (no re-import, and a restore worker
inherits the output file's descriptor); elsewhere callers stay in one process.

Two shapes: `fork_pool` for many tasks (verify's files), and `fork_call` for one call in one
child (restore's spans), which costs a fork and a pipe instead of a pool's start-up (about 60 ms
here: importing multiprocessing, a manager thread, queues).
"""

from __future__ import annotations

import contextlib
import functools
import os
import pickle
import signal
import sys
from collections.abc import Callable, Iterator
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


@contextlib.contextmanager
def thread_pool(workers: int, name: str) -> Iterator[concurrent.futures.ThreadPoolExecutor]:
    """A pool of `workers` threads for blocking reads (object store requests), shut down when the
    block ends. On an exception, Ctrl-C included, the queued work is dropped and the calls in
    flight are not waited for: one stuck on a server that stopped answering would hold the
    unwinding for the rest of its timeout. Only for work that reads: nothing it leaves running
    writes anything."""
    import concurrent.futures

    pool = concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix=name)
    try:
        yield pool
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)


def map_on_daemons(fn: Callable[[Any], Any], items: list[Any], limit: int) -> list[tuple[bool, Any]]:
    """`fn` over `items` on at most `limit` daemon threads: [(True, result) or (False, exception)],
    in the order of `items`. Daemons, because an interrupted caller must not wait for them: each
    may be deep in a long job (a replica's content check) or in a request to a store that stopped
    answering, and the interpreter's exit would join ordinary threads. What they write must go at
    exit whatever they are doing: verify's content checks restore inside one directory that an
    exit handler removes (`verify.content._scratch_dir`)."""
    import queue
    import threading

    todo: queue.SimpleQueue[int] = queue.SimpleQueue()
    for i in range(len(items)):
        todo.put(i)
    results: list[tuple[bool, Any] | None] = [None] * len(items)
    done = threading.Semaphore(0)

    def work() -> None:
        while True:
            try:
                i = todo.get_nowait()
            except queue.Empty:
                return
            try:
                results[i] = (True, fn(items[i]))
            except BaseException as exc:  # the caller decides what each failure means
                results[i] = (False, exc)
            done.release()

    for n in range(min(limit, len(items))):
        threading.Thread(target=work, name=f"ltxkit-each-{n}", daemon=True).start()
    for _ in items:
        done.acquire()  # a signal interrupts the wait (the threads run on, and end with the process)
    return [r for r in results if r is not None]


@contextlib.contextmanager
def fork_pool(workers: int) -> Iterator[concurrent.futures.ProcessPoolExecutor]:
    """A pool of `workers` forked processes (call only where `can_fork()`), shut down when the
    block ends. Interrupted (Ctrl-C, or SIGTERM, which reaches only this process), the queued work
    is dropped and the workers are ended instead of being waited for."""
    import concurrent.futures
    import multiprocessing

    _prctl()  # loaded here, before the fork
    pool = concurrent.futures.ProcessPoolExecutor(
        max_workers=workers,
        mp_context=multiprocessing.get_context("fork"),
        initializer=end_with_parent,
        initargs=(os.getpid(),),
    )
    try:
        yield pool
    except KeyboardInterrupt:
        processes = list(getattr(pool, "_processes", None) or {})  # pids; the attribute is the pool's own
        pool.shutdown(wait=False, cancel_futures=True)
        for pid in processes:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        raise
    finally:
        pool.shutdown(wait=True)


@contextlib.contextmanager
def reaped(children: list[Forked]) -> Iterator[list[Forked]]:
    """Every child forked (`fork_call`) into `children` inside the block is reaped when it ends,
    whatever happened, so no worker writes on after its caller moved on. Interrupted (Ctrl-C, or
    SIGTERM, which reaches only this process), the children are told to stop first."""
    try:
        yield children
    except KeyboardInterrupt:
        for child in children:
            child.stop()
        raise
    finally:
        for child in children:
            child.wait()


def end_with_parent(parent: int) -> None:
    """In a worker: end when the parent ends, and at once on SIGTERM.

    Ctrl-C reaches the whole process group, but SIGTERM (a service manager, `kill`, a CI timeout)
    reaches the parent alone: it cleans up and exits, and a worker must not run on as an orphan.
    The parent's SIGTERM handler (unwind and clean up) is the parent's; a worker has nothing of its
    own to clean, so it takes the default action. Linux only (`PR_SET_PDEATHSIG`); elsewhere a
    worker still ends when it next finds the parent's pipe closed.
    """
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    prctl = _prctl()
    if prctl is None:
        return
    prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != parent:  # the parent ended before the line above: nobody will signal us
        os._exit(1)


_PR_SET_PDEATHSIG = 1


@functools.cache
def _prctl() -> Callable[..., int] | None:
    """libc's prctl, loaded once in the parent so a forked worker does not import ctypes each time."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


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

    def stop(self) -> None:
        """Ask the child to end now (it takes SIGTERM's default action, see `end_with_parent`)."""
        if self._outcome is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._pid, signal.SIGTERM)

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
    _prctl()  # loaded here, before the fork
    read_fd, write_fd = os.pipe()
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child; its outcome is what the tests check
        status = 0
        try:
            end_with_parent(parent)
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
