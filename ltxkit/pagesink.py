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
from typing import BinaryIO

_MAX_RUN = 256  # pages per pwritev: well under IOV_MAX (1024)
_WRITEBACK_EVERY = 8 << 20  # bytes between writeback kicks
_SYNC_FILE_RANGE_WRITE = 2


@functools.cache
def _sync_file_range():  # type: ignore[no-untyped-def]
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

    def write(self, pgno: int, page: bytes) -> None:
        if pgno == self._next and len(self._run) < _MAX_RUN:
            self._run.append(page)
            self._next += 1
            return
        self.flush()
        self._run = [page]
        self._run_start = pgno
        self._next = pgno + 1

    def flush(self) -> None:
        run = self._run
        if not run:
            return
        offset = (self._run_start - 1) * self.page_size
        if self._fd is None:
            assert self._out is not None
            self._out.seek(offset)
            for page in run:
                self._out.write(page)
        else:
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
        self._run = []
        self._next = 0
