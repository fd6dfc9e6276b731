"""The live database as the replicator holds it: a pinned read transaction, brief write locks,
checkpoints, and direct reads of the database file, its WAL and its WAL index.

Three connections, none of which ever writes to the database:

* `pin` (a read-only connection) keeps a read transaction open at all times (outside our own
  checkpoints). A WAL can only be restarted (overwritten from the front) when no reader uses it,
  and a reader that started on a fully checkpointed WAL blocks further checkpointing; either way,
  while the pin is held, no frame we have not read yet can disappear. Litestream holds its database the same way.
* `lock` takes the write lock (BEGIN IMMEDIATE) for the moments that need the WAL to stand
  still: re-pinning at an exact WAL position, and our own checkpoints. Held for milliseconds.
* a third runs checkpoints (it cannot be `lock`: a connection inside a transaction cannot
  checkpoint).

POSIX locks belong to the process and are dropped when *any* descriptor of the file is closed, so
the descriptors we read the database and its `-shm` through stay open as long as the connections
do, and are closed after them.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

from ltxkit.errors import EXIT_USAGE
from ltxkit.sqlite import DatabaseError, check_database_file, wal_and_shm
from ltxkit.wal import WAL_HEADER_SIZE, IndexHeader, WalError, WalHeader, parse_header, parse_index_header

CHECKPOINT_WAIT_S = 0.2


class NotWalMode(DatabaseError):
    """The database is not in WAL mode: there is no log to stream (the user must switch it)."""

    exit_code = EXIT_USAGE


def check_source(path: Path, *, must_exist: bool) -> None:
    """Refuse, before anything is created for it, a database replicate could never stream: no
    SQLite database there (`check_database_file`), or one not in WAL mode (header bytes 18-19 are
    2 in WAL mode). A path with nothing there passes unless `must_exist`: a replicator waits for
    its database to appear, as Litestream does, but a `--once` run has nothing to wait for."""
    try:
        head = check_database_file(path)
    except FileNotFoundError:
        if must_exist:
            raise
        return
    if len(head) >= 20 and head[18:20] != b"\x02\x02":
        raise NotWalMode(_not_wal(path, "its header says a rollback journal"))


def _not_wal(path: Path, what: str) -> str:
    return (
        f"{path}: {what}, not WAL; ltxkit replicate streams the WAL. "
        f"Switch once with: sqlite3 {path} 'PRAGMA journal_mode=WAL'"
    )


class Source:
    """One open, pinned database (see the module docstring). `close()` lets it go."""

    def __init__(self, path: Path, *, busy_timeout_s: float = 5.0) -> None:
        self.path = path
        self.wal_path, self.shm_path = wal_and_shm(path)
        check_database_file(path)  # FileNotFoundError: the caller waits for the database
        self._busy_timeout_s = busy_timeout_s
        self._fds: list[int] = []
        self._writers: list[sqlite3.Connection] = []
        self._locker = self._connect(busy_timeout_s, "rw")
        self._writers.append(self._locker)
        self._reader: sqlite3.Connection | None = None
        try:
            mode = self._locker.execute("PRAGMA journal_mode").fetchone()[0]
            if mode != "wal":
                raise NotWalMode(_not_wal(path, f"journal mode is {mode}"))
            # short: a TRUNCATE waits for readers and holds the application's writers meanwhile
            self._checkpointer = self._connect(CHECKPOINT_WAIT_S, "rw")
            self._writers.append(self._checkpointer)
            self._reader = self._connect(busy_timeout_s, "ro")
            self.pin()
            self._db_fd = self._open_fd(path)
            self._shm_fd = self._open_fd(self.shm_path)
            st = os.fstat(self._db_fd)
            self.identity = (st.st_dev, st.st_ino)
        except BaseException:
            self.close()
            raise

    def _connect(self, busy_timeout_s: float, mode: str) -> sqlite3.Connection:
        try:
            return sqlite3.connect(
                f"file:{self.path}?mode={mode}", uri=True, timeout=busy_timeout_s, isolation_level=None
            )
        except sqlite3.Error as exc:
            raise DatabaseError(f"{self.path}: {exc}") from exc

    def _open_fd(self, path: Path) -> int:
        fd = os.open(path, os.O_RDONLY)
        self._fds.append(fd)
        return fd

    # ---- the pin and the write lock ----------------------------------------------------------

    def pin(self) -> None:
        """(Re)start the long read transaction; its snapshot is the database as of now."""
        reader = self._reader
        assert reader is not None
        try:
            if reader.in_transaction:
                reader.execute("ROLLBACK")
            reader.execute("BEGIN")
            reader.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
        except sqlite3.Error as exc:
            raise DatabaseError(f"{self.path}: cannot hold a read transaction: {exc}") from exc

    def unpin(self) -> None:
        """End the long read transaction (until `pin`)."""
        assert self._reader is not None
        if self._reader.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                self._reader.execute("ROLLBACK")

    @contextlib.contextmanager
    def write_lock(self, *, timeout_s: float | None = None) -> Iterator[None]:
        """Hold the database's write lock: no commit lands and the WAL stands still meanwhile.
        `timeout_s`: give up sooner than the busy timeout (DatabaseError)."""
        locker = self._locker
        assert locker is not None
        try:
            if timeout_s is not None:
                locker.execute(f"PRAGMA busy_timeout = {int(timeout_s * 1000)}")
            try:
                locker.execute("BEGIN IMMEDIATE")
            finally:
                if timeout_s is not None:
                    locker.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout_s * 1000)}")
        except sqlite3.OperationalError as exc:
            raise DatabaseError(f"{self.path}: cannot take the write lock: {exc}") from exc
        try:
            yield
        finally:
            with contextlib.suppress(sqlite3.Error):
                locker.execute("ROLLBACK")

    def size(self) -> tuple[int, int]:
        """(page size, pages) of the pinned snapshot."""
        assert self._reader is not None
        page_size = self._reader.execute("PRAGMA page_size").fetchone()[0]
        pages = self._reader.execute("PRAGMA page_count").fetchone()[0]
        return page_size, pages

    def checkpoint(self, mode: str) -> tuple[int, int, int]:
        """Run `PRAGMA wal_checkpoint(mode)` with the pin released: (busy, WAL frames, checkpointed).
        The caller pins again."""
        assert mode in ("PASSIVE", "TRUNCATE")
        self.unpin()
        try:
            busy, log, done = self._checkpointer.execute(f"PRAGMA wal_checkpoint({mode})").fetchone()
        except sqlite3.Error as exc:
            raise DatabaseError(f"{self.path}: checkpoint failed: {exc}") from exc
        return busy, log, done

    # ---- reading --------------------------------------------------------------------------------

    def replaced(self) -> bool:
        """Is the file at our path no longer the one we hold (moved, deleted, a restored copy)?"""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return True
        return (st.st_dev, st.st_ino) != self.identity

    def index(self) -> IndexHeader | None:
        """The WAL index header (None: not initialised, or being written this instant)."""
        for _ in range(3):
            head = parse_index_header(os.pread(self._shm_fd, 100, 0))
            if head is not None:
                return head
        return None

    @contextlib.contextmanager
    def wal(self) -> Iterator[WalReader | None]:
        """The WAL as it is now (None when it is absent or holds no header yet)."""
        try:
            fd = os.open(self.wal_path, os.O_RDONLY)
        except FileNotFoundError:
            yield None
            return
        try:  # no SQLite lock lives on the -wal file itself: closing this descriptor is safe
            head = os.pread(fd, WAL_HEADER_SIZE, 0)
            if len(head) < WAL_HEADER_SIZE:
                yield None
                return
            try:
                header = parse_header(head)
            except WalError as exc:
                raise DatabaseError(f"{self.wal_path}: {exc}") from exc
            yield WalReader(fd, header, os.fstat(fd).st_mtime_ns)
        finally:
            os.close(fd)

    def read_pages(self, first: int, count: int, page_size: int, *, exact: bool = True) -> bytes:
        """Pages first..first+count-1 as the database file holds them (`exact=False`: fewer at its end)."""
        data = os.pread(self._db_fd, count * page_size, (first - 1) * page_size)
        if exact and len(data) != count * page_size:
            raise DatabaseError(f"{self.path}: file ends before page {first + count - 1}")
        return data

    def close(self) -> None:
        """Let go: the read-write connections first, the read-only one last. The last connection
        to a WAL database checkpoints it and deletes the WAL when it closes, unless it cannot
        write, so ours never does: the WAL (and a Litestream's position in it) stays as it was."""
        for conn in [*self._writers, self._reader]:
            if conn is not None:
                with contextlib.suppress(sqlite3.Error):
                    conn.close()
        self._writers = []
        self._reader = None
        for fd in self._fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._fds = []


class WalReader:
    """One open WAL: its header, and positional reads."""

    def __init__(self, fd: int, header: WalHeader, mtime_ns: int) -> None:
        self.fd = fd
        self.header = header
        self.mtime_ns = mtime_ns

    def read_at(self, offset: int, length: int) -> bytes:
        return os.pread(self.fd, length, offset)

    def page(self, offset: int, page_size: int) -> bytes:
        data = os.pread(self.fd, page_size, offset)
        if len(data) != page_size:
            raise DatabaseError(f"WAL ends inside a frame at byte {offset}")
        return data
