"""Writing pages at their offsets in a database file, cheaply.

A restore writes every page of a database once, mostly in ascending runs (a snapshot is one long
run). One `pwrite` per page costs a system call per page, and one `fsync` at the end waits for
the whole file to reach the disk at once. `PageSink` instead gathers each run of consecutive
pages into one `pwritev`, and on Linux asks the kernel to start writing back every few MiB
(`sync_file_range(SYNC_FILE_RANGE_WRITE)`, asynchronous), so the final fsync finds little left.
The fsync itself stays: durability is not traded for speed.
"""

from __future__ import annotations

import contextlib
import functools
import os
import threading
from typing import Any, BinaryIO

_MAX_RUN = 256  # pages per pwritev: well under IOV_MAX (1024)
_SHORT_RUN = 8  # runs shorter than this are held back (see PageSink)
_PENDING_BYTES = 16 << 20  # held-back page data written out past this
_WRITEBACK_EVERY = 8 << 20  # bytes between writeback kicks
_SYNC_FILE_RANGE_WRITE = 2


@functools.cache
def _sync_file_range() -> Any:
    """libc's sync_file_range, or None where it does not exist (not Linux, no libc symbols).

    Looked up on first use, in the symbols already loaded (`CDLL(None)`): `ctypes.util.find_library`
    runs ldconfig in a subprocess, tens of milliseconds of every restore's start-up.
    """
    if not hasattr(os, "pwritev") or os.uname().sysname != "Linux":
        return None
    import ctypes

    try:
        fn = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn


class PageSink:
    """Write `page_size`-byte pages by page number into `out` (a seekable binary file object, or a
    file descriptor).

    Call `write(pgno, page)` for each page, then `flush()`. With a real file descriptor, runs of
    consecutive pages go out as one `pwritev`; otherwise pages are written with seek + write.

    Short runs (an L0 file's few scattered pages) are held back in a map instead, newest copy
    winning, and written in page order when the map grows past `_PENDING_BYTES` or at `flush()`:
    a restore through thousands of small files rewrites the same hot pages over and over, and
    this writes each of them once. A long run written directly drops any older held copy of its
    pages first, so newest still wins.
    """

    def __init__(self, out: BinaryIO | int, page_size: int) -> None:
        self.page_size = page_size
        self._out: BinaryIO | None = None
        self._fd: int | None = None
        if isinstance(out, int):  # a bare descriptor: a restore worker process writes through one
            self._fd = out
        else:
            self._out = out
            with contextlib.suppress(AttributeError, OSError, ValueError):
                self._fd = out.fileno()
            if self._fd is not None:
                out.flush()
        self._run: list[bytes] = []
        self._run_start = 0  # pgno of self._run[0]
        self._next = 0  # pgno that would extend the run
        self._unsynced = 0
        self._pending: dict[int, bytes] = {}
        self._pending_max = max(1, _PENDING_BYTES // page_size)
        self._settling: threading.Thread | None = None

    def write(self, pgno: int, page: bytes) -> None:
        if pgno == self._next and len(self._run) < _MAX_RUN:
            self._run.append(page)
            self._next += 1
            return
        self._end_run()
        self._run = [page]
        self._run_start = pgno
        self._next = pgno + 1

    def flush(self) -> None:
        """Write everything written so far, held-back pages included."""
        self._end_run()
        self._write_pending()

    def settle(self) -> None:
        """Make what is on disk so far durable in the background (`fdatasync` on another thread),
        while the caller goes on writing: the final fsync then waits only for what came after.
        A restore calls it after a large file when more files follow, and again as the small
        files after it add up; `wait_settled` before the file is closed. One at a time: while one
        runs, a call does nothing. It never replaces the final fsync, and its failure fails nothing
        (the final fsync reports any error that matters)."""
        if self._fd is None or (self._settling is not None and self._settling.is_alive()):
            return
        self.flush()
        fd = self._fd

        def sync() -> None:
            with contextlib.suppress(OSError):
                os.fdatasync(fd)

        self._settling = threading.Thread(target=sync, name="ltxkit-settle", daemon=True)
        self._settling.start()

    def wait_settled(self) -> None:
        """Wait for `settle`'s background sync (call before the file descriptor is closed)."""
        if self._settling is not None:
            self._settling.join()

    def _end_run(self) -> None:
        run = self._run
        if not run:
            return
        start = self._run_start
        self._run = []
        self._next = 0
        pending = self._pending
        if len(run) < _SHORT_RUN:
            for i, page in enumerate(run):
                pending[start + i] = page
            if len(pending) >= self._pending_max:
                self._write_pending()
            return
        if pending:
            for pgno in range(start, start + len(run)):
                pending.pop(pgno, None)
        self._write_run(start, run)

    def _write_pending(self) -> None:
        pending = self._pending
        if not pending:
            return
        self._pending = {}
        run: list[bytes] = []
        start = prev = -1
        for pgno in sorted(pending):
            if pgno != prev + 1 or len(run) >= _MAX_RUN:
                if run:
                    self._write_run(start, run)
                run, start = [], pgno
            run.append(pending[pgno])
            prev = pgno
        self._write_run(start, run)

    def _write_run(self, start: int, run: list[bytes]) -> None:
        offset = (start - 1) * self.page_size
        if self._fd is None:
            assert self._out is not None
            self._out.seek(offset)
            for page in run:
                self._out.write(page)
            return
        done = os.pwritev(self._fd, run, offset)
        want = len(run) * self.page_size
        while done < want:  # a short write: finish it plainly
            done += os.pwrite(self._fd, b"".join(run)[done:], offset + done)
        self._unsynced += want
        if self._unsynced >= _WRITEBACK_EVERY:
            self._unsynced = 0
            start_writeback = _sync_file_range()
            if start_writeback is not None:
                # start writing back what is written so far; never waits, never fails the restore
                start_writeback(self._fd, 0, 0, _SYNC_FILE_RANGE_WRITE)
