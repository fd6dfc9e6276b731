"""verify reports each replica's point-in-time window: earliest and latest restorable TXID and time."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.replica_builder import Db, write_ltx


def verify(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ltxkit", "verify", *args], capture_output=True, text=True)


def build(root: Path) -> None:
    db = Db(sound=True)
    write_ltx(root, 0, 1, 1, db.write(list(range(1, 9))), db.commit)
    for txid in range(2, 7):
        write_ltx(root, 0, txid, txid, db.write([3, 4]), db.commit)
        if txid == 3:
            write_ltx(root, 9, 1, 3, dict(db.pages), db.commit)


def failing_window(root: Path, code: str) -> dict[str, str | None]:
    """verify of a replica that fails with `code`: the window it still reports."""
    r = verify(str(root), "--format", "json")
    assert r.returncode == 1
    doc = json.loads(r.stdout)
    assert code in {f["code"] for f in doc["findings"]}
    window: dict[str, str | None] = doc["replicas"][0]["window"]
    return window


def test_window_opens_at_the_oldest_snapshot_that_restores(tmp_path: Path) -> None:
    build(tmp_path)
    r = verify(str(tmp_path), "--format", "json")
    assert r.returncode == 0, r.stdout + r.stderr
    window = json.loads(r.stdout)["replicas"][0]["window"]
    # write_ltx stamps each file 1_700_000_000_000 + max_txid ms; a restore at a file's own time
    # leaves it out (as Litestream's), so each end is one millisecond after its file
    assert window == {
        "earliest_txid": f"{1:016x}",
        "earliest_time": "2023-11-14T22:13:20.002Z",
        "latest_txid": f"{6:016x}",
        "latest_time": "2023-11-14T22:13:20.007Z",
    }
    # each end's time restores that end's TXID: the latest time gives the latest state, a
    # millisecond earlier the point before it (the latest end was the newest file's own time,
    # which restored TXID 5, and no time restored TXID 6)
    restored = {}
    times = (("latest", None), ("at-end", "2023-11-14T22:13:20.007Z"), ("before", "2023-11-14T22:13:20.006Z"))
    for name, when in times:
        out = tmp_path.parent / f"{tmp_path.name}-{name}.db"
        args = ["restore", str(tmp_path), "-o", str(out), "-q"] + (["--timestamp", when] if when else [])
        r = subprocess.run([sys.executable, "-m", "ltxkit", *args], capture_output=True, text=True)
        assert r.returncode == 0, (name, r.stderr)
        restored[name] = out.read_bytes()
    assert restored["at-end"] == restored["latest"] != restored["before"]
    five = tmp_path.parent / f"{tmp_path.name}-5.db"
    r = subprocess.run(
        [sys.executable, "-m", "ltxkit", "restore", str(tmp_path), "-o", str(five), "-q", "--txid", "5"],
        capture_output=True, text=True,
    )
    assert r.returncode == 0 and five.read_bytes() == restored["before"], r.stderr
    (tmp_path / "ltx" / "0" / f"{1:016x}-{1:016x}.ltx").unlink()  # retention took the first L0 file
    r = verify(str(tmp_path), "--format", "json")
    assert json.loads(r.stdout)["replicas"][0]["window"]["earliest_txid"] == f"{3:016x}"
    text = verify(str(tmp_path)).stdout
    assert f"restorable window: TXID {3:016x} (2023-11-14T22:13:20.004Z) to TXID {6:016x}" in text
    junit = verify(str(tmp_path), "--format", "junit").stdout
    assert f"restorable window: TXID {3:016x}" in junit


def test_a_latest_restore_point_that_does_not_restore_is_not_in_the_window(tmp_path: Path) -> None:
    """The window is what a user picks restore points from: a damaged newest file ends it below."""
    build(tmp_path)
    newest = tmp_path / "ltx" / "0" / f"{6:016x}-{6:016x}.ltx"
    data = newest.read_bytes()
    newest.write_bytes(data[:10] + bytes([data[10] ^ 0xFF]) + data[11:])  # inside the header
    window = failing_window(tmp_path, "unrestorable")
    assert (window["earliest_txid"], window["latest_txid"]) == (f"{1:016x}", f"{5:016x}")
    assert window["latest_time"] == "2023-11-14T22:13:20.006Z"
    # no restore point restores at all: no window, not one that names damaged points
    for txid in range(2, 6):
        (tmp_path / "ltx" / "0" / f"{txid:016x}-{txid:016x}.ltx").unlink()
    (tmp_path / "ltx" / "9" / f"{1:016x}-{3:016x}.ltx").unlink()
    (tmp_path / "ltx" / "0" / f"{1:016x}-{1:016x}.ltx").write_bytes(b"garbage")
    r = verify(str(tmp_path), "--format", "json")
    assert json.loads(r.stdout)["replicas"][0]["window"]["latest_txid"] is None
    assert "restorable window: none" in verify(str(tmp_path)).stdout


def test_a_gap_in_the_chain_leaves_the_points_below_it_in_the_window(tmp_path: Path) -> None:
    """A deleted middle L0 file: no latest plan can be made, but every point below the gap still
    restores (`ltxkit restore --txid` and Litestream agree). The window said "none", and the
    message of a failed restore sends the user to that window."""
    build(tmp_path)
    (tmp_path / "ltx" / "0" / f"{5:016x}-{5:016x}.ltx").unlink()
    window = failing_window(tmp_path, "txid-gap")
    assert (window["earliest_txid"], window["latest_txid"]) == (f"{1:016x}", f"{4:016x}")
    assert window["latest_time"] == "2023-11-14T22:13:20.005Z"
    text = verify(str(tmp_path)).stdout
    assert f"restorable window: TXID {1:016x} (2023-11-14T22:13:20.002Z) to TXID {4:016x}" in text
    restored = subprocess.run(
        [sys.executable, "-m", "ltxkit", "restore", str(tmp_path), "--txid", "4", "-o", str(tmp_path / "4.db"), "-q"],
        capture_output=True, text=True,
    )
    assert restored.returncode == 0, restored.stderr
