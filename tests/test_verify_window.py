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


def test_window_opens_at_the_oldest_snapshot_that_restores(tmp_path: Path) -> None:
    build(tmp_path)
    r = verify(str(tmp_path), "--format", "json")
    assert r.returncode == 0, r.stdout + r.stderr
    window = json.loads(r.stdout)["replicas"][0]["window"]
    # write_ltx stamps each file 1_700_000_000_000 + max_txid ms
    assert window == {
        "earliest_txid": f"{1:016x}",
        "earliest_time": "2023-11-14T22:13:20.001Z",
        "latest_txid": f"{6:016x}",
        "latest_time": "2023-11-14T22:13:20.006Z",
    }
    (tmp_path / "ltx" / "0" / f"{1:016x}-{1:016x}.ltx").unlink()  # retention took the first L0 file
    r = verify(str(tmp_path), "--format", "json")
    assert json.loads(r.stdout)["replicas"][0]["window"]["earliest_txid"] == f"{3:016x}"
    text = verify(str(tmp_path)).stdout
    assert f"restorable window: TXID {3:016x} (2023-11-14T22:13:20.003Z) to TXID {6:016x}" in text
    junit = verify(str(tmp_path), "--format", "junit").stdout
    assert f"restorable window: TXID {3:016x}" in junit
