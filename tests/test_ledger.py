"""The checksum ledger `ltxkit replicate` writes beside ltx/, and what verify makes of it."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

import harness as H
from ltxkit.replica import ledger

pytestmark = pytest.mark.litestream


def verify(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ltxkit", "verify", *args], capture_output=True, text=True)


@pytest.fixture
def replica(tmp_path: Path) -> Path:
    db = H.make_db(tmp_path / "app.db", rows=20)
    rep = tmp_path / "replica"
    writer = H.Writer(db)
    with H.pin_wal(db):
        for _ in range(4):
            assert H.run_once(db, rep, "--levels", "none").returncode == 0
            writer.write(3)
    writer.close()
    return rep


def records(rep: Path) -> list[Path]:
    return sorted((rep / "ledger" / "0").glob("*.json"))


def test_every_published_file_has_a_record_and_the_latest_point_is_proven(replica: Path) -> None:
    assert [p.stem for p in records(replica)] == [p.stem for p in sorted((replica / "ltx" / "0").glob("*.ltx"))]
    first = ledger.decode(records(replica)[0].read_bytes())
    assert first.before is None and first.min_txid == 1  # the snapshot starts from nothing
    r = verify(str(replica), "--format", "json")
    assert r.returncode == 0, r.stdout
    assert json.loads(r.stdout)["replicas"][0]["proven"] is True
    assert "every restore point is proven (4 restore points" in verify(str(replica)).stdout
    assert json.loads(r.stdout)["replicas"][0]["proven_restore_points"] == 4


def test_a_record_that_disagrees_is_ledger_mismatch(replica: Path) -> None:
    path = records(replica)[-1]
    rec = ledger.decode(path.read_bytes())
    path.write_bytes(ledger.encode(dataclasses.replace(rec, after=rec.after ^ 1)))  # a valid record, wrong state
    r = verify(str(replica), "--format", "json")
    assert r.returncode == 1
    codes = {f["code"] for f in json.loads(r.stdout)["findings"]}
    assert codes == {"ledger-mismatch"}
    assert json.loads(r.stdout)["replicas"][0]["proven"] is False


def test_a_damaged_record_and_a_missing_one(replica: Path) -> None:
    damaged, missing = records(replica)[-1], records(replica)[1]
    damaged.write_bytes(damaged.read_bytes().replace(b'"commit"', b'"cOmmit"'))
    missing.unlink()
    r = verify(str(replica), "--format", "json")
    codes = {f["code"]: f["severity"] for f in json.loads(r.stdout)["findings"]}
    assert codes == {"ledger-damaged": "error", "ledger-gap": "warning"}
    assert r.returncode == 1


def test_a_gap_alone_is_a_warning(replica: Path) -> None:
    records(replica)[1].unlink()  # e.g. killed between publishing the file and writing its record
    assert verify(str(replica)).returncode == 0
    assert verify(str(replica), "--fail-on", "warning").returncode == 1


def test_a_well_formed_file_with_other_pages_is_ledger_mismatch(replica: Path) -> None:
    from ltxkit.format.decoder import LTXReader
    from ltxkit.format.encoder import encode_file

    victim = sorted((replica / "ltx" / "0").glob("*.ltx"))[-1]
    reader = LTXReader.from_bytes(victim.read_bytes())
    pages = list(reader.pages())
    pgno, page = pages[-1]
    changed = page[:-16] + bytes(b ^ 0xFF for b in page[-16:])  # other bytes, the file still well-formed
    victim.write_bytes(encode_file(reader.header, [*pages[:-1], (pgno, changed)]))  # its own valid checksum
    r = verify(str(replica), "--format", "json", "--structure-only")
    codes = {f["code"] for f in json.loads(r.stdout)["findings"]}
    assert codes == {"ledger-mismatch"}, r.stdout
    assert r.returncode == 1


def test_repair_records_what_it_publishes_and_moves_the_damaged_files_record(replica: Path) -> None:
    victim = sorted((replica / "ltx" / "0").glob("*.ltx"))[-1]
    data = victim.read_bytes()
    victim.write_bytes(data[:200] + bytes([data[200] ^ 0xFF]) + data[201:])
    assert verify(str(replica)).returncode == 1
    db = replica.parent / "app.db"
    r = subprocess.run(
        # --force-source: in this 5-page database every page changed since the last sound restore
        # point, so repair cannot show it is the replica's source by its pages (a separate test)
        [sys.executable, "-m", "ltxkit", "repair", str(replica), "--rebuild-snapshot", "--from-db", str(db), "--yes",
         "--force-source"],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    v = verify(str(replica), "--format", "json")
    assert v.returncode == 0, v.stdout
    doc = json.loads(v.stdout)
    assert doc["findings"] == [] and doc["replicas"][0]["proven"] is True
    for ltx in (replica / "ltx").glob("*/*.ltx"):  # every file, the repair's included, has its record
        assert (replica / "ledger" / ltx.parent.name / f"{ltx.stem}.json").exists(), ltx
    assert not (replica / "ledger" / "0" / f"{victim.stem}.json").exists()
    moved = list((replica / "quarantine").rglob(f"{victim.stem}.json"))
    assert len(moved) == 1 and ledger.decode(moved[0].read_bytes()).max_txid == int(victim.stem.split("-")[1], 16)
    out = replica.parent / "after.db"
    assert H.restore(replica, out).returncode == 0  # Litestream restores the repaired replica
    assert H.logical_dump(out) == H.logical_dump(db)


def test_repair_sets_aside_records_about_other_files_and_keeps_every_ltx_file(replica: Path) -> None:
    """A Litestream that wrote over ltxkit's TXIDs leaves records about files no longer there:
    repair published a snapshot, then failed "still failing after repair: ledger-mismatch", and
    its dry run never said so. The wrong records now go to quarantine; the files stay."""
    before = replica.parent / "before.db"
    assert H.restore(replica, before).returncode == 0
    stale, damaged = records(replica)[-1], records(replica)[1]
    rec = ledger.decode(stale.read_bytes())
    stale.write_bytes(ledger.encode(dataclasses.replace(rec, file_checksum=rec.file_checksum ^ 1)))
    damaged.write_bytes(damaged.read_bytes().replace(b'"commit"', b'"cOmmit"'))
    assert {"ledger-mismatch", "ledger-damaged"} <= {
        f["code"] for f in json.loads(verify(str(replica), "--format", "json").stdout)["findings"]
    }
    ltx_before = {p.name: p.read_bytes() for p in (replica / "ltx").glob("*/*.ltx")}

    def repair(*extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "ltxkit", "repair", str(replica), "--rebuild-snapshot", *extra],
                              capture_output=True, text=True)

    dry = repair("--dry-run")
    assert dry.returncode == 0 and stale.name in dry.stdout and damaged.name in dry.stdout, dry.stdout + dry.stderr
    r = repair("--yes")
    assert r.returncode == 0, r.stdout + r.stderr
    v = verify(str(replica), "--format", "json")
    assert v.returncode == 0, v.stdout
    ltx_after = {p.name: p.read_bytes() for p in (replica / "ltx").glob("*/*.ltx")}
    assert {k: ltx_after.get(k) for k in ltx_before} == ltx_before  # every LTX file stayed, unchanged
    moved = {p.name for p in (replica / "quarantine").rglob("*.json") if p.name != "manifest.json"}
    assert moved == {stale.name, damaged.name}
    out = replica.parent / "after.db"
    assert H.restore(replica, out).returncode == 0  # Litestream restores what it restored before
    assert H.logical_dump(out) == H.logical_dump(before)


def test_a_lost_newest_file_is_ledger_ahead_and_the_replicator_sets_its_record_aside(replica: Path) -> None:
    """The newest file deleted (by hand, or a bucket's lifecycle rule): verify said "ok", and the
    replicator, publishing that TXID again, could not write its record beside the old one, so
    the replica failed verify with `ledger-mismatch` on every run after."""
    db = replica.parent / "app.db"
    newest = sorted((replica / "ltx" / "0").glob("*.ltx"))[-1]
    newest.unlink()
    r = verify(str(replica), "--format", "json")
    assert r.returncode == 1, r.stdout
    [finding] = json.loads(r.stdout)["findings"]
    assert finding["code"] == "ledger-ahead" and f"{newest.stem}.json" in finding["message"], finding
    H.write_rows(db, 2)
    again = H.run_once(db, replica, "--levels", "none")
    assert again.returncode == 0, again.stderr
    assert f"ledger/0/{newest.stem}.json was a record of an earlier file by this name" in again.stderr
    [aside] = list((replica / "quarantine").glob(f"*/ledger/0/{newest.stem}.json"))
    assert json.loads((aside.parent.parent.parent / "manifest.json").read_text())["files"][0]["codes"] == [
        "ledger-ahead"
    ]
    r = verify(str(replica), "--format", "json")
    assert r.returncode == 0 and json.loads(r.stdout)["findings"] == [], r.stdout
    assert json.loads(r.stdout)["replicas"][0]["proven"] is True


def test_repair_sets_aside_the_records_of_lost_files(tmp_path: Path) -> None:
    import shutil

    rep = tmp_path / "replica"
    shutil.copytree(Path(__file__).resolve().parent.parent / "fixtures/corrupt/replicas/ledger-ahead", rep)
    r = subprocess.run(
        [sys.executable, "-m", "ltxkit", "repair", str(rep), "--rebuild-snapshot", "--yes", "--watch", "0"],
        capture_output=True, text=True,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert sorted(p.relative_to(rep).parts[2:] for p in rep.glob("quarantine/*/ledger/*/*.json")) == [
        ("ledger", "0", f"{4:016x}-{4:016x}.json"),
        ("ledger", "9", f"{1:016x}-{4:016x}.json"),
    ]
    assert verify(str(rep)).returncode == 0


def test_repair_of_a_gap_sets_aside_the_lost_files_record_in_one_run(replica: Path) -> None:
    """A middle L0 file deleted: repair from the chain ends the replica below the gap, and the
    deleted file's record, which verify had no reason to name before, was left above that end.
    Repair then failed its own check (`ledger-ahead`, exit 1) and had to be run again."""
    l0 = sorted((replica / "ltx" / "0").glob("*.ltx"))
    assert len(l0) >= 3
    lost = l0[-2]
    lost.unlink()
    r = subprocess.run(
        [sys.executable, "-m", "ltxkit", "repair", str(replica), "--rebuild-snapshot", "--yes", "--watch", "0"],
        capture_output=True, text=True,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"ledger/0/{lost.stem}.json -> quarantine/ (ledger-ahead)" in r.stdout, r.stdout
    [aside] = list(replica.glob(f"quarantine/*/ledger/0/{lost.stem}.json"))
    manifest = json.loads((aside.parents[2] / "manifest.json").read_text())
    assert {f["codes"][0] for f in manifest["files"]} == {"txid-gap", "ledger-ahead"}
    v = verify(str(replica), "--format", "json")
    assert v.returncode == 0 and json.loads(v.stdout)["findings"] == [], v.stdout


def test_repair_that_only_moves_a_damaged_record_says_it_builds_nothing(tmp_path: Path) -> None:
    """The chain's own snapshot already ends where repair keeps the replica: the plan said "new
    snapshot TXID ..., built from ..." and published none."""
    db = H.make_db(tmp_path / "app.db", rows=20)
    rep = tmp_path / "replica"
    assert H.run_once(db, rep).returncode == 0  # the first sync publishes L0 and an L9 snapshot
    assert list((rep / "ltx" / "9").glob("*.ltx"))
    damaged = records(rep)[-1]
    damaged.write_bytes(damaged.read_bytes().replace(b'"commit"', b'"cOmmit"'))
    before = sorted(p.name for p in (rep / "ltx").rglob("*.ltx"))
    r = subprocess.run(
        [sys.executable, "-m", "ltxkit", "repair", str(rep), "--rebuild-snapshot", "--yes", "--watch", "0"],
        capture_output=True, text=True,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "new snapshot" not in r.stdout and "publish " not in r.stdout, r.stdout
    assert f"no new file: the replica's files still restore TXID {1:016x}" in r.stdout, r.stdout
    assert sorted(p.name for p in (rep / "ltx").rglob("*.ltx")) == before
    assert verify(str(rep)).returncode == 0
