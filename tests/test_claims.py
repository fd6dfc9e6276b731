"""Claims no other test asserted: each of these fails when the behaviour it names is broken.

- `verify --deep` names `integrity-check-failed` on a replica whose latest restore is a corrupt
  database, and `restore --integrity-check full` refuses it and leaves nothing behind;
- a healthy 64 KiB-page replica past 1 GiB (the lock page never stored) is not `unrestorable`;
- `txid-gap` from the gap rule itself, including a replica with no snapshot and a gap;
- `restore --dry-run` prints exactly the plan: every level, TXID range and key, in order.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from ltxkit.format import LTXWriter
from ltxkit.format.errors import Code
from ltxkit.format.schema import FLAG_NO_CHECKSUM, Header, format_filename, lock_pgno
from ltxkit.replica.layout import list_replica
from ltxkit.replica.storage import LocalStorage
from ltxkit.verify.engine import check_replica
from ltxkit.verify.findings import ReplicaSummary
from ltxkit.verify.rules import check_gaps
from tests.replica_builder import Db, write_ltx

ROOT = Path(__file__).resolve().parent.parent


def cli(*args: str | Path, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from ltxkit.cli import main; main()", *map(str, args)],
        capture_output=True, text=True, timeout=300, cwd=cwd, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def codes(summary: ReplicaSummary) -> list[str]:
    return sorted({f.code for f in summary.findings} | {f.code for fc in summary.files for f in fc.findings})


# ---- a replica whose restore is a corrupt database ---------------------------------------------


def index_corrupt_image(tmp: Path) -> tuple[bytes, int]:
    """A real SQLite database (table + index) whose index holds a key its table does not: the
    b-trees are well formed, so quick_check passes and only the full integrity_check fails."""
    path = tmp / "src.db"
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA page_size=4096")
    conn.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
    conn.execute("CREATE INDEX t_v ON t(v)")
    conn.executemany("INSERT INTO t(v) VALUES (?)", [(f"key-{i:04d}0",) for i in range(200)])
    conn.commit()
    conn.close()
    image = bytearray(path.read_bytes())
    ps = 4096
    for start in range(0, len(image), ps):  # the index leaf holding key-00500: make it key-00501
        page = image[start : start + ps]
        if page[100 if start == 0 else 0] == 0x0A and b"key-00500" in page:
            at = start + page.index(b"key-00500")
            image[at : at + 9] = b"key-00501"  # sorts between key-00500 and key-00510: order holds
            break
    else:
        raise AssertionError("no index leaf found")
    return bytes(image), len(image) // ps


def corrupt_replica(tmp: Path) -> Path:
    image, commit = index_corrupt_image(tmp)
    root = tmp / "replica"
    pages = {p: image[(p - 1) * 4096 : p * 4096] for p in range(1, commit + 1)}
    write_ltx(root, 0, 1, 1, pages, commit, page_size=4096)
    db = tmp / "check.db"
    db.write_bytes(image)
    assert sqlite3.connect(db).execute("PRAGMA quick_check").fetchall() == [("ok",)]
    assert sqlite3.connect(db).execute("PRAGMA integrity_check").fetchall() != [("ok",)]
    db.unlink()
    return root


def test_deep_verify_names_integrity_check_failed(tmp_path: Path) -> None:
    replica = corrupt_replica(tmp_path)
    r = cli("verify", replica, "--deep", "--format", "json")
    assert r.returncode == 1, r.stderr
    report = json.loads(r.stdout)
    text = json.dumps(report)
    assert "integrity-check-failed" in text
    summary = check_replica(LocalStorage(replica), str(replica), deep=True)
    assert Code.INTEGRITY_CHECK_FAILED in codes(summary)
    assert check_replica(LocalStorage(replica), str(replica), content=True).findings == []  # quick_check passes


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_restore_integrity_check_full_refuses_and_leaves_nothing(tmp_path: Path, jobs: str) -> None:
    replica = corrupt_replica(tmp_path)
    outdir = tmp_path / "out"
    outdir.mkdir()
    r = cli("restore", replica, "-o", outdir / "app.db", "--integrity-check", "full", "-q", "--jobs", jobs)
    assert r.returncode == 1
    assert "integrity-check-failed" in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert list(outdir.iterdir()) == []  # no database, no temp file
    # quick_check does not look at index contents: the same restore with it goes through
    r = cli("restore", replica, "-o", outdir / "app.db", "--integrity-check", "quick", "-q")
    assert r.returncode == 0, r.stderr
    assert [p.name for p in outdir.iterdir()] == ["app.db"]


# ---- the lock page -----------------------------------------------------------------------------


def test_verify_a_64k_page_replica_past_1_gib_is_restorable(tmp_path: Path) -> None:
    """Pages are zeros but for a stamp (they compress to nothing); the lock page is never stored,
    and verify's coverage of the latest restore must not count it missing."""
    ps = 65536
    lock = lock_pgno(ps)
    commit = lock + 2
    root = tmp_path / "replica"
    path = root / "ltx" / "0" / format_filename(1, 1)
    path.parent.mkdir(parents=True)
    header = Header(flags=FLAG_NO_CHECKSUM, page_size=ps, commit=commit, min_txid=1, max_txid=1,
                    timestamp=1_700_000_000_000)
    blank = bytes(ps - 8)
    with path.open("wb") as fh:
        w = LTXWriter(fh, header)
        for pgno in range(1, commit + 1):
            if pgno != lock:
                w.write_page(pgno, pgno.to_bytes(8, "big") + blank)
        w.close()
    write_ltx(root, 0, 2, 2, {lock + 1: bytes(ps)}, commit, page_size=ps)  # an increment past it
    for quick in (True, False):
        summary = check_replica(LocalStorage(root), str(root), quick=quick)
        assert codes(summary) == [], quick
        assert summary.commit == commit and summary.latest_txid == 2


# ---- txid-gap ----------------------------------------------------------------------------------


def test_no_snapshot_and_a_gap_are_both_named(tmp_path: Path) -> None:
    """L0 files 5, 6 and 8 only: no restore can start (no-snapshot), and 7 is missing (txid-gap,
    an error: no plan bridges it). The gap comes from the gap rule, not from the plan."""
    db = Db(sound=True)
    db.write(list(range(1, 5)))
    for txid in (5, 6, 8):
        db.txid = txid - 1
        write_ltx(tmp_path, 0, txid, txid, db.write([1, 3]), db.commit)
    summary = check_replica(LocalStorage(tmp_path), "r", quick=True)
    gaps = [f for f in summary.findings if f.code == Code.TXID_GAP]
    assert [(f.context["min_txid"], f.context["max_txid"]) for f in gaps] == [(7, 7)]
    assert codes(summary) == [Code.NO_SNAPSHOT, Code.TXID_GAP]
    r = cli("verify", tmp_path, "--quick", "--format", "json")
    assert r.returncode == 1
    assert {"no-snapshot", "txid-gap"} <= set(json.dumps(json.loads(r.stdout)).replace('"', " ").split())


@pytest.mark.parametrize("plan_ok", [False, True])
def test_the_gap_rule_itself(tmp_path: Path, plan_ok: bool) -> None:
    """`check_gaps` alone: a hole above the snapshot is `txid-gap`, or `txid-gap-bridged` (a
    warning) when the latest plan jumps over it."""
    db = Db(sound=True)
    db.write(list(range(1, 5)))
    write_ltx(tmp_path, 0, 1, 1, dict(db.pages), db.commit)
    for txid in (2, 5, 6):
        db.txid = txid - 1
        write_ltx(tmp_path, 0, txid, txid, db.write([1, 3]), db.commit)
    listing = list_replica(LocalStorage(tmp_path))
    summary = ReplicaSummary("r", [], listing)
    check_gaps(listing, summary, "r", plan_ok=plan_ok)
    want = Code.TXID_GAP_BRIDGED if plan_ok else Code.TXID_GAP
    assert [(f.code, f.context["min_txid"], f.context["max_txid"]) for f in summary.findings] == [(want, 3, 4)]


def test_a_gap_in_the_latest_chain_is_an_error(tmp_path: Path) -> None:
    db = Db(sound=True)
    db.write(list(range(1, 5)))
    write_ltx(tmp_path, 0, 1, 1, dict(db.pages), db.commit)
    for txid in (2, 5):
        db.txid = txid - 1
        write_ltx(tmp_path, 0, txid, txid, db.write([1, 3]), db.commit)
    summary = check_replica(LocalStorage(tmp_path), "r", quick=True)
    assert codes(summary) == [Code.TXID_GAP]


# ---- dry-run -----------------------------------------------------------------------------------


def test_dry_run_prints_exactly_the_plan(tmp_path: Path) -> None:
    """A snapshot at 4, L2 5-8, L1 9-10, L0 11-12 (and files the plan skips): the plan is exactly
    those, in order, whatever the terminal width (a pipe here, 80 columns)."""
    db = Db(sound=True)
    db.write(list(range(1, 9)))
    states = {1: (dict(db.pages), db.commit)}
    changes = {1: dict(db.pages)}
    for t in range(2, 13):
        changes[t] = db.write([1, t % 7 + 2])
        states[t] = (dict(db.pages), db.commit)
    root = tmp_path / "replica"
    for t in range(1, 13):
        write_ltx(root, 0, t, t, changes[t], states[t][1])

    def merged(lo: int, hi: int) -> dict[int, bytes]:
        out: dict[int, bytes] = {}
        for t in range(lo, hi + 1):
            out.update(changes[t])
        return out

    write_ltx(root, 9, 1, 4, states[4][0], states[4][1])
    write_ltx(root, 9, 1, 2, states[2][0], states[2][1])  # older snapshot: not planned
    write_ltx(root, 1, 3, 4, merged(3, 4), states[4][1])  # below the snapshot: not planned
    write_ltx(root, 2, 5, 8, merged(5, 8), states[8][1])
    write_ltx(root, 1, 9, 10, merged(9, 10), states[10][1])
    plan = [(9, 1, 4), (2, 5, 8), (1, 9, 10), (0, 11, 11), (0, 12, 12)]
    r = cli("restore", root, "-o", tmp_path / "x.db", "--dry-run", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    rows = [
        [cell.strip() for cell in line.split("│")[1:-1]]
        for line in r.stdout.splitlines()
        if line.startswith("│")
    ]
    want = [
        [str(lv), f"{lo:016x}", f"{hi:016x}", f"{(root / key).stat().st_size:,}", key]
        for lv, lo, hi in plan
        for key in [f"ltx/{lv}/{format_filename(lo, hi)}"]
    ]
    assert rows == want
    assert r.stdout.splitlines()[-1] == f"would restore TXID {12:016x} to {tmp_path / 'x.db'}"
    assert not (tmp_path / "x.db").exists()
    # and a TXID inside the L2 file's range stops at the snapshot plus L0 files
    r = cli("restore", root, "-o", tmp_path / "x.db", "--dry-run", "--txid", f"{6:016x}", cwd=tmp_path)
    keys = [line.split("│")[5].strip() for line in r.stdout.splitlines() if line.startswith("│")]
    assert keys == [f"ltx/{lv}/{format_filename(lo, hi)}" for lv, lo, hi in [(9, 1, 4), (0, 5, 5), (0, 6, 6)]]
