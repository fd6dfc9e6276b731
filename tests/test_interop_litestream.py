"""Interop with the real Litestream 0.5.x: its files decode, our snapshots restore with it, and
`ltxkit restore` writes the very bytes `litestream restore` writes."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import harness as H
from ltxkit.format import LTXReader
from ltxkit.format.schema import format_filename
from ltxkit.replica.storage import LocalStorage
from ltxkit.restore import restore_to_path

pytestmark = pytest.mark.litestream

PAGE_SIZES = [512, 4096, 65536]


@pytest.fixture(scope="module", params=PAGE_SIZES, ids=lambda p: f"page{p}")
def real_replica(request, tmp_path_factory) -> H.Replica:
    return H.make_replica(tmp_path_factory.mktemp(f"rep{request.param}"), page_size=request.param)


@pytest.fixture(scope="module")
def vacuum_replica(tmp_path_factory) -> H.Replica:
    return H.make_replica(tmp_path_factory.mktemp("vac"), page_size=4096, vacuum=True, litestream_checkpoints=True)


@pytest.fixture(scope="module")
def retention_replica(tmp_path_factory) -> H.Replica:
    return H.make_replica(tmp_path_factory.mktemp("ret"), page_size=4096, retention=True)


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def litestream_restore(rep: H.Replica, out: Path, **kw: object) -> Path:
    r = H.restore(rep.replica_dir, out, **kw)  # type: ignore[arg-type]
    assert r.returncode == 0, r.stderr
    return out


# ---- issue 2: every real file decodes, checksums verified; inspect reports it -----------------


def test_every_real_file_decodes_with_checksums(real_replica: H.Replica, run_ltxkit) -> None:
    files = real_replica.files()
    levels = {f.level for f in files}
    assert {0, 1, 9} <= levels, levels  # snapshot, L0 increments and compactions are all exercised
    for f in files:
        with open(f.path, "rb") as fh:
            reader = LTXReader(fh)
            info = reader.read_all()
        assert reader.header.page_size == real_replica.page_size
        assert (reader.header.min_txid, reader.header.max_txid) == (f.min_txid, f.max_txid)
        assert info.trailer.file_checksum >> 63 == 1
        assert info.defects == []
    # inspect --json on a snapshot and an increment
    for f in (files[0], files[-1]):
        r = run_ltxkit("inspect", f.path, "--json", "--pages")
        assert r.returncode == 0, r.stderr
        doc = json.loads(r.stdout)
        assert doc["header"]["min_txid"] == f"{f.min_txid:016x}"
        assert doc["header"]["max_txid"] == f"{f.max_txid:016x}"
        assert doc["header"]["page_size"] == real_replica.page_size
        assert doc["header"]["flags"] == 2  # Litestream 0.5.x writes no-checksum files
        assert doc["trailer"]["post_apply_checksum"] == "0000000000000000"
        assert len(doc["trailer"]["file_checksum"]) == 16
        assert doc["page_count"] == len(doc["pages"]) > 0
        assert doc["ok"] is True


def test_ltxkit_snapshot_restores_with_litestream(tmp_path: Path, run_ltxkit) -> None:
    for page_size in (512, 4096):
        db = H.make_db(tmp_path / f"src{page_size}.db", page_size=page_size, rows=300, row_bytes=300)
        replica = tmp_path / f"replica{page_size}"
        out = replica / "ltx" / "0" / format_filename(1, 1)
        out.parent.mkdir(parents=True)
        restored = tmp_path / f"restored{page_size}.db"
        tracked = tmp_path / f"tracked{page_size}.ltx"
        # a connection held open keeps the new rows in the WAL (the last one to close would
        # checkpoint them away): the snapshot must read them from there
        with H.pin_wal(db):
            H.write_rows(db, 20)
            wal = Path(f"{db}-wal")
            assert wal.stat().st_size > 0
            db_file_before = Path(db).read_bytes()
            r = run_ltxkit("snapshot", db, "-o", out, "--no-checksums")
            assert r.returncode == 0, r.stderr
            # a tracked snapshot of the same state: its post-apply checksum is the database checksum
            assert run_ltxkit("snapshot", db, "-o", tracked).returncode == 0
            doc = json.loads(run_ltxkit("inspect", tracked, "--json").stdout)
            assert run_ltxkit("checksum", db).stdout.strip() == doc["trailer"]["post_apply_checksum"]
            assert wal.stat().st_size > 0 and Path(db).read_bytes() == db_file_before  # still un-checkpointed
        r = H.restore(replica, restored)
        assert r.returncode == 0, r.stderr
        H.checkpoint(db, "TRUNCATE")
        assert restored.read_bytes() == Path(db).read_bytes()
        assert restored.read_bytes() != db_file_before  # the WAL's rows are in the snapshot


def test_litestream_cannot_restore_a_tracked_file_at_the_end_of_its_plan(tmp_path: Path, run_ltxkit) -> None:
    """Why `snapshot --no-checksums` exists and why repair publishes untracked files: pinned here."""
    db = H.make_db(tmp_path / "src.db", rows=50)
    out = tmp_path / "replica" / "ltx" / "0" / format_filename(1, 1)
    out.parent.mkdir(parents=True)
    assert run_ltxkit("snapshot", db, "-o", out).returncode == 0
    r = H.restore(tmp_path / "replica", tmp_path / "x.db")
    assert r.returncode != 0 and "post-apply checksum not allowed" in r.stderr
    # ltxkit restores it, and verify names why Litestream cannot
    assert run_ltxkit("restore", tmp_path / "replica", "-o", tmp_path / "y.db", "--quiet").returncode == 0
    assert H.logical_dump(tmp_path / "y.db") == H.logical_dump(db)
    v = run_ltxkit("verify", tmp_path / "replica", "--format", "json")
    assert v.returncode == 1, v.stderr
    assert [f["code"] for f in json.loads(v.stdout)["findings"]] == ["tracked-plan-end"]


def test_verify_names_the_tracked_plan_end_fixture_litestream_fails_on(tmp_path: Path, run_ltxkit) -> None:
    """Issue 14 (2a): the fixture's plan ends with a sound tracked file; the real Litestream refuses
    the same replica, ltxkit restores it, and verify says both."""
    fixture = Path(__file__).resolve().parent.parent / "fixtures" / "corrupt" / "replicas" / "tracked-plan-end"
    replica = tmp_path / "replica"
    shutil.copytree(fixture, replica)
    r = H.restore(replica, tmp_path / "litestream.db")
    assert r.returncode != 0 and "post-apply checksum not allowed" in r.stderr, r.stderr
    assert not (tmp_path / "litestream.db").exists()
    ours = run_ltxkit("restore", replica, "-o", tmp_path / "ltxkit.db", "--quiet")
    assert ours.returncode == 0, ours.stderr
    v = run_ltxkit("verify", replica)
    assert v.returncode == 1
    assert "tracked-plan-end" in v.stdout and "ltxkit restore` can still restore it" in v.stdout
    assert "litestream restore` 0.5.x refuses it" in v.stdout


# ---- issue 4: byte-identical restores -------------------------------------------------------


def test_restore_latest_byte_identical(real_replica: H.Replica, tmp_path: Path) -> None:
    ours = tmp_path / "ours.db"
    restore_to_path(LocalStorage(real_replica.replica_dir), ours)
    theirs = litestream_restore(real_replica, tmp_path / "theirs.db")
    assert sha(ours) == sha(theirs)
    assert H.logical_dump(ours) == H.logical_dump(real_replica.db_path)


def test_restore_every_mark_by_txid(real_replica: H.Replica, tmp_path: Path, run_ltxkit) -> None:
    assert len(real_replica.marks) >= 3
    for mark in real_replica.marks:
        ours, theirs = tmp_path / f"o{mark.txid}.db", tmp_path / f"t{mark.txid}.db"
        r = run_ltxkit("restore", real_replica.replica_dir, "-o", ours, "--txid", f"{mark.txid:016x}", "--quiet")
        assert r.returncode == 0, r.stderr
        litestream_restore(real_replica, theirs, txid=mark.txid)
        assert sha(ours) == sha(theirs), mark
        assert H.dump_sha256(ours) == mark.dump_sha256


def test_txid_zero_is_the_latest_state_for_both(real_replica: H.Replica, tmp_path: Path, run_ltxkit) -> None:
    ours, theirs, latest = tmp_path / "o.db", tmp_path / "t.db", tmp_path / "latest.db"
    r = run_ltxkit("restore", real_replica.replica_dir, "-o", ours, "--txid", "0000000000000000", "--quiet")
    assert r.returncode == 0, r.stderr
    litestream_restore(real_replica, theirs, txid=0)
    restore_to_path(LocalStorage(real_replica.replica_dir), latest)
    assert sha(ours) == sha(theirs) == sha(latest)


def test_restore_by_timestamp(real_replica: H.Replica, tmp_path: Path, run_ltxkit) -> None:
    mid = real_replica.marks[len(real_replica.marks) // 2]
    ts = H.rfc3339_ms(mid.timestamp_ms + 1)
    ours, theirs = tmp_path / "o.db", tmp_path / "t.db"
    r = run_ltxkit("restore", f"file://{real_replica.replica_dir}", "-o", ours, "--timestamp", ts, "--quiet")
    assert r.returncode == 0, r.stderr
    litestream_restore(real_replica, theirs, timestamp=ts)
    assert sha(ours) == sha(theirs)


def test_timestamps_compare_to_the_nanosecond_and_a_later_one_is_refused_by_both(
    real_replica: H.Replica, tmp_path: Path, run_ltxkit
) -> None:
    """Litestream compares a restore time with each file's creation time in nanoseconds, and
    refuses a time after the newest file ("timestamp does not exist"); ltxkit cut both to
    milliseconds and restored the latest state. ltxkit now accepts one millisecond more than
    Litestream, the only times that reach the newest file (see `restore_plan`)."""
    files = sorted(real_replica.files(), key=lambda f: os.stat(f.path).st_mtime_ns)
    newest = max(os.stat(f.path).st_mtime_ns for f in files)
    latest = tmp_path / "o-latest.db"
    assert run_ltxkit("restore", real_replica.replica_dir, "-o", latest, "--quiet").returncode == 0
    for i, f in enumerate(files[:: max(1, len(files) // 4)]):
        ns = os.stat(f.path).st_mtime_ns + 400_000  # 0.4 ms after this file was created
        seconds, frac = divmod(ns, 1_000_000_000)
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{frac:09d}Z"
        ours, theirs = tmp_path / f"o{i}.db", tmp_path / f"t{i}.db"
        r = run_ltxkit("restore", real_replica.replica_dir, "-o", ours, "--timestamp", ts, "--quiet")
        ls = H.restore(real_replica.replica_dir, theirs, timestamp=ts)
        if ns > newest:  # after the newest file, within its millisecond
            assert ls.returncode != 0 and "timestamp does not exist" in ls.stderr, ls.stderr
            assert r.returncode == 0 and sha(ours) == sha(latest), (ts, r.stderr)
            continue
        assert (r.returncode == 0) == (ls.returncode == 0), (ts, r.stderr, ls.stderr)
        if r.returncode == 0:
            assert sha(ours) == sha(theirs), ts
    # the first millisecond after the newest file: Litestream refuses it (no time reaches its newest
    # file); ltxkit restores the latest state there, as documented, and refuses a nanosecond more
    first = (newest // 1_000_000 + 1) * 1_000_000
    for when, ours_restores in ((first, True), (first + 1, False)):
        seconds, frac = divmod(when, 1_000_000_000)
        later = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{frac:09d}Z"
        ls = H.restore(real_replica.replica_dir, tmp_path / f"t-later-{when}.db", timestamp=later)
        assert ls.returncode != 0 and "timestamp does not exist" in ls.stderr, ls.stderr
        out = tmp_path / f"o-later-{when}.db"
        r = run_ltxkit("restore", real_replica.replica_dir, "-o", out, "--timestamp", later, "--quiet")
        if ours_restores:
            assert r.returncode == 0 and sha(out) == sha(latest), r.stderr
        else:
            assert r.returncode == 2 and "no restore point is that recent" in r.stderr, r.stderr
            assert not out.exists()


def test_the_window_opens_at_the_earliest_time_both_tools_restore(
    real_replica: H.Replica, tmp_path: Path, run_ltxkit
) -> None:
    """The window's earliest time was the creation time of the oldest restore point's own plan:
    Litestream's first L9 snapshot, made after the L0 file it covers, so a few ms late; and a
    restore at a file's own creation time leaves the file out. It is now the first millisecond
    at which a `--timestamp` restore succeeds, with either tool."""
    doc = json.loads(run_ltxkit("verify", real_replica.replica_dir, "--format", "json", "--structure-only").stdout)
    earliest = doc["replicas"][0]["window"]["earliest_time"]
    assert earliest is not None
    at = datetime.strptime(earliest, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    before = (at - timedelta(milliseconds=1)).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    for when, restores in ((earliest, True), (before, False)):
        ours, theirs = tmp_path / f"o-{restores}.db", tmp_path / f"t-{restores}.db"
        r = run_ltxkit("restore", real_replica.replica_dir, "-o", ours, "--timestamp", when, "--quiet")
        ls = H.restore(real_replica.replica_dir, theirs, timestamp=when)
        assert (r.returncode == 0, ls.returncode == 0) == (restores, restores), (when, r.stderr, ls.stderr)
        if restores:
            assert sha(ours) == sha(theirs)


def test_litestream_03_backups_are_named_never_silently_ignored(
    real_replica: H.Replica, tmp_path: Path, run_ltxkit
) -> None:
    """Litestream 0.5 restores from 0.3 backups (`generations/`) in the same replica path when
    their snapshot is the newer one; ltxkit reads only `ltx/`, and says so instead of silently
    restoring something else."""
    legacy = tmp_path / "legacy"
    (legacy / "generations" / "0123456789abcdef" / "snapshots").mkdir(parents=True)
    (legacy / "generations" / "0123456789abcdef" / "snapshots" / "00000000.snapshot.lz4").write_bytes(b"x")
    commands = [("restore", legacy, "-o", tmp_path / "a.db"), ("verify", legacy)]
    commands.append(("repair", legacy, "--rebuild-snapshot", "--dry-run"))
    for args in commands:
        r = run_ltxkit(*args)  # verify of the directory said only "not a replica ... holds no .ltx files"
        assert r.returncode == 2 and "a Litestream 0.3 replica (generations/, no ltx/)" in r.stderr, (args, r.stderr)

    mixed = tmp_path / "mixed"
    shutil.copytree(real_replica.replica_dir, mixed)
    shutil.copytree(legacy / "generations", mixed / "generations")
    v = run_ltxkit("verify", mixed, "--format", "json", "--structure-only")
    assert v.returncode == 0, v.stderr
    [finding] = json.loads(v.stdout)["findings"]
    assert finding["code"] == "legacy-generations" and finding["severity"] == "warning"
    assert run_ltxkit("verify", mixed, "--structure-only", "--fail-on", "warning").returncode == 1
    r = run_ltxkit("restore", mixed, "-o", tmp_path / "m.db", "--quiet")
    assert r.returncode == 0 and r.stderr.startswith(f"ltxkit: warning: {mixed}: Litestream 0.3 backups"), r.stderr
    # ltx/ is what ltxkit read
    assert sha(tmp_path / "m.db") == sha(litestream_restore(real_replica, tmp_path / "t.db"))
    assert run_ltxkit("verify", real_replica.replica_dir, "--structure-only", "--fail-on", "warning").returncode == 0


def test_restore_after_vacuum_shrink(vacuum_replica: H.Replica, tmp_path: Path) -> None:
    ours = tmp_path / "ours.db"
    restore_to_path(LocalStorage(vacuum_replica.replica_dir), ours)
    theirs = litestream_restore(vacuum_replica, tmp_path / "theirs.db")
    assert sha(ours) == sha(theirs)
    for mark in vacuum_replica.marks:
        o, t = tmp_path / f"o{mark.txid}.db", tmp_path / f"t{mark.txid}.db"
        restore_to_path(LocalStorage(vacuum_replica.replica_dir), o, txid=mark.txid)
        litestream_restore(vacuum_replica, t, txid=mark.txid)
        assert sha(o) == sha(t), mark


def test_restore_chain_spanning_l9_l2_l1_l0(real_replica: H.Replica, tmp_path: Path, run_ltxkit) -> None:
    r = run_ltxkit("restore", real_replica.replica_dir, "-o", tmp_path / "x.db", "--dry-run")
    assert r.returncode == 0, r.stderr
    from ltxkit.restore import plan_for

    # The newest snapshot covers the L2 files, so Litestream's plan skips them. Without it (as
    # before the snapshot interval elapses) the plan must climb L9 -> L2 -> L1 -> L0.
    replica = tmp_path / "replica"
    shutil.copytree(real_replica.replica_dir, replica)
    snapshots = sorted((replica / "ltx" / "9").iterdir())
    assert len(snapshots) >= 2, snapshots
    snapshots[-1].unlink()
    plan = plan_for(LocalStorage(replica))
    levels = [f.level for f in plan]
    assert levels[0] == 9 and {0, 1, 2} <= set(levels), levels
    ours = tmp_path / "ours.db"
    r = run_ltxkit("restore", replica, "-o", ours, "--quiet")
    assert r.returncode == 0, r.stderr
    theirs = tmp_path / "theirs.db"
    assert H.restore(replica, theirs).returncode == 0
    assert sha(ours) == sha(theirs)
    assert H.logical_dump(ours) == H.logical_dump(real_replica.db_path)


# ---- issue 3: no false positives, seed shapes named, tree untouched --------------------------


def test_verify_clean_on_real_replicas(real_replica: H.Replica, run_ltxkit) -> None:
    r = run_ltxkit("verify", real_replica.replica_dir, "--format", "json", "--deep")
    doc = json.loads(r.stdout)
    assert r.returncode == 0, doc["findings"]
    assert doc["ok"] is True and doc["findings"] == []
    assert doc["replicas"][0]["snapshots"] >= 2  # several L9 snapshots


def test_verify_clean_after_vacuum_and_retention(vacuum_replica, retention_replica, run_ltxkit) -> None:
    for rep in (vacuum_replica, retention_replica):
        r = run_ltxkit("verify", rep.replica_dir, "--format", "json")
        doc = json.loads(r.stdout)
        assert r.returncode == 0, doc["findings"]
        errors = [f for f in doc["findings"] if f["severity"] == "error"]
        assert errors == []


def test_verify_never_writes(real_replica: H.Replica, run_ltxkit, tmp_path: Path) -> None:
    before = H.tree_digest(real_replica.replica_dir)
    for args in ([], ["--deep"], ["--quick"], ["--format", "junit"]):
        run_ltxkit("verify", real_replica.replica_dir, *args)
    assert H.tree_digest(real_replica.replica_dir) == before


def _codes(doc: dict) -> set[str]:
    return {f["code"] for f in doc["findings"]}


def test_seed_shape_named_before_restore(tmp_path: Path, run_ltxkit) -> None:
    rep = H.make_seed_shape(tmp_path)
    r = run_ltxkit("verify", rep.replica_dir, "--format", "json")
    assert r.returncode == 1
    doc = json.loads(r.stdout)
    assert "snapshot-nonsequential-pages" in _codes(doc)
    bad = [f for f in doc["findings"] if f["code"] == "snapshot-nonsequential-pages"]
    assert Path(bad[0]["path"]).resolve() == Path(rep.damaged_file).resolve()
    # and Litestream's own restore fails on the same replica
    lr = H.restore(rep.replica_dir, tmp_path / "lr.db")
    assert lr.returncode != 0 and "nonsequential" in lr.stderr


def test_growth_hole_shape_named_before_restore(tmp_path: Path, run_ltxkit) -> None:
    rep = H.make_growth_hole_shape(tmp_path)
    r = run_ltxkit("verify", rep.replica_dir, "--format", "json")
    assert r.returncode == 1
    doc = json.loads(r.stdout)
    assert {"growth-pages-missing", "unrestorable"} <= _codes(doc)
    growth = [f for f in doc["findings"] if f["code"] == "growth-pages-missing"]
    assert Path(growth[0]["path"]).resolve() == Path(rep.damaged_file).resolve()
    lr = H.restore(rep.replica_dir, tmp_path / "lr.db")
    assert lr.returncode != 0 and "nonsequential" in lr.stderr


@pytest.mark.parametrize(
    "maker,code",
    [(H.make_txid_gap_shape, "txid-gap"), (H.make_truncated_shape, "truncated"),
     (H.make_flipped_byte_shape, None)],
    ids=["gap", "truncated", "flipped"],
)
def test_other_shapes_named(tmp_path: Path, run_ltxkit, maker, code) -> None:
    rep = maker(tmp_path)
    junit = tmp_path / "v.xml"
    r = run_ltxkit("verify", rep.replica_dir, "--format", "junit", "--output", junit)
    assert r.returncode == 1
    assert "<failure" in junit.read_text()
    doc = json.loads(run_ltxkit("verify", rep.replica_dir, "--format", "json").stdout)
    codes = _codes(doc)
    if code:
        assert code in codes
    else:
        assert codes & {"file-checksum-mismatch", "page-decompress-failed"}
    assert H.restore(rep.replica_dir, tmp_path / "lr.db").returncode != 0


def test_damaged_file_among_healthy_ones_is_the_only_one_named(tmp_path: Path, run_ltxkit) -> None:
    rep = H.make_flipped_byte_shape(tmp_path)
    files = [f.path for f in rep.files()]
    r = run_ltxkit("verify", *files, "--format", "json")
    doc = json.loads(r.stdout)
    named = {Path(f["path"]).resolve() for f in doc["findings"]}
    assert named == {Path(rep.damaged_file).resolve()}
    assert len(doc["files"]) == len(files)


def test_restore_refuses_damaged_plan_like_verify(tmp_path: Path, run_ltxkit) -> None:
    rep = H.make_truncated_shape(tmp_path)
    out = tmp_path / "o.db"
    r = run_ltxkit("restore", rep.replica_dir, "-o", out)
    assert r.returncode == 1 and "truncated" in r.stderr and str(Path(rep.damaged_file).name) in r.stderr
    assert not out.exists()


@pytest.mark.parametrize("level", [0, 9])
def test_repair_makes_a_tracked_plan_end_restorable_by_litestream(tmp_path: Path, run_ltxkit, level: int) -> None:
    """From the chain: an untracked level-9 snapshot ends the plan after the repair (replacing a
    tracked one with the same name, which goes to quarantine)."""
    db = H.make_db(tmp_path / "src.db", rows=50)
    replica = tmp_path / "replica"
    out = replica / "ltx" / str(level) / format_filename(1, 1)
    out.parent.mkdir(parents=True)
    assert run_ltxkit("snapshot", db, "-o", out).returncode == 0  # tracked (the default)
    assert H.restore(replica, tmp_path / "before.db").returncode != 0
    r = run_ltxkit("repair", replica, "--rebuild-snapshot", "--yes", "--watch", "0")
    assert r.returncode == 0, r.stdout + r.stderr
    assert run_ltxkit("verify", replica).returncode == 0
    theirs = tmp_path / "theirs.db"
    lr = H.restore(replica, theirs)
    assert lr.returncode == 0, lr.stderr
    assert H.logical_dump(theirs) == H.logical_dump(db)
    assert (list((replica / "quarantine").rglob("*.ltx")) != []) is (level == 9)


def test_a_file_url_names_the_directory_litestream_uses(tmp_path: Path, run_ltxkit) -> None:
    """Litestream uses a file:// URL's path as Go writes it back, escaped, and does not decode
    it: `my%20rep` is a directory of that name, and a space becomes `%20`. ltxkit decoded it and
    read (or, replicating, wrote) `my rep`: one URL, two replicas, and verify passed the wrong one."""
    db = H.make_db(tmp_path / "app.db", rows=30)
    for url, directory in (
        (f"file://{tmp_path}/my%20rep", tmp_path / "my%20rep"),
        (f"file://{tmp_path}/sp ace/(x)", tmp_path / "sp%20ace" / "%28x%29"),
    ):
        H.replicate_once(db, tmp_path / "unused", db_overrides={"replica": {"path": None, "url": url}})
        assert (directory / "ltx").is_dir()
        r = run_ltxkit("verify", url, "--format", "json")
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["replicas"][0]["path"] == str(directory)  # the directory it checked
        out = tmp_path / f"{directory.name}.db"
        assert run_ltxkit("restore", url, "-o", out, "-q").returncode == 0
        assert H.logical_dump(out) == H.logical_dump(db)
    assert not (tmp_path / "my rep").exists() and not (tmp_path / "unused").exists()
    # ltxkit replicating to such a URL writes where Litestream restores from
    H.write_rows(db, 5)
    url = f"file://{tmp_path}/by ltxkit"
    r = run_ltxkit("replicate", db, url, "--once")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "by%20ltxkit" / "ltx").is_dir() and not (tmp_path / "by ltxkit").exists()
    theirs = tmp_path / "theirs.db"
    res = subprocess.run([H.litestream_bin(), "restore", "-o", str(theirs), url], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert H.logical_dump(theirs) == H.logical_dump(db)
    # a URL that decodes to a directory it does not name says how to reach that one
    (tmp_path / "plain dir" / "ltx").mkdir(parents=True)
    r = run_ltxkit("verify", f"file://{tmp_path}/plain%20dir")
    assert r.returncode == 2
    assert r.stderr.splitlines()[-1].endswith("give that path instead of a URL)"), r.stderr
