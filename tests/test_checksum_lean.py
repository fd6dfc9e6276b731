"""`DatabaseView.checksum` and `pages()` (the lean readers) against an independent reference.

The reference is SQLite's own view of the database (`Connection.serialize()`, which includes the
WAL's committed frames) folded by `database_checksum`, the plain one-page-at-a-time definition.
The lean paths must agree with it in one process and split over forked children, for any page
size, with frames not yet checkpointed (pages only in the WAL, pages newer in the WAL), and with
the lock page anywhere in the range (moved down so small databases reach it).
"""

from __future__ import annotations

import os
import random
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ltxkit import sqlite as ltx_sqlite
from ltxkit.format.checksum import database_checksum
from ltxkit.sqlite import DatabaseError, DatabaseView, consistent_view


def _reference(conn: sqlite3.Connection, page_size: int, lock: int) -> tuple[int, list[tuple[int, bytes]]]:
    image = conn.serialize()
    pages = [(i // page_size + 1, image[i : i + page_size]) for i in range(0, len(image), page_size)]
    pages = [(p, data) for p, data in pages if p != lock]
    return database_checksum(pages, lock), pages


@contextmanager
def _live_db(path: Path, page_size: int, rows: list[bytes], later: list[bytes]) -> Iterator[sqlite3.Connection]:
    """A WAL database whose writer stays open: `rows` checkpointed into the file, `later` only in the WAL."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute(f"PRAGMA page_size={page_size}")
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA wal_autocheckpoint=0")
        conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB)")
        conn.executemany("INSERT INTO t (v) VALUES (?)", [(r,) for r in rows])
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.execute("BEGIN")
        conn.executemany("INSERT INTO t (v) VALUES (?)", [(r,) for r in later])
        conn.execute("UPDATE t SET v = randomblob(40) WHERE id % 7 = 1")
        conn.execute("COMMIT")
        yield conn
    finally:
        conn.close()


def _all_ways(view: DatabaseView, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    with monkeypatch.context() as m:
        m.setattr(ltx_sqlite, "PARALLEL_CHECKSUM_MIN_BYTES", 0)
        return [view.checksum(jobs=j) for j in (1, 2, 3)] + [database_checksum(view.pages(), view.lock_pgno)]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    page_size=st.sampled_from([512, 1024, 4096, 65536]),
    n_rows=st.integers(0, 300),
    n_later=st.integers(0, 300),
    seed=st.integers(0, 2**32),
    lock_at=st.one_of(st.none(), st.integers(1, 40)),
)
def test_lean_checksum_and_pages_match_sqlite(
    page_size: int,
    n_rows: int,
    n_later: int,
    seed: int,
    lock_at: int | None,
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rng = random.Random(seed)
    rows = [rng.randbytes(rng.randrange(1, 3000)) for _ in range(n_rows)]
    later = [rng.randbytes(rng.randrange(1, 3000)) for _ in range(n_later)]
    path = tmp_path_factory.mktemp("db") / "live.db"
    with _live_db(path, page_size, rows, later) as writer, monkeypatch.context() as m:
        if lock_at is not None:  # the real lock page is at 1 GiB: bring it within reach
            m.setattr(DatabaseView, "lock_pgno", property(lambda _self: lock_at))
        with consistent_view(path) as view:
            lock = view.lock_pgno
            expected, pages = _reference(writer, page_size, lock)
            assert list(view.pages()) == pages
            assert list(view.pages(chunk_pages=3)) == pages
            assert _all_ways(view, m) == [expected] * 4


def test_pages_only_in_the_wal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The database file is shorter than the snapshot: its newest pages live only in the WAL."""
    path = tmp_path / "grown.db"
    rows = [os.urandom(900) for _ in range(50)]
    later = [os.urandom(900) for _ in range(400)]
    with _live_db(path, 1024, rows, later) as writer, consistent_view(path) as view:
        assert os.path.getsize(path) < view.commit * view.page_size
        assert view.wal_frames, "the test needs frames not yet checkpointed"
        expected, _ = _reference(writer, 1024, view.lock_pgno)
        assert _all_ways(view, monkeypatch) == [expected] * 4


def test_cut_short_database_same_error_every_way(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A database file shorter than its page count: the error names the first missing page, split or not."""
    path = tmp_path / "short.db"
    path.write_bytes(os.urandom(10 * 512))
    fd = os.open(path, os.O_RDONLY)
    try:
        view = DatabaseView(path, 512, 25, _db=fd)
        monkeypatch.setattr(ltx_sqlite, "PARALLEL_CHECKSUM_MIN_BYTES", 0)
        for jobs in (1, 2, 3):
            with pytest.raises(DatabaseError, match=r"page 11 is cut short"):
                view.checksum(jobs=jobs)
        got = []
        with pytest.raises(DatabaseError, match=r"page 11 is cut short"):
            for pgno, _page in view.pages(chunk_pages=4):
                got.append(pgno)
        assert got == list(range(1, 11))
    finally:
        os.close(fd)


def test_split_really_forks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The split path runs ranges in other processes (so the equalities above compare two paths)."""
    path = tmp_path / "db.db"
    with _live_db(path, 512, [os.urandom(400) for _ in range(100)], []) as _w, consistent_view(path) as view:
        pids = tmp_path / "pids"
        pids.mkdir()
        real = DatabaseView._xor_pages

        def noting(self: DatabaseView, first: int, last: int) -> int:
            (pids / str(os.getpid())).touch()
            return real(self, first, last)

        monkeypatch.setattr(DatabaseView, "_xor_pages", noting)
        monkeypatch.setattr(ltx_sqlite, "PARALLEL_CHECKSUM_MIN_BYTES", 0)
        view.checksum(jobs=2)
        seen = {int(p.name) for p in pids.iterdir()}
        assert os.getpid() in seen and len(seen) == 2
