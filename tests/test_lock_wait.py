"""Issue 14 (11): waiting on a locked database says so, and for how long at most; a lock still held
at the end is "could not run" (exit 2), not a defect."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

import harness as H

ROOT = Path(__file__).resolve().parent.parent


def start(*args: object) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "ltxkit", *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        cwd=ROOT,
        env={**os.environ, "LTXKIT_REPAIR_WATCH": "0"},
    )


def first_stderr_line(proc: subprocess.Popen[str]) -> str:
    """The first line the command writes to stderr (it blocks until there is one)."""
    assert proc.stderr is not None
    return proc.stderr.readline().rstrip("\n")


@pytest.mark.parametrize("command", ["checksum", "snapshot"])
def test_waiting_on_a_locked_database_is_said(tmp_path: Path, command: str) -> None:
    db = H.make_db(tmp_path / "app.db", rows=20)
    assert H.execute(db, "SELECT count(*) FROM t")  # the harness table is `t`
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    extra = ["-o", tmp_path / "s.ltx"] if command == "snapshot" else []
    proc = start(command, db, *extra)
    time.sleep(1.5)
    assert proc.poll() is None  # still waiting
    conn.execute("COMMIT")
    conn.close()
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    lines = err.splitlines()
    assert lines[0] == f"ltxkit: waiting for {db}: another connection holds its write lock (up to 30 s)"
    if command == "snapshot":
        assert (tmp_path / "s.ltx").exists()


def test_no_waiting_line_when_the_database_is_free(tmp_path: Path) -> None:
    db = H.make_db(tmp_path / "app.db", rows=20)
    proc = start("checksum", db)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0 and err == "" and len(out.strip()) == 16


@pytest.mark.litestream
def test_repair_from_db_says_it_waits(tmp_path: Path) -> None:
    rep = H.make_truncated_shape(tmp_path)
    conn = sqlite3.connect(rep.db_path, isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    try:
        proc = start("repair", rep.replica_dir, "--rebuild-snapshot", "--from-db", rep.db_path, "--dry-run")
        line = first_stderr_line(proc)  # verify and the source check run first; then it waits
        assert line == f"ltxkit: waiting for {rep.db_path}: another connection holds its write lock (up to 30 s)"
        assert proc.poll() is None
    finally:
        conn.execute("ROLLBACK")
        conn.close()
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert "dry run" in out


def test_a_lock_held_past_the_wait_is_could_not_run(tmp_path: Path) -> None:
    from ltxkit import sqlite as ls

    db = H.make_db(tmp_path / "app.db", rows=20)
    said: list[str] = []
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    old, ls.wait_note = ls.wait_note, said.append
    try:
        with pytest.raises(ls.DatabaseError) as exc, ls.consistent_view(db, busy_timeout_s=0.3):
            pass
    finally:
        ls.wait_note = old
        conn.execute("ROLLBACK")
        conn.close()
    assert exc.value.exit_code == 2 and "still locked after waiting 0.3 s" in str(exc.value)
    assert said == [f"waiting for {db}: another connection holds its write lock (up to 0.3 s)"]
