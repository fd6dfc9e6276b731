"""Reading a live SQLite database consistently, page by page, WAL content included.

SQLite offers no page-level read API in the stdlib, so this module reads the pages itself: the
database file, overlaid with the WAL frames up to the snapshot's last frame. It takes the write
lock (BEGIN IMMEDIATE) only for a moment: long enough to start a read transaction on a second,
read-only connection and to map the WAL from its index (-shm) header, which SQLite keeps exact
while the write lock is held; the frames' salts are checked against the WAL header. Then the
write lock goes and writers carry on, while the read transaction keeps the snapshot readable:
no checkpoint copies a frame past a reader's mark into the database file and no writer restarts
the WAL under a reader still using it, so the mapped frames and the database file's other pages
stay as they were. When every frame was already checkpointed, the reader may use no WAL at all
(SQLite's read mark 0, which lets a writer restart the WAL but blocks checkpoints), so then
every page is read from the database file.

POSIX locks are per process and per file, and closing *any* descriptor of a file drops them all,
so our own descriptors are closed only after SQLite has let go of its locks.
"""

from __future__ import annotations

import bisect
import contextlib
import errno
import itertools
import os
import sqlite3
import stat
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ltxkit.errors import EXIT_USAGE, LtxkitError
from ltxkit.format.checksum import CHECKSUM_FLAG, crc64, lock_pgno

WAL_HEADER_SIZE = 32
WAL_FRAME_HEADER_SIZE = 24
_WAL_HEADER = struct.Struct(">IIIIIIII")
_WAL_FRAME = struct.Struct(">IIII")
# WalIndexHdr: iVersion, unused, iChange, isInit, bigEndCksum, szPage, mxFrame, nPage, ...salts
_SHM_HEADER = struct.Struct("=IIIBBHII8x8x8x")
_SHM_COPY_SIZE = 48
_SHM_BACKFILL = struct.Struct("=I")  # WalCkptInfo.nBackfill, right after the two header copies


class DatabaseError(LtxkitError):
    """The database cannot be read consistently (missing, locked, not SQLite, damaged WAL)."""


class NotADatabase(DatabaseError):
    """The path names no SQLite database at all (a directory, a device, another kind of file): a
    wrong argument, so "could not run" (exit 2), and no waiting or retrying will change it."""

    exit_code = EXIT_USAGE


SQLITE_MAGIC = b"SQLite format 3\x00"


def check_database_file(path: Path) -> bytes:
    """Refuse what cannot be a SQLite database before SQLite is asked to open it: NotADatabase for
    a directory, a device or pipe (opening a FIFO would block) or a file with another header;
    FileNotFoundError when nothing is there. An empty file passes: SQLite makes it a database.
    Returns the header bytes it read (up to 100), for callers that look further into them."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise FileNotFoundError(errno.ENOENT, "no such database file", str(path)) from None
    if stat.S_ISDIR(st.st_mode):
        raise NotADatabase(f"{path}: is a directory, not a SQLite database")
    if not stat.S_ISREG(st.st_mode):
        raise NotADatabase(f"{path}: not a regular file, so not a SQLite database")
    with path.open("rb") as fh:
        head = fh.read(100)
    if not head:
        return head
    if not head.startswith(SQLITE_MAGIC):
        raise NotADatabase(f"{path}: not a SQLite database")
    if len(head) == 100 and not _sound_header(head):
        raise NotADatabase(f"{path}: not a SQLite database (its header is damaged)")
    return head


def _sound_header(head: bytes) -> bool:
    """The header fields SQLite refuses a file over (SQLITE_NOTADB): a page size that is a power of
    two from 512 to 65536 (1 meaning 65536) and the fixed payload fractions 64, 32, 32."""
    size = int.from_bytes(head[16:18], "big")
    size = 65536 if size == 1 else size
    return 512 <= size <= 65536 and size & (size - 1) == 0 and head[21:24] == b"\x40\x20\x20"


def wal_and_shm(path: Path) -> tuple[Path, Path]:
    """The database's `-wal` and `-shm` files. SQLite follows a symbolic link to the database and
    keeps them beside the file it names, so a link's `-wal` is the target's: reading `link-wal`
    would find no WAL and take the database file alone for the database."""
    real = Path(os.path.realpath(path))
    return Path(f"{real}-wal"), Path(f"{real}-shm")


#: Told (one line) when a database's lock is not free at once and ltxkit starts waiting for it,
#: so a wait of up to `busy_timeout_s` is never silent. The CLI prints it on stderr; None: quiet.
wait_note: Callable[[str], None] | None = None


def _locked(exc: sqlite3.Error) -> bool:
    return isinstance(exc, sqlite3.OperationalError) and ("locked" in str(exc) or "busy" in str(exc))


def _waiting(conn: sqlite3.Connection, sql: str, path: Path, timeout_s: float, what: str) -> sqlite3.Cursor:
    """`conn.execute(sql)`, first without waiting; if the lock is taken, say so, then wait up to
    `timeout_s` (a lock still held then is an error that names the wait, exit 2: could not run)."""
    conn.execute("PRAGMA busy_timeout = 50")
    try:
        return conn.execute(sql)
    except sqlite3.Error as exc:
        if not _locked(exc):
            raise
    if wait_note is not None:
        wait_note(f"waiting for {path}: another connection holds its {what} (up to {timeout_s:g} s)")
    conn.execute(f"PRAGMA busy_timeout = {max(0, int(timeout_s * 1000))}")
    try:
        return conn.execute(sql)
    except sqlite3.Error as exc:
        if _locked(exc):
            raise DatabaseError(
                f"{path}: still locked after waiting {timeout_s:g} s ({exc}); try again when the writer is done",
                exit_code=EXIT_USAGE,
            ) from exc
        raise


@dataclass(slots=True)
class DatabaseView:
    """A consistent view of a database: page size, size in pages, and where each page lives."""

    path: Path
    page_size: int
    commit: int
    wal_frames: dict[int, int] = field(default_factory=dict)  # pgno -> file offset of page in WAL
    wal_salts: tuple[int, int] | None = None  # the WAL header's salts, when there is a WAL
    _db: int = -1  # descriptors, open while the view is
    _wal: int = -1  # -1 when there is no WAL (then wal_frames is empty and it is never read)

    @property
    def lock_pgno(self) -> int:
        return lock_pgno(self.page_size)

    def _segments(self, first: int, last: int) -> Iterator[tuple[int, int, int]]:
        """Pages first..last as `(start, stop, wal_offset)`: pages start..stop-1 are read from the
        database file; then, when `wal_offset` >= 0, page `stop` from the WAL at that offset (when
        it is -1, page `stop` is the lock page, or past `last`). The lock page is in no segment.

        Cutting the range where the WAL or the lock page interrupts it keeps those decisions out
        of the per-page loops: a database-file run is read and hashed page after page, no lookup.
        """
        lock = self.lock_pgno
        frames = self.wal_frames
        cuts = sorted(p for p in frames if first <= p <= last and p != lock)
        if first <= lock <= last:
            bisect.insort(cuts, lock)
        start = first
        for pgno in cuts:
            yield start, pgno, frames.get(pgno, -1) if pgno != lock else -1
            start = pgno + 1
        yield start, last + 1, -1

    def _short(self, pgno: int) -> DatabaseError:
        return DatabaseError(f"{self.path}: page {pgno} is cut short (file shorter than its size)")

    def pages(self, *, chunk_pages: int = 256) -> Iterator[tuple[int, bytes]]:
        """Every page 1..commit except the lock page, in order, as the snapshot sees it."""
        ps = self.page_size
        db = self._db
        for start, stop, wal_offset in self._segments(1, self.commit):
            pgno = start
            while pgno < stop:
                n = min(chunk_pages, stop - pgno)
                chunk = os.pread(db, n * ps, (pgno - 1) * ps)
                have = min(n, len(chunk) // ps)
                for i in range(have):
                    yield pgno + i, chunk[i * ps : (i + 1) * ps]
                if have < n:  # the whole pages before the cut came first, as the reader expects
                    raise self._short(pgno + have)
                pgno += n
            if wal_offset >= 0:
                page = os.pread(self._wal, ps, wal_offset)
                if len(page) != ps:
                    raise self._short(stop)
                yield stop, page

    def checksum(self, *, jobs: int = 1) -> int:
        """The LTX database checksum: CRC-64 of each page's number and bytes, XOR-ed, flag set.

        With `jobs` > 1 and a large database, the page range is cut in `jobs` parts and forked
        children hash the parts; their partial XORs are XOR-ed here. That stays inside this view's
        snapshot because the children read nothing through SQLite: they are forks of the process
        whose keeper holds the view's read transaction, reading the same database and WAL
        descriptors at the offsets this view already fixed (`wal_frames`, taken from the WAL index
        while the write lock was held), and this process waits for every child before the context
        manager ends that transaction. While it lasts, no checkpoint copies a frame past its mark
        into the database file and no writer restarts the WAL over the frames being read (see the
        module docstring). A child that fails in any way makes this process hash everything
        itself, so errors are the one-process ones.
        """
        total = 0
        parts = self._parts(jobs)
        if len(parts) > 1:
            from ltxkit.workers import Forked, fork_call, reaped

            children: list[Forked] = []
            with reaped(children):
                for first, last in parts[1:]:
                    children.append(fork_call(self._xor_pages, first, last))
                total = self._xor_pages(*parts[0])
            try:
                for child in children:
                    total ^= child.result()
            except Exception:
                total = self._xor_pages(1, self.commit)  # raises what one process would raise
        else:
            total = self._xor_pages(1, self.commit)
        return CHECKSUM_FLAG | (total & ~CHECKSUM_FLAG)

    def _parts(self, jobs: int) -> list[tuple[int, int]]:
        if jobs < 2 or self.commit * self.page_size < PARALLEL_CHECKSUM_MIN_BYTES:
            return [(1, self.commit)]
        from ltxkit.workers import can_fork

        if not can_fork():
            return [(1, self.commit)]
        bounds = [1 + self.commit * k // jobs for k in range(jobs + 1)]
        return [(a, b - 1) for a, b in itertools.pairwise(bounds) if b > a]

    def _xor_pages(self, first: int, last: int) -> int:
        """XOR of the raw CRCs (no flag) of pages first..last (lock page excluded), WAL overlay applied.

        The hot loop: each chunk of the database file is read with one preadv straight into a
        buffer that leaves 4 bytes in front of every page; those get the page's big-endian number,
        so one CRC call covers number and page, over a memoryview: no bytes object per page.
        """
        ps = self.page_size
        stride = 4 + ps
        n_max = max(1, min(_IOV_MAX, _CHUNK_BYTES // ps))
        buf = bytearray(n_max * stride)
        mv = memoryview(buf)
        slots = [mv[i * stride + 4 : (i + 1) * stride] for i in range(n_max)]  # where preadv puts pages
        whole = [mv[i * stride : (i + 1) * stride] for i in range(n_max)]  # number + page, CRC input
        crc = crc64
        db = self._db
        total = 0
        for start, stop, wal_offset in self._segments(first, last):
            pgno = start
            while pgno < stop:
                n = min(n_max, stop - pgno)
                got = os.preadv(db, slots[:n] if n < n_max else slots, (pgno - 1) * ps)
                if got < n * ps:
                    raise self._short(pgno + got // ps)
                views = whole[:n] if n < n_max else whole
                for view, p in zip(views, range(pgno, pgno + n), strict=True):
                    view[:4] = p.to_bytes(4, "big")
                for view in views:
                    total ^= crc(view)
                pgno += n
            if wal_offset >= 0:
                page = os.pread(self._wal, ps, wal_offset)
                if len(page) != ps:
                    raise self._short(stop)
                total ^= crc(page, crc(stop.to_bytes(4, "big")))
        return total


#: Pages read per preadv: a few hundred KB keeps the buffer in cache; Linux takes 1024 buffers.
_CHUNK_BYTES = 1 << 20
_IOV_MAX = 1024
#: Below this the fork of a checksum worker costs about what it saves.
PARALLEL_CHECKSUM_MIN_BYTES = 64 << 20


def _read_wal_map(path: Path, wal_fd: int, shm_fd: int, page_size: int) -> dict[int, int]:
    shm = os.pread(shm_fd, 2 * _SHM_COPY_SIZE + 4, 0)
    if len(shm) < 2 * _SHM_COPY_SIZE + 4:
        return {}
    if shm[:_SHM_COPY_SIZE] != shm[_SHM_COPY_SIZE : 2 * _SHM_COPY_SIZE]:
        raise DatabaseError(f"{path}: WAL index header is being changed; try again")
    _ver, _unused, _change, is_init, _big, _sz, mx_frame, _npage = _SHM_HEADER.unpack_from(shm)
    (backfilled,) = _SHM_BACKFILL.unpack_from(shm, 2 * _SHM_COPY_SIZE)
    if not is_init or mx_frame == 0 or backfilled >= mx_frame:
        return {}  # every frame is in the database file too (see the module docstring)
    salt_bytes = shm[32:40]  # SQLite copies the WAL header's salt bytes verbatim
    head = os.pread(wal_fd, WAL_HEADER_SIZE, 0)
    if len(head) < WAL_HEADER_SIZE:
        raise DatabaseError(f"{path}-wal: WAL header missing although the WAL index lists {mx_frame} frames")
    fields = _WAL_HEADER.unpack(head)
    salts = (fields[4], fields[5])
    if fields[2] != page_size or head[16:24] != salt_bytes:
        raise DatabaseError(f"{path}-wal: WAL header does not match the WAL index")
    frame_size = WAL_FRAME_HEADER_SIZE + page_size
    frames: dict[int, int] = {}
    batch = 512
    for first in range(0, mx_frame, batch):
        n = min(batch, mx_frame - first)
        base = WAL_HEADER_SIZE + first * frame_size
        data = os.pread(wal_fd, n * frame_size, base)
        if len(data) < n * frame_size:
            raise DatabaseError(f"{path}-wal: WAL is shorter than its index says ({mx_frame} frames)")
        for i in range(n):
            pgno, _commit, s1, s2 = _WAL_FRAME.unpack_from(data, i * frame_size)
            if (s1, s2) != salts:
                raise DatabaseError(f"{path}-wal: frame {first + i + 1} has stale salts")
            frames[pgno] = base + i * frame_size + WAL_FRAME_HEADER_SIZE
    return frames


@contextlib.contextmanager
def consistent_view(db_path: str | os.PathLike[str], *, busy_timeout_s: float = 30.0) -> Iterator[DatabaseView]:
    """Yield a `DatabaseView` of the database's committed state, held by a read transaction (the
    write lock is taken only while it begins; see the module docstring)."""
    path = Path(db_path)
    check_database_file(path)  # errors the CLI reports as "could not run" (exit 2)
    # No -wal or -shm yet (a database nobody has open): opening it makes them, and they should go
    # again with us. Only the read-write connection closing last removes them, as any SQLite
    # client's would; with a WAL already there, that close would checkpoint it instead.
    wal_was_there = any(p.exists() for p in wal_and_shm(path))
    fds: list[int] = []
    conn = None
    keeper = None
    try:
        conn = sqlite3.connect(f"file:{path}?mode=rw", uri=True, timeout=busy_timeout_s, isolation_level=None)
        # The last connection to a WAL database checkpoints it and deletes the WAL as it closes,
        # unless it cannot write: this read-only one is closed last (when a WAL was there), so
        # reading changes nothing. Its read transaction, begun while the write lock is held, is
        # the snapshot read below.
        keeper = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=busy_timeout_s, isolation_level=None)
        _waiting(conn, "BEGIN IMMEDIATE", path, busy_timeout_s, "write lock")
        keeper.execute("BEGIN")
        _waiting(keeper, "SELECT COUNT(*) FROM sqlite_master", path, busy_timeout_s, "lock").fetchone()
        page_size = keeper.execute("PRAGMA page_size").fetchone()[0]
        commit = keeper.execute("PRAGMA page_count").fetchone()[0]
        journal = conn.execute("PRAGMA journal_mode").fetchone()[0]
        db_fd = os.open(path, os.O_RDONLY)
        fds.append(db_fd)
        view = DatabaseView(path, page_size, commit, _db=db_fd)
        if journal == "wal":
            wal_path, shm_path = wal_and_shm(path)
            if wal_path.exists() and shm_path.exists():
                wal_fd = os.open(wal_path, os.O_RDONLY)
                fds.append(wal_fd)
                shm_fd = os.open(shm_path, os.O_RDONLY)
                fds.append(shm_fd)
                view.wal_frames = _read_wal_map(path, wal_fd, shm_fd, page_size)
                view._wal = wal_fd
                head = os.pread(wal_fd, WAL_HEADER_SIZE, 0)
                if len(head) == WAL_HEADER_SIZE:
                    fields = _WAL_HEADER.unpack(head)
                    view.wal_salts = (fields[4], fields[5])
        conn.execute("ROLLBACK")  # writers go on; the read transaction holds what was mapped
        yield view
    except sqlite3.Error as exc:
        if getattr(exc, "sqlite_errorcode", 0) & 0xFF in (sqlite3.SQLITE_READONLY, sqlite3.SQLITE_CANTOPEN):
            raise DatabaseError(
                f"{path}: cannot take the write lock a consistent read needs: the database, its -wal/-shm or "
                f"its directory is read-only for this user ({exc}); run as a user who may write to it",
                exit_code=EXIT_USAGE,
            ) from exc
        raise DatabaseError(f"{path}: {exc}") from exc
    finally:
        if keeper is not None and not wal_was_there:
            keeper.close()
            keeper = None
        if conn is not None:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            conn.close()
        if keeper is not None:
            keeper.close()
        for fd in fds:
            os.close(fd)


def integrity_check(db: Path, *, quick: bool = False, live: bool = False) -> list[str]:
    """PRAGMA integrity_check (or quick_check); returns SQLite's complaints (empty: ok).

    A restored file nobody else uses is opened immutable, so nothing is written beside it. A
    `live` database is opened read-only through SQLite's locks instead, so its WAL counts and
    other connections go on (a read-only connection never checkpoints or removes the WAL).
    """
    uri = f"file:{db}?mode=ro" + ("" if live else "&immutable=1")
    try:
        conn = sqlite3.connect(uri, uri=True, timeout=30)
        try:
            pragma = "PRAGMA quick_check" if quick else "PRAGMA integrity_check"
            rows = (_waiting(conn, pragma, db, 30, "lock") if live else conn.execute(pragma)).fetchall()
        finally:
            conn.close()
    except sqlite3.Error as exc:
        return [str(exc)]
    msgs = [r[0] for r in rows]
    return [] if msgs == ["ok"] else msgs


@dataclass(frozen=True, slots=True)
class Schema:
    """What says which application a database belongs to: its application id and its tables."""

    page_size: int
    application_id: int
    tables: frozenset[str]  # the application's: not SQLite's own, not Litestream's `_litestream_*`

    def describe(self) -> str:
        shown = ", ".join(sorted(self.tables)[:6]) + (", ..." if len(self.tables) > 6 else "")
        return f"application id {self.application_id}, {len(self.tables)} table(s): {shown or 'none'}"


def schema_of(db: Path, *, live: bool = False) -> Schema:
    """The schema of a database (`live`: through SQLite's locks; else opened immutable)."""
    uri = f"file:{db}?mode=ro" + ("" if live else "&immutable=1")
    try:
        conn = sqlite3.connect(uri, uri=True, timeout=30)
        try:
            if live:
                _waiting(conn, "SELECT COUNT(*) FROM sqlite_master", db, 30, "lock").fetchone()
            page_size = conn.execute("PRAGMA page_size").fetchone()[0]
            app_id = conn.execute("PRAGMA application_id").fetchone()[0]
            tables = frozenset(
                r[0]
                for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
                if not r[0].startswith(("sqlite_", "_litestream_"))
            )
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise DatabaseError(f"{db}: {exc}") from exc
    return Schema(page_size, app_id, tables)
