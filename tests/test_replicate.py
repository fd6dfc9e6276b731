"""`ltxkit replicate`: real SQLite, real `kill -9`, real Litestream 0.5.17 as the independent restorer.

Every scenario ends the same way: the replica verifies clean with `ltxkit verify`, and both
`litestream restore` and `ltxkit restore` give exactly the source's rows with a clean
integrity check.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

import harness as H
from ltxkit.format.decoder import LTXReader
from ltxkit.format.schema import FLAG_NO_CHECKSUM
from ltxkit.replica.storage import open_storage
from ltxkit.replicate.engine import Options, Replicator

pytestmark = pytest.mark.litestream


def ltxkit(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ltxkit", *args], capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL
    )


def assert_replica_restores(replica: Path, source_rows: list[tuple[object, ...]], work: Path) -> None:
    """verify exits 0; both tools restore exactly `source_rows`, integrity ok, byte-identical."""
    v = ltxkit("verify", str(replica))
    assert v.returncode == 0, v.stdout + v.stderr
    ls_db, lk_db = work / f"ls-{time.monotonic_ns()}.db", work / f"lk-{time.monotonic_ns()}.db"
    res = H.restore(replica, ls_db)
    assert res.returncode == 0, res.stderr
    r = ltxkit("restore", str(replica), "-o", str(lk_db), "-q")
    assert r.returncode == 0, r.stderr
    assert H.integrity_check(ls_db) == "ok"
    assert H.logical_dump(ls_db) == source_rows
    assert ls_db.read_bytes() == lk_db.read_bytes()


def published_files(replica: Path) -> list[Path]:
    return sorted((replica / "ltx" / "0").glob("*.ltx"))


@pytest.fixture
def app(tmp_path: Path) -> tuple[Path, Path, H.Writer]:
    db = H.make_db(tmp_path / "app.db", rows=40)
    writer = H.Writer(db)
    yield db, tmp_path / "replica", writer
    writer.close()


# ---- the seed scenario: kill -9, a checkpoint while down, restart ---------------------------------


@pytest.mark.parametrize("mode", ["FULL", "RESTART", "TRUNCATE"])
def test_seed_scenario_kill9_and_checkpoint_while_down(app: tuple[Path, Path, H.Writer], mode: str) -> None:
    db, replica, writer = app
    rep = H.LtxkitReplicator(db, replica)
    with rep:
        rep.start()
        writer.run_for(0.8)
        rep.kill9()
        writer.run_for(0.3)
        writer.checkpoint(mode)
        writer.run_for(0.3)
        rep.start()
        writer.run_for(0.8)
        assert rep.stop() == 0
    assert_replica_restores(replica, H.logical_dump(db), db.parent)
    files = published_files(replica)
    assert len(files) > 5
    # TXIDs continue and are never reused: one L0 file per TXID, 1..N without a hole
    txids = [int(f.name[:16], 16) for f in files]
    assert txids == list(range(1, len(files) + 1))
    for f in files:  # every file carries the no-checksum flag Litestream needs
        with f.open("rb") as fh:
            assert LTXReader(fh).header.flags == FLAG_NO_CHECKSUM


def test_litestream_and_ltxkit_restore_every_txid_byte_identical(app: tuple[Path, Path, H.Writer]) -> None:
    db, replica, writer = app
    with H.pin_wal(db):
        assert H.run_once(db, replica).returncode == 0  # the snapshot
        for _ in range(6):
            writer.write(3)
            r = H.run_once(db, replica)
            assert r.returncode == 0, r.stderr
        H.execute(db, f"DELETE FROM {H.TABLE} WHERE id % 2 = 0")
        H.execute(db, "VACUUM")  # shrinks: the last file lowers commit
        r = H.run_once(db, replica)
        assert r.returncode == 0, r.stderr
        kinds = [line for line in r.stderr.splitlines() if "published" in line]
        assert kinds, r.stderr
    files = published_files(replica)
    assert len(files) == 8
    for txid in range(1, len(files) + 1):
        ls_db, lk_db = db.parent / f"ls{txid}.db", db.parent / f"lk{txid}.db"
        assert H.restore(replica, ls_db, txid=txid).returncode == 0
        assert ltxkit("restore", str(replica), "-o", str(lk_db), "--txid", f"{txid:016x}", "-q").returncode == 0
        assert ls_db.read_bytes() == lk_db.read_bytes(), txid
    assert H.logical_dump(db.parent / f"ls{len(files)}.db") == H.logical_dump(db)


# ---- crash points -------------------------------------------------------------------------------


@pytest.mark.parametrize("step", ["encode", "written", "published", "checkpoint", "checkpointed"])
def test_crash_at_each_step_then_restart_restores_exactly(app: tuple[Path, Path, H.Writer], step: str) -> None:
    db, replica, writer = app
    # checkpoints after 20 frames, so the checkpoint steps come up within a second of writing
    rep = H.LtxkitReplicator(db, replica, args=["--min-checkpoint-pages", "20"])
    with rep:
        count = "1" if step in ("encode", "written") else "3"
        rep.start(env={"LTXKIT_TEST_CRASH_AT": f"{step}:{count}"})
        deadline = time.monotonic() + 20
        while rep.alive and time.monotonic() < deadline:
            writer.run_for(0.1)
        assert rep.wait_dead(5) == -9, rep.log_text()[-2000:]
        writer.run_for(0.3)
        rep.start()
        writer.run_for(0.5)
        assert rep.stop() == 0
    log = rep.log_text()
    if step == "published":  # killed after publishing, before saving its state: said as such
        assert "is one file past the saved state (this replicator was stopped" in log, log[-2000:]
    assert "another replicator wrote to it" not in log, log[-2000:]
    # a file half-built when the process died is removed by the next run, never published
    assert not [p.name for p in replica.iterdir() if p.name.startswith(".ltxkit-staging-")]
    assert_replica_restores(replica, H.logical_dump(db), db.parent)


# ---- verified publishing --------------------------------------------------------------------------


@pytest.mark.parametrize("damage", ["flip", "drop"])
def test_a_damaged_build_is_never_published_and_the_next_sync_heals(
    app: tuple[Path, Path, H.Writer], damage: str
) -> None:
    db, replica, writer = app
    with H.pin_wal(db):
        assert H.run_once(db, replica).returncode == 0
        writer.write(2)
        before = {f.name: f.read_bytes() for f in published_files(replica)}
        r = H.run_once(db, replica, "--log-format", "json", env={"LTXKIT_TEST_CORRUPT": damage})
        assert r.returncode == 1, r.stderr
        assert "built file refused, not published" in r.stderr
        reason = "proof-page-missing" if damage == "drop" else ""
        assert reason in r.stderr
        after = {f.name: f.read_bytes() for f in published_files(replica)}
        assert after == before  # nothing published, nothing changed
        assert not any(p.name.startswith(".ltxkit-staging-") for p in replica.iterdir())
        r = H.run_once(db, replica, "--log-format", "json")  # a new process proves its own file
        assert r.returncode == 0, r.stderr
    assert '"event": "published"' in r.stderr
    # TXIDs are 16 hex digits on every line (`ready` and `stopped` gave integers)
    lines = [json.loads(line) for line in r.stderr.splitlines()]
    txids = [line["txid"] for line in lines if line["event"] in ("ready", "stopped")]
    assert len(txids) == 2 and all(isinstance(t, str) and len(t) == 16 and int(t, 16) > 0 for t in txids), txids
    assert_replica_restores(replica, H.logical_dump(db), db.parent)


def test_daemon_refuses_a_damaged_file_and_heals_in_the_next_sync(app: tuple[Path, Path, H.Writer]) -> None:
    db, replica, writer = app
    rep = H.LtxkitReplicator(db, replica)
    with rep:
        rep.start(env={"LTXKIT_TEST_CORRUPT": "flip"})
        writer.run_for(0.5)
        assert rep.stop() == 0
    events = rep.events()
    refused = [e for e in events if e["event"] == "error"]
    assert len(refused) == 1 and "refused" in refused[0]["message"]
    first = rep.published()[0]
    assert first["kind"] == "snapshot" and first["min_txid"] == f"{1:016x}"
    assert_replica_restores(replica, H.logical_dump(db), db.parent)


# ---- hand-over with Litestream ------------------------------------------------------------------------


def test_handover_litestream_to_ltxkit_and_back(app: tuple[Path, Path, H.Writer]) -> None:
    db, replica, writer = app
    with H.Replicator(db, replica) as ls:
        writer.run_for(0.6)
        ls.wait_until_caught_up()
    litestream_max = H.max_txid(replica)
    assert litestream_max > 1
    writer.run_for(0.2)
    rep = H.LtxkitReplicator(db, replica)
    with rep:
        rep.start()
        writer.run_for(0.6)
        assert rep.stop() == 0
    mine = rep.published()
    assert int(mine[0]["min_txid"], 16) == litestream_max + 1  # continues above Litestream's TXIDs
    assert_replica_restores(replica, H.logical_dump(db), db.parent)
    ltxkit_max = H.max_txid(replica)
    writer.run_for(0.2)
    with H.Replicator(db, replica) as ls:
        writer.run_for(0.6)
        ls.wait_until_caught_up()
    assert H.max_txid(replica) > ltxkit_max
    assert_replica_restores(replica, H.logical_dump(db), db.parent)


# ---- what else users hit --------------------------------------------------------------------------------


def test_not_wal_mode_is_one_line_exit_2(tmp_path: Path) -> None:
    db = tmp_path / "plain.db"
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE t(x)")
    conn.commit()
    conn.close()
    r = ltxkit("replicate", str(db), str(tmp_path / "rep"), "--once")
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert lines[-1].startswith("ltxkit: ") and "not WAL" in lines[-1] and "journal_mode=WAL" in lines[-1]
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize("kind", ["other file", "directory", "fifo"])
def test_a_path_that_is_no_database_is_refused_not_retried(tmp_path: Path, kind: str) -> None:
    """Without --once the replicator would wait and retry a sync forever; a path that can never be
    a database must end it at once, exit 2, one line; `checksum` and `snapshot` say the same."""
    path = tmp_path / "app.db"
    if kind == "other file":
        path.write_bytes(b"not a database at all\n" * 100)
    elif kind == "directory":
        path.mkdir()
    else:
        os.mkfifo(path)
    want = {"other file": "not a SQLite database", "directory": "is a directory", "fifo": "not a regular file"}[kind]
    for args in (
        ("replicate", str(path), str(tmp_path / "rep")),
        ("checksum", str(path)),
        ("snapshot", str(path), "-o", str(tmp_path / "s.ltx")),
    ):
        r = subprocess.run(
            [sys.executable, "-m", "ltxkit", *args],
            capture_output=True,
            text=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
        )
        last = r.stderr.strip().splitlines()[-1]
        assert r.returncode == 2, (args, r.stderr)
        assert last.startswith(f"ltxkit: {path}: {want}"), last
        assert "Traceback" not in r.stderr and "will retry" not in r.stderr
    assert not list(tmp_path.rglob("*.ltx"))  # nothing published, no snapshot written


def test_a_second_database_into_the_same_replica_refuses(app: tuple[Path, Path, H.Writer], tmp_path: Path) -> None:
    """Two databases into one replica would each continue the other's TXIDs with its own pages."""
    db, replica, _writer = app
    other = H.make_db(tmp_path / "other.db", rows=5)
    rep = H.LtxkitReplicator(db, replica)
    with rep:
        rep.start()
        r = H.run_once(other, replica)
        assert r.returncode == 2, r.stderr
        line = r.stderr.strip().splitlines()[-1]
        assert line.startswith(f"ltxkit: {replica}: already written by another ltxkit replicate"), line
        assert f"pid {rep.proc.pid}, database {db.resolve()}" in line  # type: ignore[union-attr]
        assert "published" not in r.stderr
        assert rep.stop() == 0
    # once the first has stopped, the replica is free again; it holds the first database alone
    r = H.run_once(db, replica)
    assert r.returncode == 0, r.stderr
    assert_replica_restores(replica, H.logical_dump(db), tmp_path)


def test_a_litestream_started_beside_it_stops_the_replicator(app: tuple[Path, Path, H.Writer]) -> None:
    """Litestream and ltxkit replicating one database into one replica take turns writing full
    files over each other's TXIDs (and Litestream replaces ltxkit's files): the replicator stops
    with one line, exit 1, as soon as it sees a file beyond its own."""
    db, replica, writer = app
    rep = H.LtxkitReplicator(db, replica)
    with rep:
        rep.start()
        writer.write(5)
        rep.wait_for(lambda: bool(rep.published()))
        with H.Replicator(db, replica):
            for _ in range(15):  # both replicate these; Litestream, slower, lags behind ltxkit
                writer.write(2)
                time.sleep(0.2)
            # then the database rests, Litestream catches up and replaces ltxkit's newest file
            deadline = time.monotonic() + 60
            while rep.alive and time.monotonic() < deadline:
                time.sleep(0.2)
            assert not rep.alive, "ltxkit replicate went on beside Litestream"
        assert rep.wait_dead() == 1
        last = rep.log_text().strip().splitlines()[-1]
        assert last.startswith(f"ltxkit: {replica}: another replicator "), last
        assert "One replicator per replica" in last


def test_a_litestream_running_before_it_stops_the_replicator(app: tuple[Path, Path, H.Writer]) -> None:
    """Nothing marks a running Litestream when ltxkit starts (its tables outlive it), so the start
    is not refused; the first file both write under one name stops ltxkit, exit 1, in seconds."""
    db, replica, writer = app
    with H.Replicator(db, replica):
        for _ in range(10):
            writer.write(2)
            time.sleep(0.2)
        rep = H.LtxkitReplicator(db, replica)
        with rep:
            rep.start()
            rep.commit_until_it_stops(lambda: writer.write(2), 60, 0.3)
            log = rep.log_text()[-4000:]
            assert not rep.alive, "ltxkit replicate went on beside a Litestream started before it:\n" + log
            assert rep.wait_dead() == 1
            last = rep.log_text().strip().splitlines()[-1]
            assert last.startswith(f"ltxkit: {replica}: another replicator "), last


def test_its_newest_file_replaced_by_a_shorter_one_stops_the_replicator(app: tuple[Path, Path, H.Writer]) -> None:
    """A shorter file renamed over its newest: the replicator said the replica "no longer holds"
    the file (which was there) and continued it with a full file."""
    db, replica, writer = app
    rep = H.LtxkitReplicator(db, replica)
    with rep:
        rep.start()
        rep.publish_while(lambda: writer.write(2), 3)
        time.sleep(1)  # idle: what it published last is the replica's newest file
        newest = replica / rep.published()[-1]["key"]
        other = newest.with_name(".replacement.tmp")
        other.write_bytes(newest.read_bytes()[:100])
        os.replace(other, newest)
        rep.commit_until_it_stops(lambda: writer.write(2), 20, 0.3)
        assert not rep.alive, "ltxkit replicate went on after its newest file was replaced"
        assert rep.wait_dead() == 1
    log = rep.log_text()
    assert f"another replicator replaced {rep.published()[-1]['key']}, a file this one published" in log, log[-2000:]
    assert "no longer holds" not in log


def test_a_file_replaced_behind_the_newest_stops_the_replicator(app: tuple[Path, Path, H.Writer]) -> None:
    """What a Litestream lagging behind ltxkit does to a directory replica, made certain: a file
    ltxkit published and has moved past is replaced (a new file renamed over it, as Litestream
    writes). The newest file stays as it was, so only the periodic sweep of level 0 sees it."""
    db, replica, writer = app
    rep = H.LtxkitReplicator(db, replica)
    with rep:
        rep.start()
        rep.publish_while(lambda: writer.write(2), 4)
        victim = replica / rep.published()[1]["key"]
        data = victim.read_bytes()
        other = victim.with_name(".replacement.tmp")
        other.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
        os.replace(other, victim)
        rep.commit_until_it_stops(lambda: writer.write(2), 40, 0.5)
        assert not rep.alive, "ltxkit replicate went on after a file it published was replaced"
        assert rep.wait_dead() == 1
    last = rep.log_text().strip().splitlines()[-1]
    assert f"another replicator replaced {rep.published()[1]['key']}, a file this one published" in last, last


def test_a_database_reached_through_a_symlink_is_read_with_its_wal(tmp_path: Path) -> None:
    """SQLite keeps a linked database's -wal beside the file the link names. checksum, snapshot
    and replicate used to look for `link-wal`: checksum then read the stale file alone (here,
    every row updated in the WAL only), replicate waited for a database that was there."""
    (tmp_path / "data").mkdir()
    real = tmp_path / "data" / "real.db"
    conn = sqlite3.connect(real, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
    conn.executemany("INSERT INTO t VALUES(?, ?)", [(i, "old" * 50) for i in range(500)])
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.execute("PRAGMA wal_autocheckpoint=0")
    conn.execute("UPDATE t SET v = 'new' || id")  # in the WAL only: the database file still says "old"
    link = tmp_path / "app.db"
    link.symlink_to(real)
    rows = H.logical_dump(real)
    try:
        by_real, by_link = ltxkit("checksum", str(real)), ltxkit("checksum", str(link))
        assert by_real.returncode == by_link.returncode == 0, by_link.stderr
        assert by_link.stdout == by_real.stdout
        for name, db in (("real", real), ("link", link)):
            assert ltxkit("snapshot", str(db), "-o", str(tmp_path / f"{name}.ltx")).returncode == 0
        snap_real, snap_link = (
            dict(LTXReader.from_bytes((tmp_path / f"{n}.ltx").read_bytes()).pages()) for n in ("real", "link")
        )
        assert snap_link == snap_real

        r = ltxkit("replicate", str(link), str(tmp_path / "replica"), "--once")
        assert r.returncode == 0, r.stderr
        assert "waiting" not in r.stderr
        assert_replica_restores(tmp_path / "replica", rows, tmp_path)
    finally:
        conn.close()


def test_once_refuses_a_missing_or_non_wal_database_before_making_anything(tmp_path: Path) -> None:
    rollback = tmp_path / "rollback.db"
    with sqlite3.connect(rollback) as conn:
        conn.execute("CREATE TABLE t(x)")
    cases = [
        (("replicate", str(tmp_path / "missing.db"), str(tmp_path / "r1"), "--once"), "no such database file"),
        (("replicate", str(rollback), str(tmp_path / "r2")), "its header says a rollback journal, not WAL"),
        (("replicate", str(rollback), str(tmp_path / "r3"), "--once"), "its header says a rollback journal, not WAL"),
    ]
    for args, why in cases:
        r = ltxkit(*args)
        assert r.returncode == 2, (args, r.stderr)
        assert r.stderr.strip().splitlines()[-1].startswith(f"ltxkit: {args[1]}: {why}"), r.stderr
    # no replica directory, no replicator state beside the database
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rollback.db"]


def test_second_replicator_on_the_same_database_refuses(app: tuple[Path, Path, H.Writer]) -> None:
    db, replica, _writer = app
    rep = H.LtxkitReplicator(db, replica)
    with rep:
        rep.start()
        r = H.run_once(db, replica)
        assert r.returncode == 2
        assert "already being replicated" in r.stderr and str(rep.proc.pid) in r.stderr  # type: ignore[union-attr]
        assert rep.stop() == 0


def test_a_second_replicator_refused_on_its_database_makes_no_replica(app: tuple[Path, Path, H.Writer]) -> None:
    """Refused because its database is already replicated, it must not leave an empty replica
    (a directory with an empty `ltx/`) where the user pointed it."""
    db, replica, _writer = app
    elsewhere = replica.parent / "elsewhere"
    rep = H.LtxkitReplicator(db, replica)
    with rep:
        rep.start()
        r = H.run_once(db, elsewhere)
        assert r.returncode == 2, r.stderr
        assert "already being replicated" in r.stderr
        assert not elsewhere.exists()
        assert rep.stop() == 0


def test_a_state_directory_it_cannot_make_is_one_line_and_makes_no_replica(tmp_path: Path) -> None:
    """A file where `.app.db-ltxkit/` goes (or a read-only directory): the error named only the
    directory and errno, and came after an empty replica had been made."""
    db = H.make_db(tmp_path / "app.db", rows=5)
    (tmp_path / ".app.db-ltxkit").write_text("not a directory")
    replica = tmp_path / "replica"
    r = H.run_once(db, replica)
    assert r.returncode == 2
    assert r.stderr.strip() == (
        f"ltxkit: {tmp_path / '.app.db-ltxkit'}: cannot keep the replicator's state and lock here, "
        "beside the database (File exists)"
    ), r.stderr
    assert not replica.exists()


def test_a_folder_inside_a_replica_is_refused_as_a_replica(app: tuple[Path, Path, H.Writer]) -> None:
    """`ltxkit replicate DB REPLICA/ltx` made a second replica inside the first (`ltx/ltx/0/...`),
    whose verify then warned of strays; refused, naming the replica to give instead."""
    db, replica, _writer = app
    assert H.run_once(db, replica).returncode == 0
    before = H.tree_digest(replica)
    for inner in (replica / "ltx", replica / "ltx" / "0", replica / "ledger"):
        r = H.run_once(db, inner)
        assert r.returncode == 2, r.stderr
        assert r.stderr.strip() == (
            f"ltxkit: {inner}: a folder of the replica {replica}, not a replica: give {replica} itself "
            "(or a path outside it)"
        ), r.stderr
    assert H.tree_digest(replica) == before


def _in_process(db: Path, replica: Path, events: list[tuple[str, str]]) -> Replicator:
    return Replicator(
        db,
        open_storage(str(replica), create=True),
        options=Options(interval_s=0.05),
        emit=lambda event: events.append((event.kind, event.message)),
    )


def test_a_replica_directory_made_again_under_a_replicator_is_not_shared_with_a_second_one(tmp_path: Path) -> None:
    """The writer lock is a file in the replica's directory. Deleted and made again while a
    replicator ran, the directory had a new, unheld lock: a second database's replicator took it
    and wrote its TXIDs, and the first went on with a full file over them (a history of two
    databases). Now the first stops, and the replica holds the second database alone."""
    from ltxkit.replicate.engine import FatalError

    first_db, second_db = H.make_db(tmp_path / "a.db", rows=3), H.make_db(tmp_path / "b.db", rows=7)
    replica = tmp_path / "replica"
    first_events: list[tuple[str, str]] = []
    first = _in_process(first_db, replica, first_events)
    try:
        assert first.sync() and first.published_txid == 1
        shutil.rmtree(replica)
        replica.mkdir()
        second = _in_process(second_db, replica, [])
        try:
            assert second.sync() and second.published_txid == 1
            H.write_rows(first_db, 2)
            with pytest.raises(FatalError, match=r"another ltxkit replicate \(pid \d+, database .*b\.db\) took the"):
                first.sync()
            H.write_rows(second_db, 2)
            assert second.sync() and second.published_txid == 2
        finally:
            second.close()
    finally:
        first.close()
    assert_replica_restores(replica, H.logical_dump(second_db), tmp_path)


def test_a_replica_directory_made_again_is_claimed_again_by_its_replicator(tmp_path: Path) -> None:
    """Nobody took the new directory's lock: the replicator takes it, says so, and goes on; a
    second database is then refused as before."""
    db = H.make_db(tmp_path / "a.db", rows=3)
    replica = tmp_path / "replica"
    events: list[tuple[str, str]] = []
    rep = _in_process(db, replica, events)
    try:
        assert rep.sync()
        shutil.rmtree(replica)
        replica.mkdir()
        H.write_rows(db, 2)
        assert rep.sync()
        assert any(kind == "warning" and "directory was made again" in msg for kind, msg in events), events
        r = H.run_once(H.make_db(tmp_path / "b.db", rows=7), replica)
        assert r.returncode == 2 and "already written by another ltxkit replicate" in r.stderr, r.stderr
    finally:
        rep.close()
    assert_replica_restores(replica, H.logical_dump(db), tmp_path)


def test_a_wal_checkpointed_whole_is_not_checkpointed_again_until_it_grows(tmp_path: Path) -> None:
    """After one large commit every sync found the WAL still past --min-checkpoint-pages (it
    stays that long until a writer starts it again) and checkpointed again: a dozen identical
    PASSIVE checkpoints 20 ms apart, each taking the write lock."""
    db = H.make_db(tmp_path / "app.db", rows=3)
    events: list[tuple[str, str]] = []
    rep = Replicator(
        db,
        open_storage(str(tmp_path / "replica"), create=True),
        options=Options(interval_s=0.05, min_checkpoint_pages=20),
        emit=lambda event: events.append((event.kind, event.message)),
    )

    def checkpoints() -> list[str]:
        return [message for kind, message in events if kind == "checkpoint"]

    try:
        assert rep.sync()
        H.write_rows(db, 60, per_txn=60, size=2000)  # one commit of about 60 pages
        for _ in range(5):
            assert rep.sync()
        [once] = checkpoints()
        assert once.startswith("checkpoint PASSIVE") and once.split(": ")[1].split(" of ")[0] != "0", once
        H.write_rows(db, 60, per_txn=60, size=2000)  # the WAL grows again: due again, once
        for _ in range(5):
            assert rep.sync()
        assert len(checkpoints()) == 2, checkpoints()
    finally:
        rep.close()
    assert_replica_restores(tmp_path / "replica", H.logical_dump(db), tmp_path)


def test_a_once_run_that_fails_does_not_promise_a_retry(tmp_path: Path) -> None:
    """`--once` makes one sync: its failure said "will retry" and the run then exited 1."""
    db = H.make_db(tmp_path / "app.db", rows=3)
    H.write_rows(db, 2)  # in the WAL: the first sync must take the write lock to pin it
    holder = sqlite3.connect(db, isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        r = H.run_once(db, tmp_path / "replica")
    finally:
        holder.close()
    assert r.returncode == 1, r.stderr
    failed = [line for line in r.stderr.splitlines() if "sync failed" in line]
    assert failed and all("will retry" not in line for line in failed), r.stderr
    assert "database is locked" in failed[0], failed


def test_database_that_appears_later(tmp_path: Path) -> None:
    db = tmp_path / "late.db"
    replica = tmp_path / "replica"
    rep = H.LtxkitReplicator(db, replica)
    with rep:
        rep.start()
        assert [e["event"] for e in rep.events()][-1] == "waiting"
        H.make_db(db, rows=10)
        rep.wait_for(lambda: rep.published())
        assert rep.stop() == 0
    assert_replica_restores(replica, H.logical_dump(db), tmp_path)


def test_sigterm_publishes_the_last_writes_and_exits_0(app: tuple[Path, Path, H.Writer]) -> None:
    db, replica, writer = app
    rep = H.LtxkitReplicator(db, replica, interval="1h")  # only the first sync and the last one
    with rep:
        rep.start()
        writer.write(5)
        assert rep.stop() == 0
    assert len(rep.published()) == 2
    assert_replica_restores(replica, H.logical_dump(db), db.parent)


def test_vacuum_shrink_and_a_replaced_database(app: tuple[Path, Path, H.Writer]) -> None:
    db, replica, writer = app
    rep = H.LtxkitReplicator(db, replica)
    with rep:
        rep.start()
        writer.run_for(0.4)
        writer.conn.execute(f"DELETE FROM {H.TABLE} WHERE id > 20")
        writer.conn.execute("VACUUM")
        writer.write(2)
        rep.wait_for(lambda: int(rep.published()[-1]["commit"]) < max(int(e["commit"]) for e in rep.published()))
        writer.close()
        # the database is replaced by another copy (a restore): a new file at the same path
        other = H.make_db(db.parent / "other.db", rows=25, row_bytes=900)
        os.replace(other, db)
        for suffix in ("-wal", "-shm"):
            Path(f"{db}{suffix}").unlink(missing_ok=True)
        rep.wait_for(lambda: rep.published()[-1]["kind"] in ("full", "diff"))
        assert rep.stop() == 0
    assert any(e["event"] == "warning" and "replaced" in e["message"] for e in rep.events())
    assert_replica_restores(replica, H.logical_dump(db), db.parent)
    writer.conn = sqlite3.connect(db)  # the fixture closes it


def test_replica_directory_gone_is_an_error_not_a_new_replica(app: tuple[Path, Path, H.Writer]) -> None:
    db, replica, writer = app
    rep = H.LtxkitReplicator(db, replica)
    with rep:
        rep.start()
        moved = replica.with_name("moved-away")
        replica.rename(moved)
        writer.write(2)
        rep.wait_for(lambda: any(e["event"] == "error" for e in rep.events()))
        for _ in range(3):  # three more failed syncs (one a second): the same error, logged once
            writer.write(1)
            time.sleep(1.1)
        errors = [e["message"] for e in rep.events() if e["event"] == "error"]
        assert len(errors) == len(set(errors)), rep.log_text()  # one line per different error
        events = rep.events()
        first_error = next(
            i for i, e in enumerate(events) if e["event"] == "error" and e["message"].startswith("sync failed")
        )
        # each retry reads the whole database again: said once, not at every retry
        assert [e for e in events[first_error:] if e["event"] == "resync"] == [], rep.log_text()
        assert not replica.exists()  # never created again behind the user's back
        moved.rename(replica)
        writer.write(2)
        n = len(rep.published())
        rep.wait_for(lambda: len(rep.published()) > n)
        assert rep.stop() == 0
    recovered = [e["message"] for e in rep.events() if e["event"] == "recovered"]
    assert len(recovered) == 1 and recovered[0].startswith("syncing again after "), recovered
    assert_replica_restores(replica, H.logical_dump(db), db.parent)


def test_a_stop_whose_last_sync_fails_exits_1_naming_what_is_not_in_the_replica(
    app: tuple[Path, Path, H.Writer],
) -> None:
    db, replica, writer = app
    rep = H.LtxkitReplicator(db, replica)
    with rep:
        rep.start()
        writer.write(2)
        rep.wait_for(lambda: len(rep.published()) >= 2)
        last = max(int(e["max_txid"], 16) for e in rep.published())
        replica.rename(replica.with_name("moved-away"))  # every sync from now on fails
        writer.write(2)
        rep.wait_for(lambda: any(e["event"] == "error" for e in rep.events()))
        assert rep.stop() == 1  # it was 0: a stop that published nothing of the last commits
    line = rep.log_text().strip().splitlines()[-1]
    assert line == (
        f"ltxkit: {db}: stopped, but its last sync failed; commits after TXID {last:016x} are not in the replica"
    )


def test_bad_arguments_are_one_line_exit_2(tmp_path: Path) -> None:
    db = H.make_db(tmp_path / "a.db", rows=2)
    for args, needle in [
        (["--interval", "soon"], "--interval 'soon'"),
        (["--log-format", "xml"], "--log-format 'xml'"),
    ]:
        r = ltxkit("replicate", str(db), str(tmp_path / "rep"), "--once", *args)
        assert r.returncode == 2 and needle in r.stderr, r.stderr
    r = ltxkit("replicate", str(db), str(tmp_path / "no" / "such" / "rep"), "--once")
    assert r.returncode == 2 and "parent directory does not exist" in r.stderr


# ---- the soak --------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_soak_kill9_at_random_moments_under_checkpoints_of_every_mode(tmp_path: Path) -> None:
    db = H.make_db(tmp_path / "app.db", rows=40)
    replica = tmp_path / "replica"
    rng = random.Random(752)
    writer = H.Writer(db, per_txn=1)
    rep = H.LtxkitReplicator(db, replica, args=["--min-checkpoint-pages", "50"])
    try:
        for round_no in range(4):
            for _kill in range(3):
                rep.start()
                end = time.monotonic() + rng.uniform(0.3, 1.2)
                while time.monotonic() < end:
                    writer.per_txn = rng.randint(1, 8 + round_no * 8)  # growing transactions
                    writer.run_for(0.1)
                    writer.checkpoint(rng.choice(["PASSIVE", "FULL", "RESTART", "TRUNCATE"]))
                rep.kill9()
                writer.run_for(rng.uniform(0, 0.2))
            rep.start()
            writer.run_for(0.3)
            assert rep.stop() == 0
            assert_replica_restores(replica, H.logical_dump(db), tmp_path)
    finally:
        if rep.alive:
            rep.kill9()
        writer.close()
    shutil.rmtree(replica)


def test_own_truncate_checkpoint_keeps_the_wal_bounded_and_the_replica_exact(app: tuple[Path, Path, H.Writer]) -> None:
    db, replica, writer = app
    rep = H.LtxkitReplicator(db, replica, args=["--min-checkpoint-pages", "10", "--truncate-pages", "30"])
    with rep:
        rep.start()
        writer.run_for(1.0)
        rep.wait_for(lambda: any(e.get("mode") == "TRUNCATE" for e in rep.events()))
        writer.run_for(0.5)
        assert rep.stop() == 0
    # after its own TRUNCATE nothing proves what the truncated WAL held: it reads the database once
    # and publishes the difference, never a snapshot
    kinds = {e["kind"] for e in rep.published()}
    assert "diff" in kinds and "full" not in kinds
    assert_replica_restores(replica, H.logical_dump(db), db.parent)


def test_a_page_size_change_stops_replication_with_exit_1(app: tuple[Path, Path, H.Writer]) -> None:
    db, replica, writer = app
    assert H.run_once(db, replica).returncode == 0
    writer.close()
    other = H.make_db(db.parent / "other.db", page_size=8192, rows=5)
    os.replace(other, db)
    for suffix in ("-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    before = sorted(p.name for p in published_files(replica))
    r = H.run_once(db, replica)
    assert r.returncode == 1, r.stderr
    assert "page size is 8192" in r.stderr and "4096" in r.stderr and "Traceback" not in r.stderr
    assert sorted(p.name for p in published_files(replica)) == before
    writer.conn = sqlite3.connect(db)


FAST_LIFECYCLE = [
    "--levels", "300ms,1s",
    "--snapshot-interval", "1500ms",
    "--snapshot-retention", "1s",
    "--l0-retention", "500ms",
    "--l0-retention-check-interval", "300ms",
]  # fmt: skip


def test_compaction_snapshots_and_retention_keep_the_replica_exact(app: tuple[Path, Path, H.Writer]) -> None:
    db, replica, writer = app
    rep = H.LtxkitReplicator(db, replica, args=FAST_LIFECYCLE)
    with rep:
        rep.start()
        writer.run_for(3.5)
        assert rep.stop() == 0
    kinds = [e["event"] for e in rep.events()]
    assert "compacted" in kinds and "snapshot" in kinds and "retention" in kinds
    assert "error" not in kinds
    assert H.list_ltx(replica, 1) and H.list_ltx(replica, 2) and H.list_ltx(replica, 9)
    published_l0 = len(rep.published())
    assert len(H.list_ltx(replica, 0)) < published_l0  # retention deleted covered L0 files
    assert_replica_restores(replica, H.logical_dump(db), db.parent)
    # Litestream continues a replica ltxkit compacted
    writer.run_for(0.2)
    with H.Replicator(db, replica) as ls:
        writer.run_for(0.5)
        ls.wait_until_caught_up()
    assert_replica_restores(replica, H.logical_dump(db), db.parent)


def test_compaction_never_merges_a_damaged_file(app: tuple[Path, Path, H.Writer]) -> None:
    db, replica, writer = app
    with H.pin_wal(db):
        for _ in range(4):
            writer.write(2)
            assert H.run_once(db, replica, "--levels", "none").returncode == 0
    victim = published_files(replica)[2]
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF
    victim.write_bytes(bytes(data))
    rep = H.LtxkitReplicator(db, replica, args=FAST_LIFECYCLE)
    with rep:
        rep.start()
        writer.run_for(0.8)
        assert rep.stop() == 0
    errors = [e["message"] for e in rep.events() if e["event"] == "error"]
    assert any(m.startswith("L1") for m in errors), errors
    assert not H.list_ltx(replica, 1)  # nothing built on the damaged file
    assert victim.read_bytes() == bytes(data)  # and it was not deleted either


def test_metrics_endpoint_answers_while_replicating(app: tuple[Path, Path, H.Writer]) -> None:
    import socket
    import urllib.request

    db, replica, writer = app
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    rep = H.LtxkitReplicator(db, replica, args=["--metrics-addr", f"127.0.0.1:{port}", *FAST_LIFECYCLE])
    with rep:
        rep.start()
        writer.run_for(1.0)
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
        assert rep.stop() == 0
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    label = f'db="{db}"'
    assert values[f"ltxkit_sync_count_total{{{label}}}"] > 3
    assert 1 <= values[f"ltxkit_txid{{{label}}}"] <= H.max_txid(replica)
    assert values[f'ltxkit_published_files_total{{{label},kind="increment",level="0"}}'] >= 1
    assert any(k.startswith("ltxkit_compaction_count_total") for k in values)
    for name in ("ltxkit_lag_seconds", "ltxkit_wal_size", "ltxkit_db_size", "ltxkit_last_sync_timestamp_seconds"):
        assert f"{name}{{{label}}}" in values, name

    # started again on an idle database: the replica's TXID is there before any new commit
    writer.close()
    latest = H.max_txid(replica)
    again = H.LtxkitReplicator(db, replica, args=["--metrics-addr", f"127.0.0.1:{port}"])
    with again:
        logged = len(again.events())  # the same log as the first run's: its `ready` is in it already
        again.start()
        again.wait_for(lambda: any(e["event"] == "ready" for e in again.events()[logged:]))
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
        assert again.stop() == 0
    assert f"ltxkit_txid{{{label}}} {float(latest)}" in text.splitlines(), text
    bad = subprocess.run(
        [sys.executable, "-m", "ltxkit", "replicate", str(db), str(replica), "--once", "--metrics-addr", "nonsense"],
        capture_output=True, text=True, timeout=60,
    )
    assert bad.returncode == 2 and bad.stderr.splitlines() == [
        "ltxkit: --metrics-addr nonsense: expected HOST:PORT, e.g. 127.0.0.1:9090"
    ], bad.stderr


def test_two_databases_from_one_litestream_config(tmp_path: Path) -> None:
    dbs = [H.make_db(tmp_path / f"app{i}.db", rows=20 + i) for i in range(2)]
    writers = [H.Writer(db) for db in dbs]
    cfg = tmp_path / "litestream.yml"
    cfg.write_text(
        "levels:\n  - interval: 300ms\n  - interval: 1s\n"
        "snapshot:\n  interval: 1s500ms\n  retention: 1s\n"
        "l0-retention: 500ms\nl0-retention-check-interval: 300ms\n"
        "sync-interval: 50ms\n"
        "logging:\n  level: debug\n"  # Litestream's, not ltxkit's: named in a warning
        "dbs:\n"
        + "".join(
            f"  - path: {db}\n    monitor-interval: 1s\n    replica:\n      url: file://{tmp_path / f'replica{i}'}\n"
            for i, db in enumerate(dbs)
        )
    )
    log = tmp_path / "replicate.log"
    with log.open("wb") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "ltxkit", "replicate", "--config", str(cfg), "--log-format", "json"],
            stdout=fh,
            stderr=fh,
        )
    try:
        time.sleep(1.0)
        for _ in range(15):
            for w in writers:
                w.write(2)
            time.sleep(0.1)
        proc.send_signal(2)  # Ctrl-C: one last sync each, exit 0
        assert proc.wait(60) == 0, log.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
        for w in writers:
            w.close()
    events = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    warnings = [e["message"] for e in events if e["event"] == "warning"]
    assert any("logging: not supported" in m for m in warnings), warnings
    assert any("dbs[0].monitor-interval: not supported" in m for m in warnings), warnings
    assert {e["db"] for e in events if e["event"] == "published"} == {str(db) for db in dbs}
    assert any(e["event"] == "compacted" for e in events)
    for i, db in enumerate(dbs):
        assert_replica_restores(tmp_path / f"replica{i}", H.logical_dump(db), tmp_path)


def test_config_expands_environment_variables_as_litestream_does(tmp_path: Path) -> None:
    db = H.make_db(tmp_path / "data" / "app.db", rows=12)
    cfg = tmp_path / "litestream.yml"
    cfg.write_text("dbs:\n  - path: ${APP_DIR}/app.db\n    replica:\n      url: file://$APP_REPLICA\n")
    env = {**os.environ, "APP_DIR": str(db.parent), "APP_REPLICA": str(tmp_path / "replica")}
    run = [sys.executable, "-m", "ltxkit", "replicate", "--config", str(cfg), "--once"]
    r = subprocess.run(run, capture_output=True, text=True, timeout=120, env=env, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stderr
    assert_replica_restores(tmp_path / "replica", H.logical_dump(db), tmp_path)
    # --no-expand-env (Litestream's -no-expand-env): the text as it is
    r = subprocess.run([*run, "--no-expand-env"], capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 2 and "${APP_DIR}/app.db: no such database file" in r.stderr, r.stderr


def test_expand_env_follows_gos_os_expand(monkeypatch: pytest.MonkeyPatch) -> None:
    from ltxkit.replicate.config import expand_env

    monkeypatch.setenv("A", "x")
    monkeypatch.setenv("A_1", "y")
    monkeypatch.delenv("UNSET", raising=False)
    cases = {
        "$A/${A}": "x/x",
        "$A_1.$A-1": "y.x-1",  # a name is letters, digits and _
        "${UNSET}|$UNSET|": "||",  # unset: empty, as Go's os.Getenv
        "cost: $5": "cost: ",  # $5 is a (special) name, unset
        "100$ and $ alone, and $": "100$ and $ alone, and $",  # a $ before no name stays
        "${A": "A",  # no closing brace: the "${" is dropped
        "${}": "",
        "pid $PID": f"pid {os.getpid()}",
    }
    for text, want in cases.items():
        assert expand_env(text) == want, text


def test_bad_config_is_one_line_exit_2(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.yml"
    for text, needle in [
        ("dbs: []\n", "no databases"),
        ("dbs:\n  - path: /x\n", "replica needs a `url:`"),
        ("sync-interval: soon\ndbs:\n  - path: /x\n    replica: {url: /y}\n", "is not a duration"),
        ("dbs: [unclosed\n", "not valid YAML"),
        # Litestream 0.5 refuses it too; ltxkit replicated to the first and never wrote the second
        ("dbs:\n  - path: /x\n    replicas: [{url: /y}, {url: /z}]\n", "2 replicas for one database"),
    ]:
        cfg.write_text(text)
        r = ltxkit("replicate", "--config", str(cfg), "--once")
        assert r.returncode == 2 and needle in r.stderr and "Traceback" not in r.stderr, (text, r.stderr)


def _restore_points(replica: Path) -> set[int]:
    """Every TXID a restore can stop at: Litestream's plan for it ends exactly there."""
    from ltxkit.replica.layout import PlanError, list_replica, restore_plan
    from ltxkit.replica.storage import open_storage

    files = list_replica(open_storage(str(replica))).files
    points = set()
    for txid in {f.max_txid for f in files}:
        try:
            if restore_plan(files, txid=txid)[-1].max_txid == txid:
                points.add(txid)
        except PlanError:
            pass
    return points


@pytest.mark.slow
def test_a_minute_of_lifecycle_every_restore_point_kept_restores(app: tuple[Path, Path, H.Writer]) -> None:
    db, replica, writer = app
    args = ["--levels", "2s,5s", "--snapshot-interval", "6s", "--l0-retention", "4s"]
    args += ["--l0-retention-check-interval", "1s"]
    rep = H.LtxkitReplicator(db, replica, interval="100ms", args=args)
    l0_counts = []
    with rep:
        rep.start()
        for _ in range(60):
            writer.run_for(0.9)
            l0_counts.append(len(H.list_ltx(replica, 0)))
        assert rep.stop() == 0
    assert H.list_ltx(replica, 1) and H.list_ltx(replica, 2)
    snapshots = H.list_ltx(replica, 9)
    assert len(snapshots) >= 2
    assert max(l0_counts[20:]) < 150  # bounded: retention keeps up (about 10 syncs a second)
    r = ltxkit("verify", str(replica), "--format", "json")
    assert r.returncode == 0, r.stdout
    doc = json.loads(r.stdout)["replicas"][0]
    assert doc["proven"] is True  # every file, at every level, matches its record
    assert doc["proven_restore_points"] == len(_restore_points(replica))
    assert_replica_restores(replica, H.logical_dump(db), db.parent)
    points = sorted(_restore_points(replica))
    sample = {points[0], *points[:: max(1, len(points) // 6)], *(s.max_txid for s in snapshots[-2:])}
    for txid in sorted(sample):  # restore points retention left, oldest included: both tools, same bytes
        ls_db, lk_db = db.parent / f"ls-mid-{txid}.db", db.parent / f"lk-mid-{txid}.db"
        assert H.restore(replica, ls_db, txid=txid).returncode == 0
        assert ltxkit("restore", str(replica), "-o", str(lk_db), "--txid", f"{txid:016x}", "-q").returncode == 0
        assert ls_db.read_bytes() == lk_db.read_bytes()
        assert H.integrity_check(ls_db) == "ok"


def test_a_commit_the_wal_shows_before_readers_see_it_is_published_at_the_next_look(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite writes a commit's frames, then makes them visible: a sync in between saw the WAL
    move and no new commit, and the commit waited for the next change or the idle sync (1 in 5
    commits to an idle database took 10 s). Scripted here: the WAL moves once, the first sync
    sees nothing new, the commit is visible from the second; nothing else changes."""
    import threading

    from ltxkit.replica.storage import open_storage
    from ltxkit.replicate import engine
    from ltxkit.replicate.engine import Options, Replicator

    monkeypatch.setattr(engine, "IDLE_SYNC_S", 1e9)  # only a look again can publish it
    db = H.make_db(tmp_path / "app.db", rows=3)
    rep = Replicator(db, open_storage(str(tmp_path / "replica"), create=True), options=Options(interval_s=0.05),
                     emit=lambda event: None)
    signatures = iter([(1,), (1,), (2,)])  # at the start, one unchanged look, then the WAL moves
    monkeypatch.setattr(rep, "_signature", lambda: next(signatures, (2,)))
    syncs: list[int] = []
    stop = threading.Event()

    looked_again = threading.Event()

    def sync() -> bool:
        syncs.append(rep.published_txid)
        if len(syncs) == 3 and not stop.is_set():  # a look again, before any stop
            rep.published_txid += 1  # the commit became visible after the sync the move set off
            looked_again.set()
            stop.set()
        return True

    monkeypatch.setattr(rep, "sync", sync)
    finished = threading.Thread(target=rep.run, args=(stop,), daemon=True)
    finished.start()
    looked_again.wait(10)
    stop.set()
    finished.join(5)
    assert looked_again.is_set(), syncs  # without it: published only by the stop's last sync
