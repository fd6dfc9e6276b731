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
