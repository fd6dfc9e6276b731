"""The SQLite side: WAL-mode databases, rows, checkpoints, WAL pins, dumps and checks."""

from __future__ import annotations

import contextlib
import os
import random
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from harness.common import TABLE

_PINNED: dict[str, sqlite3.Connection] = {}


def _key(db_path: str | os.PathLike[str]) -> str:
    return str(Path(db_path).resolve())


def _connect(db_path: str | os.PathLike[str]) -> sqlite3.Connection:
    conn = sqlite3.connect(str(db_path), isolation_level=None, timeout=10)
    conn.execute("PRAGMA busy_timeout=10000")
    # Never let our writers checkpoint on their own: Litestream (or a test, via checkpoint())
    # decides when the WAL moves into the database, which keeps L0 contents predictable.
    conn.execute("PRAGMA wal_autocheckpoint=0")
    return conn


@contextlib.contextmanager
def _conn(db_path: str | os.PathLike[str]) -> Iterator[sqlite3.Connection]:
    pinned = _PINNED.get(_key(db_path))
    if pinned is not None:
        yield pinned
        return
    conn = _connect(db_path)
    try:
        yield conn
    finally:
        conn.close()


@contextlib.contextmanager
def pin_wal(db_path: str | os.PathLike[str]) -> Iterator[sqlite3.Connection]:
    """Hold one idle connection open so closing other connections never checkpoints the WAL.

    Why: SQLite's last connection to close checkpoints and deletes the WAL.  With no Litestream
    daemon attached (``-once`` flow, or after ``kill -9``) that would silently turn the next L0
    file into a full-database upload.  While pinned, :func:`write_rows` and :func:`execute` reuse
    this connection.  Nested pins of the same path are allowed (the outer one wins).
    """
    key = _key(db_path)
    if key in _PINNED:
        yield _PINNED[key]
        return
    conn = _connect(db_path)
    conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    _PINNED[key] = conn
    try:
        yield conn
    finally:
        _PINNED.pop(key, None)
        conn.close()


def row_payload(i: int, size: int) -> bytes:
    """Deterministic, incompressible payload for row ``i`` (same bytes on every run)."""
    return random.Random(i * 7919 + size).randbytes(size)


def make_db(path: str | os.PathLike[str], page_size: int = 4096, rows: int = 40, row_bytes: int = 256) -> Path:
    """Create a WAL-mode database with table ``t(id, k, v)`` and ``rows`` deterministic rows.

    The rows go in one transaction so the first Litestream sync sees a multi-page database.
    Raises ``FileExistsError`` rather than silently reusing a database with other content.
    """
    path = Path(path)
    if path.exists():
        raise FileExistsError(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = _connect(path)
    try:
        conn.execute(f"PRAGMA page_size={int(page_size)}")
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if mode.lower() != "wal":
            raise RuntimeError(f"could not switch {path} to WAL mode: {mode}")
        conn.execute(f"CREATE TABLE {TABLE} (id INTEGER PRIMARY KEY, k TEXT NOT NULL, v BLOB NOT NULL)")
        conn.execute("BEGIN")
        conn.executemany(
            f"INSERT INTO {TABLE}(id, k, v) VALUES (?, ?, ?)",
            ((i, f"row-{i}", row_payload(i, row_bytes)) for i in range(1, rows + 1)),
        )
        conn.execute("COMMIT")
        got = conn.execute("PRAGMA page_size").fetchone()[0]
        if got != page_size:
            raise RuntimeError(f"page_size {page_size} not applied to {path} (got {got})")
    finally:
        # Closing checkpoints the WAL into the file when we are the last connection: harmless
        # before replication starts, and it leaves a plain database for Litestream's first sync.
        conn.close()
    return path


def write_rows(
    db_path: str | os.PathLike[str],
    n: int,
    start: int | None = None,
    size: int = 256,
    *,
    per_txn: int = 1,
    after_txn: Callable[[], object] | None = None,
) -> int:
    """Insert ``n`` rows, ``per_txn`` rows per transaction; return the last id written.

    Several small transactions (rather than one) are what make Litestream emit several L0 files
    when a sync runs between them; ``after_txn`` is called after every commit for exactly that
    (e.g. ``after_txn=rep.sync`` or a ``replicate_once`` call).  ``start`` defaults to
    ``max(id) + 1``.
    """
    with _conn(db_path) as conn:
        if start is None:
            start = (conn.execute(f"SELECT coalesce(max(id), 0) FROM {TABLE}").fetchone()[0]) + 1
        i = start
        end = start + n
        while i < end:
            batch = range(i, min(end, i + per_txn))
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(
                f"INSERT INTO {TABLE}(id, k, v) VALUES (?, ?, ?)",
                ((j, f"row-{j}", row_payload(j, size)) for j in batch),
            )
            conn.execute("COMMIT")
            i = batch[-1] + 1
            if after_txn is not None:
                after_txn()
    return end - 1


def execute(db_path: str | os.PathLike[str], sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    """Run one statement (autocommit) on the pinned connection if any; return its rows."""
    with _conn(db_path) as conn:
        return conn.execute(sql, params).fetchall()


def checkpoint(db_path: str | os.PathLike[str], mode: str = "TRUNCATE") -> tuple[int, int, int]:
    """``PRAGMA wal_checkpoint(mode)``; returns (busy, wal_frames, checkpointed_frames)."""
    if mode.upper() not in {"PASSIVE", "FULL", "RESTART", "TRUNCATE"}:
        raise ValueError(mode)
    with _conn(db_path) as conn:
        row = conn.execute(f"PRAGMA wal_checkpoint({mode.upper()})").fetchone()
    return (int(row[0]), int(row[1]), int(row[2]))


def row_count(db_path: str | os.PathLike[str]) -> int:
    """Rows in the harness table (uses the pinned connection if any)."""
    return int(execute(db_path, f"SELECT count(*) FROM {TABLE}")[0][0])


def logical_dump(db_path: str | os.PathLike[str], *, include_internal: bool = False) -> list[tuple[Any, ...]]:
    """Every row of every table as ``(table, *row)`` tuples, tables by name, rows by rowid.

    Why: restored and source databases differ byte-wise (WAL vs. checkpointed pages, header
    counters) while holding the same data; comparing rows is the meaningful check.  Litestream's
    own bookkeeping tables (``_litestream_*``) are skipped unless ``include_internal``.
    """
    out: list[tuple[Any, ...]] = []
    with _conn(db_path) as conn:
        names = [
            r[0]
            for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%' ORDER BY name"
            )
        ]
        for name in names:
            if not include_internal and name.startswith("_litestream"):
                continue
            quoted = '"' + name.replace('"', '""') + '"'
            try:
                rows = conn.execute(f"SELECT * FROM {quoted} ORDER BY rowid").fetchall()
            except sqlite3.OperationalError:  # WITHOUT ROWID table
                rows = conn.execute(f"SELECT * FROM {quoted} ORDER BY 1").fetchall()
            out.extend((name, *r) for r in rows)
    return out


def integrity_check(db_path: str | os.PathLike[str]) -> str:
    """``PRAGMA integrity_check`` joined into one string; ``"ok"`` when healthy."""
    conn = _connect(db_path)
    try:
        return "\n".join(str(r[0]) for r in conn.execute("PRAGMA integrity_check").fetchall())
    finally:
        conn.close()


def db_image(db_path: str | os.PathLike[str]) -> bytes:
    """The database as SQLite sees it (WAL applied), via ``sqlite3.Connection.serialize``."""
    conn = _connect(db_path)
    try:
        return conn.serialize()
    finally:
        conn.close()


def db_content_equal(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> bool:
    """Same rows in both databases (see :func:`logical_dump`)."""
    return logical_dump(a) == logical_dump(b)


def db_bytes_equal(a: str | os.PathLike[str], b: str | os.PathLike[str], *, ignore_header: bool = True) -> bool:
    """Page-for-page equality of two databases as SQLite sees them (WAL applied).

    With ``ignore_header`` the header fields that legitimately differ between a live WAL-mode
    database and a restored copy are masked: bytes 18-19 (read/write version), 24-27 (change
    counter), 92-99 (version-valid-for, SQLITE_VERSION_NUMBER).
    """
    ia, ib = bytearray(db_image(a)), bytearray(db_image(b))
    if len(ia) != len(ib):
        return False
    if ignore_header and ia:
        for buf in (ia, ib):
            for lo, hi in ((18, 20), (24, 28), (92, 100)):
                buf[lo:hi] = bytes(hi - lo)
    return ia == ib
