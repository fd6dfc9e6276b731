"""Structure is not truth: a replica whose files are all well-formed can restore to a corrupt
database. `verify` checks content by default, finds the last good restore point, and `repair`
acts on it. The damaged replica is a real Litestream replica with one increment re-encoded
without a page (every checksum valid), `H.make_stale_page_shape`.
"""

from __future__ import annotations

import hashlib
import json
import os
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import harness as H
from ltxkit.format.schema import format_filename
from ltxkit.replica.layout import ReplicaFile
from ltxkit.verify.content import CheckMode, ContentVerdict, PointCheck, _bisect

pytestmark = pytest.mark.litestream

FIRST_BAD = 4  # the TXID whose increment lost a page (make_stale_page_shape)


@pytest.fixture
def stale(tmp_path: Path) -> H.DamagedReplica:
    return H.make_stale_page_shape(tmp_path)


def tree(root: Path) -> dict[str, str]:
    """sha256 of every file below root, by relative path."""
    out = {}
    for dirpath, _dirs, names in os.walk(root):
        for n in names:
            p = Path(dirpath) / n
            out[str(p.relative_to(root))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def test_litestream_restores_it_without_a_word(stale: H.DamagedReplica, tmp_path: Path) -> None:
    """The premise: Litestream "succeeds", and only SQLite notices."""
    out = tmp_path / "litestream.db"
    r = H.restore(stale.replica_dir, out)
    assert r.returncode == 0, r.stderr
    assert H.quick_check(out) != "ok"
    good = tmp_path / "good.db"
    assert H.restore(stale.replica_dir, good, txid=FIRST_BAD - 1).returncode == 0
    assert H.quick_check(good) == "ok"


def test_verify_names_the_first_bad_and_last_good_txid(stale: H.DamagedReplica, run_ltxkit) -> None:
    before = tree(stale.replica_dir)
    r = run_ltxkit("verify", stale.replica_dir, "--format", "json")
    assert r.returncode == 1, r.stdout + r.stderr
    doc = json.loads(r.stdout)
    [finding] = doc["findings"]
    assert finding["code"] == "integrity-check-failed"
    assert finding["check"] == "quick_check"
    assert finding["txid"] == f"{stale.max_txid:016x}"
    assert finding["last_good_txid"] == f"{FIRST_BAD - 1:016x}"
    assert finding["first_bad_txid"] == f"{FIRST_BAD:016x}"
    assert finding["first_bad_file"] == f"ltx/0/{format_filename(FIRST_BAD, FIRST_BAD)}"
    assert any("never used" in line or "out of order" in line for line in finding["sqlite"])
    assert all("\n" not in line for line in finding["sqlite"])  # a line each (SQLite gave one row of many)
    content = doc["replicas"][0]["content"]
    assert content["sqlite"] == finding["sqlite"]
    # the window a user picks restore points from ends at the last good one, not the failing latest
    assert doc["replicas"][0]["window"]["latest_txid"] == f"{FIRST_BAD - 1:016x}"
    assert content["ok"] is False and content["last_good_txid"] == finding["last_good_txid"]
    assert content["restore_points_checked"][0] == f"{stale.max_txid:016x}"
    assert tree(stale.replica_dir) == before  # verify never writes

    text = run_ltxkit("verify", stale.replica_dir)
    assert text.returncode == 1
    assert f"last good restore point: TXID {FIRST_BAD - 1:016x}" in text.stdout
    assert f"ltxkit restore --txid {FIRST_BAD - 1:016x}" in text.stdout
    assert f"first bad: TXID {FIRST_BAD:016x}" in text.stdout

    junit = run_ltxkit("verify", stale.replica_dir, "--format", "junit")
    assert junit.returncode == 1
    failure = ET.fromstring(junit.stdout).find(".//testcase[@name='replica']/failure")
    assert failure is not None and failure.get("type") == "integrity-check-failed"
    assert f"first bad: TXID {FIRST_BAD:016x}" in (failure.get("message") or "")


def test_structure_only_passes_and_says_content_was_not_checked(stale: H.DamagedReplica, run_ltxkit) -> None:
    r = run_ltxkit("verify", stale.replica_dir, "--structure-only")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "content: not checked" in r.stdout and "content not checked" in r.stdout
    doc = json.loads(run_ltxkit("verify", stale.replica_dir, "--structure-only", "-f", "json").stdout)
    assert doc["ok"] is True and doc["replicas"][0]["content"]["checked"] is False


def test_deep_runs_integrity_check(stale: H.DamagedReplica, run_ltxkit) -> None:
    r = run_ltxkit("verify", stale.replica_dir, "--deep", "--format", "json")
    assert r.returncode == 1
    [finding] = json.loads(r.stdout)["findings"]
    assert finding["check"] == "integrity_check" and finding["first_bad_txid"] == f"{FIRST_BAD:016x}"
    assert run_ltxkit("verify", stale.replica_dir, "--deep", "--structure-only").returncode == 2


def test_repair_from_db_mends_it(stale: H.DamagedReplica, tmp_path: Path, run_ltxkit) -> None:
    before = tree(stale.replica_dir)
    r = run_ltxkit("repair", stale.replica_dir, "--rebuild-snapshot", "--from-db", stale.db_path, "--dry-run")
    assert r.returncode == 0, r.stdout + r.stderr
    assert tree(stale.replica_dir) == before
    moved = [f"ltx/0/{format_filename(t, t)}" for t in range(FIRST_BAD, stale.max_txid + 1)]
    for key in moved:
        assert f"move     {key} -> quarantine/ (integrity-check-failed)" in r.stdout

    r = run_ltxkit("repair", stale.replica_dir, "--rebuild-snapshot", "--from-db", stale.db_path, "--yes")
    assert r.returncode == 0, r.stdout + r.stderr
    assert run_ltxkit("verify", stale.replica_dir).returncode == 0
    out = tmp_path / "restored.db"
    assert H.restore(stale.replica_dir, out).returncode == 0
    assert H.integrity_check(out) == "ok"
    assert H.logical_dump(out) == H.logical_dump(stale.db_path)
    # nothing deleted: every original file survives, the condemned ones in quarantine
    after = tree(stale.replica_dir)
    assert set(before.values()) <= set(after.values())
    [manifest] = stale.replica_dir.glob("quarantine/*/manifest.json")
    entries = json.loads(manifest.read_text())["files"]
    assert sorted(e["original_path"] for e in entries) == moved
    assert all(e["codes"] == ["integrity-check-failed"] for e in entries)


def test_repair_from_the_chain_rebuilds_at_the_last_good_txid(stale: H.DamagedReplica, tmp_path: Path, run_ltxkit):
    r = run_ltxkit("repair", stale.replica_dir, "--rebuild-snapshot", "--yes")
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"new snapshot TXID {FIRST_BAD - 1:016x}" in r.stdout
    assert f"lost: TXIDs {FIRST_BAD:016x}..{stale.max_txid:016x}" in r.stdout
    assert run_ltxkit("verify", stale.replica_dir).returncode == 0
    out = tmp_path / "restored.db"
    assert H.restore(stale.replica_dir, out).returncode == 0
    mark = next(m for m in stale.marks if m.txid == FIRST_BAD - 1)
    assert H.dump_sha256(out) == mark.dump_sha256


def refused_from_db(run_ltxkit, stale: H.DamagedReplica, db: Path) -> str:  # type: ignore[no-untyped-def]
    """`repair --from-db db --yes` refuses (exit 1) and changes nothing; its message."""
    before = tree(stale.replica_dir)
    r = run_ltxkit("repair", stale.replica_dir, "--rebuild-snapshot", "--from-db", db, "--yes")
    assert r.returncode == 1, r.stdout + r.stderr
    assert tree(stale.replica_dir) == before
    return r.stderr


def test_repair_from_db_refuses_a_database_with_another_page_size(stale: H.DamagedReplica, tmp_path: Path, run_ltxkit):
    other = H.make_db(tmp_path / "other.db", page_size=1024, rows=5)
    assert "1024-byte pages, the replica 4096-byte pages" in refused_from_db(run_ltxkit, stale, other)


def test_repair_from_db_refuses_a_database_that_fails_integrity_check(
    stale: H.DamagedReplica, tmp_path: Path, run_ltxkit
):
    broken = tmp_path / "broken.db"
    out = tmp_path / "restored.db"
    assert H.restore(stale.replica_dir, out).returncode == 0  # the corrupt latest state
    broken.write_bytes(out.read_bytes())
    assert "itself fails integrity_check" in refused_from_db(run_ltxkit, stale, broken)


def test_repair_from_db_refuses_a_database_that_is_not_the_replicas_source(
    stale: H.DamagedReplica, tmp_path: Path, run_ltxkit
):
    """An unrelated database with the right page size: its schema gives it away."""
    import sqlite3

    other = tmp_path / "other.db"
    conn = sqlite3.connect(other)
    conn.execute("PRAGMA page_size=4096")
    conn.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY, total REAL)")
    conn.executemany("INSERT INTO invoices(total) VALUES (?)", [(i * 1.5,) for i in range(50)])
    conn.commit()
    conn.close()
    said = refused_from_db(run_ltxkit, stale, other)
    assert "does not look like this replica's database" in said and "lacks the replica's table(s) t" in said
    before = tree(stale.replica_dir)
    # the real source passes the comparison, and the plan says what was compared
    r = run_ltxkit("repair", stale.replica_dir, "--rebuild-snapshot", "--from-db", stale.db_path, "--dry-run")
    assert r.returncode == 0, r.stderr
    # compared with the newest restore point whose files are sound: all but the stale page match
    assert f"source check: restore point TXID {stale.max_txid:016x}" in r.stdout
    # forced: it goes ahead, and says loudly what it is doing
    r = run_ltxkit("repair", stale.replica_dir, "--rebuild-snapshot", "--from-db", other, "--dry-run", "--force-source")
    assert r.returncode == 0, r.stderr
    assert "NOT the replica's database" in r.stdout and tree(stale.replica_dir) == before


# ---- the search itself, over many histories: no Litestream needed ----------------------------


def _retained_chain(n: int, snapshot: int, oldest_l0: int) -> list[ReplicaFile]:
    """An L9 snapshot at `snapshot` and L0 files from `oldest_l0` to `n` (older ones pruned), so
    TXIDs oldest_l0..snapshot-1 end files but are not restore points."""
    files = [ReplicaFile(9, 1, snapshot, f"ltx/9/{format_filename(1, snapshot)}", 100, 0)]
    files += [ReplicaFile(0, t, t, f"ltx/0/{format_filename(t, t)}", 100, t) for t in range(oldest_l0, n + 1)]
    return files


@settings(max_examples=300, deadline=None)
@given(st.integers(2, 60), st.data())
def test_bisection_finds_the_boundary(n: int, data) -> None:
    snapshot = data.draw(st.integers(1, n), label="snapshot")
    files = _retained_chain(n, snapshot, data.draw(st.integers(2, snapshot + 1), label="oldest_l0"))
    first_bad = data.draw(st.integers(snapshot, n), label="first_bad")
    probed: list[int] = []

    def probe(plan: list[ReplicaFile]) -> PointCheck:
        txid = plan[-1].max_txid
        assert plan[0].level == 9 and [f.max_txid for f in plan[1:]] == list(range(snapshot + 1, txid + 1))
        probed.append(txid)
        return PointCheck(txid, plan[-1].key, ["bad"] if txid >= first_bad else [])

    latest = files[-1] if n > snapshot else files[0]
    verdict = ContentVerdict(CheckMode.QUICK, PointCheck(n, latest.key, ["bad"]))
    _bisect(files, verdict, probe)
    assert verdict.first_bad is not None and verdict.first_bad.txid == first_bad
    assert verdict.first_bad.last_key.endswith(format_filename(first_bad, first_bad) if first_bad > snapshot else "")
    if first_bad == snapshot:
        assert verdict.last_good is None
    else:
        assert verdict.last_good is not None and verdict.last_good.txid == first_bad - 1
    assert len(probed) <= n.bit_length() + 2  # a bisection, not a scan


@settings(max_examples=300, deadline=None)
@given(st.integers(2, 60), st.data())
def test_a_probe_that_loses_a_file_stops_the_search_and_is_counted_neither_way(n: int, data) -> None:
    """Retention deleting a file while a probe restores it says nothing about that restore point:
    the search stops there, and what it reports are points it really saw pass or fail."""
    snapshot = data.draw(st.integers(1, n), label="snapshot")
    files = _retained_chain(n, snapshot, data.draw(st.integers(2, snapshot + 1), label="oldest_l0"))
    first_bad = data.draw(st.integers(snapshot, n), label="first_bad")
    vanish_at = data.draw(st.integers(1, 8), label="vanish_at")  # the probe (1 = the earliest point's)
    seen: dict[int, bool | None] = {}  # what each probe said: passed, failed, or None (lost a file)

    def probe(plan: list[ReplicaFile]) -> PointCheck:
        txid = plan[-1].max_txid
        point = PointCheck(txid, plan[-1].key, ["bad"] if txid >= first_bad else [])
        if len(seen) + 1 == vanish_at:
            point = PointCheck(txid, plan[-1].key, restore_error="deleted", vanished=plan[0].key)
        seen[txid] = None if point.vanished else point.ok
        return point

    latest = files[-1] if n > snapshot else files[0]
    verdict = ContentVerdict(CheckMode.QUICK, PointCheck(n, latest.key, ["bad"]))
    _bisect(files, verdict, probe)
    stopped = verdict.search_stopped
    if stopped is None:  # the search ended before the probe that would have lost a file
        assert len(seen) < vanish_at
        assert verdict.first_bad is not None and verdict.first_bad.txid == first_bad
    else:
        assert stopped.vanished is not None and len(seen) == vanish_at
        assert verdict.first_bad is not None and verdict.first_bad.txid >= first_bad
        assert verdict.first_bad is verdict.latest or seen[verdict.first_bad.txid] is False
    if verdict.last_good is not None:
        assert verdict.last_good.txid < first_bad and seen[verdict.last_good.txid] is True


class _RetentionInRestore:
    """A directory replica whose retention deletes `victim` when the content check's restores
    read it for the `nth` time (the latest restore point's restore reads it first; the file checks
    open it instead)."""

    def __init__(self, root: Path, victim: Path, nth: int) -> None:
        from ltxkit.replica.storage import open_storage

        self._inner, self.victim, self._nth, self._reads = open_storage(str(root)), victim, nth, 0

    def __getattr__(self, name: str) -> object:
        return getattr(self._inner, name)

    def read_bytes(self, key: str, **kw: object) -> bytes:
        if key.endswith(self.victim.name):
            self._reads += 1
            if self._reads == self._nth:
                self.victim.unlink()
        return self._inner.read_bytes(key, **kw)  # type: ignore[arg-type]


def test_retention_during_the_search_for_the_last_good_point_is_said_not_misplaced(stale: H.DamagedReplica) -> None:
    """The earliest restore point passes; TXID 3 is probed next and loses its file to retention.
    Counted bad, it made TXID 2 the last good and TXID 3 the first bad, and repair would have set
    aside TXID 3, which is sound. Now the search stops there and says so."""
    from ltxkit.format.errors import Code
    from ltxkit.verify.engine import check_replica

    level0 = Path(stale.replica_dir) / "ltx" / "0"
    victim = level0 / format_filename(3, 3)
    storage = _RetentionInRestore(Path(stale.replica_dir), victim, 2)
    summary = check_replica(storage, str(stale.replica_dir), content=True)  # type: ignore[arg-type]
    assert not victim.exists()  # the race happened, in the probe of TXID 3
    [failed] = [f for f in summary.findings if f.code == Code.INTEGRITY_CHECK_FAILED]
    assert failed.context["last_good_txid"] == 1  # really seen to pass
    assert failed.context["search_stopped_by"] == f"ltx/0/{victim.name}"
    assert "first bad" not in failed.message and "run verify again" in failed.message
    [moved] = [f for f in summary.findings if f.code == Code.CHANGED_DURING_CHECK]
    assert moved.path.endswith(victim.name) and "0000000000000003" in moved.message
    assert summary.content is not None and summary.content.to_json()["search_stopped_by"] == failed.context[
        "search_stopped_by"
    ]


def test_repair_changes_nothing_when_retention_cuts_its_search_short(stale: H.DamagedReplica) -> None:
    """Repair sets aside every file from the first bad restore point on: with the search cut
    short that point is not known, so it changes nothing and says why (exit 2, a race)."""
    from ltxkit.repair import RepairError, plan_repair

    level0 = Path(stale.replica_dir) / "ltx" / "0"
    files_before = sorted(p.name for p in level0.iterdir())
    victim4 = level0 / format_filename(4, 4)  # it is TXID 4 that brought the damage in
    storage = _RetentionInRestore(Path(stale.replica_dir), victim4, 2)
    with pytest.raises(RepairError) as caught:
        plan_repair(storage, from_db=None)  # type: ignore[arg-type]
    assert victim4.name in str(caught.value) and "nothing was changed" in str(caught.value)
    assert caught.value.exit_code == 2
    assert sorted(p.name for p in level0.iterdir()) == [n for n in files_before if n != victim4.name]
    assert not (Path(stale.replica_dir) / "quarantine").exists()


def test_retention_taking_the_earliest_point_does_not_say_no_point_passes(stale: H.DamagedReplica) -> None:
    """The earliest restore point loses its file while it is probed: nothing is known of it, so
    verify must not say that no restore point passes (it used to)."""
    from ltxkit.format.errors import Code
    from ltxkit.verify.engine import check_replica

    victim = Path(stale.replica_dir) / "ltx" / "0" / format_filename(1, 1)
    storage = _RetentionInRestore(Path(stale.replica_dir), victim, 2)
    summary = check_replica(storage, str(stale.replica_dir), content=True)  # type: ignore[arg-type]
    assert not victim.exists()
    [failed] = [f for f in summary.findings if f.code == Code.INTEGRITY_CHECK_FAILED]
    assert "no earlier restore point passes" not in failed.message
    assert "last_good_txid" not in failed.context and failed.context["search_stopped_by"].endswith(victim.name)
    assert [f.code for f in summary.findings if f.severity != failed.severity] == [Code.CHANGED_DURING_CHECK]
