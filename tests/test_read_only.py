"""`checksum` and `snapshot` only read: the database, its -wal and -shm stay where they are."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest

WRITER = """
import os, sqlite3, sys, time
c = sqlite3.connect(sys.argv[1], isolation_level=None)
c.execute("PRAGMA journal_mode=wal"); c.execute("PRAGMA wal_autocheckpoint=0")
c.execute("CREATE TABLE t(x)")
for i in range(60):
    c.execute("INSERT INTO t VALUES (?)", (os.urandom(700),))
print("ready", flush=True)
time.sleep(60)
"""


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("command", ["checksum", "snapshot"])
def test_reading_leaves_the_database_and_its_wal_untouched(tmp_path: Path, command: str) -> None:
    db = tmp_path / "app.db"
    # a WAL with frames not yet checkpointed and no connection open: the writer is killed
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(db)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    proc.kill()
    proc.wait()
    wal, shm = Path(f"{db}-wal"), Path(f"{db}-shm")
    assert wal.stat().st_size > 0
    before = {p.name: digest(p) for p in (db, wal)}
    args = [command, str(db)] + (["-o", str(tmp_path / "s.ltx")] if command == "snapshot" else [])
    r = subprocess.run([sys.executable, "-m", "ltxkit", *args], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    # the database and the WAL byte-identical; -shm still there (SQLite rebuilds its index after a
    # crash whoever reads first, so its bytes are SQLite's business)
    assert {p.name: digest(p) for p in (db, wal)} == before
    assert shm.exists()


@pytest.mark.parametrize("command", ["checksum", "snapshot"])
def test_reading_a_closed_wal_database_leaves_no_wal_behind(tmp_path: Path, command: str) -> None:
    """A WAL-mode database nobody has open has no -wal or -shm; reading it makes them (SQLite
    does, to read), and they go again with the reader instead of being left beside it."""
    import sqlite3

    data = tmp_path / "data"
    data.mkdir()
    db = data / "app.db"
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE t(x)")
    conn.executemany("INSERT INTO t VALUES (?)", [(i,) for i in range(100)])
    conn.commit()
    conn.close()
    assert [p.name for p in data.iterdir()] == ["app.db"]
    before = digest(db)
    args = [command, str(db)] + (["-o", str(tmp_path / "s.ltx")] if command == "snapshot" else [])
    r = subprocess.run([sys.executable, "-m", "ltxkit", *args], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert [p.name for p in data.iterdir()] == ["app.db"] and digest(db) == before


def _image(db: Path) -> bytes:
    """The database as SQLite serializes it: the state a reader sees, WAL included."""
    import sqlite3

    c = sqlite3.connect(db)
    try:
        return c.serialize()
    finally:
        c.close()


def _view_bytes(view) -> bytes:  # type: ignore[no-untyped-def]
    lock = view.lock_pgno
    out = bytearray(view.commit * view.page_size)
    for pgno, page in view.pages():
        assert pgno != lock
        out[(pgno - 1) * view.page_size : pgno * view.page_size] = page
    return bytes(out)


@pytest.mark.parametrize("backfilled", [False, True], ids=["frames-in-wal", "wal-all-checkpointed"])
def test_writers_and_checkpoints_go_on_while_a_view_is_read(tmp_path: Path, backfilled: bool) -> None:
    """The write lock is held only while the view begins: an application with a short busy
    timeout commits and checkpoints meanwhile, and the view still reads the state it began at."""
    import sqlite3

    from ltxkit.sqlite import consistent_view

    db = tmp_path / "app.db"
    app = sqlite3.connect(db, isolation_level=None, timeout=0.05)
    app.execute("PRAGMA journal_mode=wal")
    app.execute("PRAGMA wal_autocheckpoint=0")
    app.execute("CREATE TABLE t(x)")
    for i in range(200):
        app.execute("INSERT INTO t VALUES (?)", (bytes([i % 251]) * 900,))
    if backfilled:  # every frame copied into the database file: the view reads no WAL
        assert app.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()[0] == 0
    expected = _image(db)
    with consistent_view(db) as view:
        for i in range(300):  # new frames, overwriting a restarted WAL when it was all checkpointed
            app.execute("UPDATE t SET x = ? WHERE rowid = ?", (bytes([7]) * 900, i % 200 + 1))
            app.execute("INSERT INTO t VALUES (?)", (b"n" * 900,))
        app.execute("PRAGMA wal_checkpoint(PASSIVE)")  # may copy only what the view does not need
        assert _view_bytes(view) == expected
    assert _image(db) != expected  # the writes did land
    app.close()
