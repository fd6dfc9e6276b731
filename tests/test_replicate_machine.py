"""A stateful model of `ltxkit.replicate`: hypothesis drives the engine in-process against a live
WAL-mode database and, after every successful sync, proves the replica restores to exactly what
the application has committed.

The application is one held-open connection (so the WAL is never deleted behind our back,
unless `app_reconnect` closes it while no replicator holds the database) with automatic
checkpoints off: the WAL moves only by the rules. The rules write (small and large
transactions), shrink the database (DELETE + VACUUM), checkpoint it in every mode from the
application side, sync, crash the replicator (between syncs, or in the middle of one at a named
hook step), restart it cleanly, damage the next file it builds, and commit in the middle of a sync.

What must hold:

* a sync returns True, except the one that builds a file the corrupt hook damaged: that one
  returns False and publishes nothing (the replica's file listing is unchanged);
* after every successful sync: the replica's L0 TXIDs are exactly 1..N, published files never
  change, and ltxkit restores the replica to a database whose `integrity_check` is ok and whose
  rows equal the application's (a sync publishes everything committed before it started; only
  `write_during_sync` commits during one, and then either state is right); every few syncs the
  real Litestream restores it to the same rows;
* at the end (after a last sync): all of the above, every TXID restores (point in time) to the
  rows the application had when it was built, and `ltxkit verify` exits 0.

The `test_regression_*` tests at the end pin down a bug this machine's `write_during_sync` found.
"""

from __future__ import annotations

import contextlib
import functools
import os
import random
import shutil
import sqlite3
import struct
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, precondition, rule

import harness as H
from ltxkit.replica.storage import open_storage
from ltxkit.replicate.engine import Event, Options, Replicator
from ltxkit.replicate.hooks import Hooks
from ltxkit.restore import restore_to_path
from ltxkit.wal import parse_index_header

pytestmark = pytest.mark.litestream

CI = bool(os.environ.get("CI"))
LITESTREAM_EVERY = 5  # restore with the real Litestream every this many successful syncs
CRASH_STEPS = ("encode", "written", "published", "checkpoint", "checkpointed")
Rows = list[tuple[int, bytes]]


class _Killed(BaseException):
    """Stands in for SIGKILL at a hook step: nothing in the engine catches a BaseException."""


class _CrashHooks(Hooks):
    """`Hooks(crash_at=step)` without killing the test process: raise `_Killed` instead."""

    def step(self, name: str) -> None:
        if name == self.crash_step:
            raise _Killed(name)


class _CallAt(Hooks):
    """Call `action` the first time the engine reaches `at` (the application commits mid-sync)."""

    def __init__(self, at: str, action: Callable[[], None]) -> None:
        super().__init__()
        self.at, self.action, self.fired = at, action, False

    def step(self, name: str) -> None:
        if name == self.at and not self.fired:
            self.fired = True
            self.action()


def _tracked(fn):
    """Mark the machine broken while a rule runs, so teardown skips its checks after a failed rule
    (hypothesis calls teardown either way; a second error there would only blur the report)."""

    @functools.wraps(fn)
    def wrapper(self, *args, **kwargs):
        self.in_rule = True
        result = fn(self, *args, **kwargs)
        self.in_rule = False
        return result

    return wrapper


def _rows(conn: sqlite3.Connection) -> Rows:
    return conn.execute("SELECT id, v FROM t ORDER BY id").fetchall()


def _read_restored(path: Path) -> tuple[str, Rows]:
    """(integrity_check, rows) of a restored database, which is then deleted."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        check = conn.execute("PRAGMA integrity_check").fetchone()[0]
        try:
            rows = _rows(conn)
        except sqlite3.DatabaseError as exc:
            rows = [(-1, f"unreadable: {exc}".encode())]
        return check, rows
    finally:
        conn.close()
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(f"{path}{suffix}")


def _wal_fully_checkpointed(db: Path) -> bool:
    """Does the WAL index count committed frames, all of them already copied into the database?
    A read transaction started then reads the database file alone (read mark 0), which does not
    stop the next writer from restarting the WAL over those frames."""
    try:
        shm = Path(f"{db}-shm").read_bytes()[:100]
    except FileNotFoundError:
        return False
    index = parse_index_header(shm[:96]) if len(shm) >= 100 else None
    if index is None:
        return False
    (backfilled,) = struct.unpack_from("=I", shm, 96)  # WalCkptInfo.nBackfill, native order
    return index.max_frame > 0 and backfilled >= index.max_frame


class ReplicatorMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.tmp = Path(tempfile.mkdtemp(prefix="ltxkit-machine-"))
        self.db = self.tmp / "app.db"
        self.replica_dir = self.tmp / "replica"
        self.app: sqlite3.Connection | None = None
        self.rep: Replicator | None = None
        self.events: list[Event] = []
        self.good_syncs = 0
        self.restores = 0
        self.in_rule = False
        self.next_id = 1
        self.history: dict[int, Rows] = {}  # TXID -> the application's rows it holds
        self.published: dict[str, bytes] = {}  # L0 file name -> its bytes when first seen

    # ---- setup and teardown ------------------------------------------------------------------------

    @initialize(
        page_size=st.sampled_from([512, 1024, 4096]),
        min_checkpoint_pages=st.integers(5, 50),
        truncate_pages=st.integers(20, 200),
    )
    @_tracked
    def setup(self, page_size: int, min_checkpoint_pages: int, truncate_pages: int) -> None:
        self.page_size = page_size
        self.app = self._connect_app(create=True)
        self.app.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)")
        assert self.app.execute("PRAGMA page_size").fetchone()[0] == page_size
        self.storage = open_storage(str(self.replica_dir), create=True)
        self.options = Options(
            min_checkpoint_pages=min_checkpoint_pages, checkpoint_interval_s=3600, truncate_pages=truncate_pages
        )
        self.rep = self._new_replicator()

    def _connect_app(self, *, create: bool = False) -> sqlite3.Connection:
        app = sqlite3.connect(self.db, isolation_level=None)
        if create:
            app.execute(f"PRAGMA page_size={self.page_size}")
            assert app.execute("PRAGMA journal_mode=wal").fetchone()[0] == "wal"
        app.execute("PRAGMA wal_autocheckpoint=0")
        app.execute("PRAGMA busy_timeout=50")
        return app

    def _new_replicator(self, hooks: Hooks | None = None) -> Replicator:
        return Replicator(self.db, self.storage, options=self.options, emit=self.events.append, hooks=hooks)

    def teardown(self) -> None:
        try:
            if self.rep is not None and self.app is not None and not self.in_rule:
                self.rep.hooks = Hooks()
                assert self.rep.sync(), f"last sync failed:\n{self._tail()}"
                self._check_replica(_rows(self.app), litestream=True)
                self._check_history()
                v = subprocess.run(
                    [sys.executable, "-m", "ltxkit", "verify", str(self.replica_dir)],
                    capture_output=True,
                    text=True,
                    timeout=120,
                    stdin=subprocess.DEVNULL,
                )
                assert v.returncode == 0, f"ltxkit verify exit {v.returncode}:\n{v.stdout}{v.stderr}"
        finally:
            if self.rep is not None:
                self.rep.close()
            if self.app is not None:
                self.app.close()
            shutil.rmtree(self.tmp, ignore_errors=True)

    # ---- the application -------------------------------------------------------------------------

    def _ids(self) -> list[int]:
        return [r[0] for r in self.app.execute("SELECT id FROM t ORDER BY id")]

    def _insert(self, rows: int, size: int, seed: int) -> None:
        rnd = random.Random(seed)
        self.app.execute("BEGIN IMMEDIATE")
        for _ in range(rows):
            self.app.execute("INSERT INTO t(id, v) VALUES (?, ?)", (self.next_id, rnd.randbytes(size)))
            self.next_id += 1
        self.app.execute("COMMIT")

    @rule(
        txns=st.lists(
            st.lists(
                st.tuples(st.sampled_from(["insert", "update", "delete"]), st.integers(0, 2**32), st.integers(0, 3000)),
                min_size=1,
                max_size=6,
            ),
            min_size=1,
            max_size=3,
        ),
        then_sync=st.booleans(),
    )
    @_tracked
    def write(self, txns: list[list[tuple[str, int, int]]], then_sync: bool) -> None:
        for ops in txns:
            self.app.execute("BEGIN IMMEDIATE")
            for op, seed, size in ops:
                ids = self._ids()
                data = random.Random(seed).randbytes(size)
                if op == "insert" or not ids:
                    self.app.execute("INSERT INTO t(id, v) VALUES (?, ?)", (self.next_id, data))
                    self.next_id += 1
                elif op == "update":
                    self.app.execute("UPDATE t SET v = ? WHERE id = ?", (data, ids[seed % len(ids)]))
                else:
                    self.app.execute("DELETE FROM t WHERE id = ?", (ids[seed % len(ids)],))
            self.app.execute("COMMIT")
        if then_sync:
            self._sync()

    @rule(rows=st.integers(20, 80), size=st.integers(200, 2000), seed=st.integers(0, 2**32), then_sync=st.booleans())
    @_tracked
    def big_write(self, rows: int, size: int, seed: int, then_sync: bool) -> None:
        self._insert(rows, size, seed)
        if then_sync:
            self._sync()

    @rule(keep_every=st.integers(2, 5))
    @_tracked
    def vacuum(self, keep_every: int) -> None:
        """Delete most rows, then VACUUM: the database shrinks (commit goes down)."""
        self.app.execute("DELETE FROM t WHERE id % ? != 0", (keep_every,))
        self.app.execute("VACUUM")

    @rule(mode=st.sampled_from(["PASSIVE", "FULL", "RESTART", "TRUNCATE"]))
    @_tracked
    def app_checkpoint(self, mode: str) -> None:
        # FULL/RESTART/TRUNCATE may be busy (the replicator's pin): busy_timeout=50 gives up quickly
        self.app.execute(f"PRAGMA wal_checkpoint({mode})").fetchone()

    @rule()
    @_tracked
    def app_reconnect(self) -> None:
        """The application restarts. While no replicator holds the database (after a restart,
        before its first sync) its connection is the last one: closing it checkpoints the WAL
        and deletes it."""
        self.app.close()
        self.app = self._connect_app()

    # ---- checking the replica ----------------------------------------------------------------------

    def _tail(self, n: int = 10) -> str:
        shown = [e for e in self.events if e.kind != "sync"][-n:]  # `sync` events feed metrics only
        return "\n".join(f"  {e.kind}: {e.message}" for e in shown)

    def _listing(self) -> list[str]:
        return sorted(str(p.relative_to(self.replica_dir)) for p in (self.replica_dir / "ltx").rglob("*.ltx"))

    def _l0_names(self) -> list[str]:
        names = sorted(p.name for p in (self.replica_dir / "ltx" / "0").glob("*.ltx"))
        spans = [tuple(int(x, 16) for x in name[: -len(".ltx")].split("-")) for name in names]
        assert spans == [(i, i) for i in range(1, len(spans) + 1)], f"L0 TXIDs are not 1..N: {names}"
        for name in names:  # published files never change
            data = (self.replica_dir / "ltx" / "0" / name).read_bytes()
            assert self.published.setdefault(name, data) == data, f"published file {name} changed"
        return names

    def _restore(self, txid: int | None = None) -> tuple[str, Rows]:
        self.restores += 1
        out = self.tmp / f"restored-{self.restores}.db"
        restore_to_path(self.storage, out, txid=txid)
        return _read_restored(out)

    def _check_replica(self, *allowed: Rows, litestream: bool = False) -> Rows:
        """The replica's latest state is one of `allowed` (the application's rows), restored by
        ltxkit and (with `litestream`) by the real Litestream. Returns the state it holds."""
        names = self._l0_names()
        assert names, "a successful sync left no file in the replica"
        check, rows = self._restore()
        assert check == "ok", f"ltxkit restore at TXID {len(names)}: integrity_check says {check}\n{self._tail()}"
        assert rows in allowed, (
            f"ltxkit restore at TXID {len(names)}: {len(rows)} rows, the application has "
            f"{' or '.join(str(len(a)) for a in allowed)}\n{self._tail()}"
        )
        self.history.setdefault(len(names), rows)
        if litestream:
            out = self.tmp / f"litestream-{self.restores}.db"
            res = H.restore(self.replica_dir, out)
            assert res.returncode == 0, f"litestream restore: {res.stderr}"
            ls_check, ls_rows = _read_restored(out)
            assert ls_check == "ok", f"litestream restore: integrity_check says {ls_check}"
            assert ls_rows == rows, f"litestream restore: {len(ls_rows)} rows, ltxkit restored {len(rows)}"
        return rows

    def _check_history(self) -> None:
        """Every TXID restores (point in time) to the rows the application had when it was built."""
        for txid, expected in sorted(self.history.items()):
            check, rows = self._restore(txid)
            assert check == "ok", f"ltxkit restore -txid {txid}: integrity_check says {check}"
            assert rows == expected, f"ltxkit restore -txid {txid}: {len(rows)} rows, {len(expected)} expected"

    # ---- the replicator --------------------------------------------------------------------------

    @rule()
    @_tracked
    def sync(self) -> None:
        self._sync()

    def _sync(self) -> None:
        corrupt = self.rep.hooks.corrupt
        before = self._listing()
        ok = self.rep.sync()
        if corrupt is not None and self.rep.hooks.corrupt is None:  # the damage was done
            assert not ok, f"a sync that built a damaged file ({corrupt}) succeeded:\n{self._tail()}"
            assert self._listing() == before, "a damaged file was published"
            logged = [e for e in self.events if e.kind != "sync"]  # `sync` events feed metrics only
            assert logged[-1].kind == "error" and "not published" in logged[-1].message
            return
        assert ok, f"sync failed:\n{self._tail()}"
        self.good_syncs += 1
        self._check_replica(_rows(self.app), litestream=self.good_syncs % LITESTREAM_EVERY == 0)

    def _release_as_the_os_would(self) -> None:
        """What kill -9 leaves: no close(), only the OS letting go of descriptors and locks."""
        if self.rep.source is not None:
            self.rep.source.close()
        self.rep.state.unlock()
        self.rep.storage.release_writer()
        self.rep = None

    @rule()
    @_tracked
    def crash(self) -> None:
        hooks = self.rep.hooks
        self._release_as_the_os_would()
        self.rep = self._new_replicator(hooks)  # an armed corrupt hook stays armed (it is the env's)

    @precondition(lambda self: self.rep is not None and self.rep.hooks.corrupt is None)
    @rule(step=st.sampled_from(CRASH_STEPS), first=st.integers(0, 40), seed=st.integers(0, 2**32))
    @_tracked
    def crash_during_sync(self, step: str, first: int, seed: int) -> None:
        """kill -9 at a named step of a sync (LTXKIT_TEST_CRASH_AT), then restart. `first` rows
        are committed before, so that the sync has something to build."""
        if first:
            self._insert(first, 700, seed)
        self.rep.hooks = _CrashHooks(crash_at=step)
        try:
            self._sync()  # the step was not reached (nothing to build, or no checkpoint due)
        except _Killed:
            # killed at published/checkpoint/checkpointed: the sync's file is out, unrecorded
            if self._l0_names():
                self.history.setdefault(len(self._l0_names()), _rows(self.app))
            self._release_as_the_os_would()
            self.rep = self._new_replicator()
            return
        self.rep.hooks = Hooks()

    @rule()
    @_tracked
    def clean_restart(self) -> None:
        hooks = self.rep.hooks
        self.rep.close()
        self.rep = self._new_replicator(hooks)

    @precondition(lambda self: self.rep is not None and self.rep.hooks.corrupt is None)
    @rule(how=st.sampled_from(["flip", "drop"]), restart=st.booleans())
    @_tracked
    def corrupt_next(self, how: str, restart: bool) -> None:
        """The next file built is damaged; the sync that builds it must refuse it."""
        if restart:
            self.rep.close()
            self.rep = self._new_replicator(Hooks(corrupt=how))
        else:
            self.rep.hooks = Hooks(corrupt=how)

    @precondition(lambda self: self.rep is not None and self.rep.hooks.corrupt is None)
    @rule(
        step=st.sampled_from(["encode", "written", "published"]),
        first=st.integers(0, 40),
        checkpoint=st.booleans(),
        rows=st.integers(1, 80),
        size=st.integers(100, 2000),
        seed=st.integers(0, 2**32),
    )
    @_tracked
    def write_during_sync(self, step: str, first: int, checkpoint: bool, rows: int, size: int, seed: int) -> None:
        """The application commits while a sync is under way (at a hook step). The sync still
        succeeds; the replica then holds the state before or after that commit (the sync's own
        checkpoint may publish it too), and the next sync catches up. `first` rows are committed
        before the sync, so that it has something to build, then maybe a PASSIVE checkpoint."""
        if first:
            self._insert(first, 700, seed + 1)
        if checkpoint:
            self.app.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        before = _rows(self.app)
        names_before = len(self._l0_names())

        def commit() -> None:
            # on a fully checkpointed WAL this commit restarts it over the frames being read: the
            # bug of the test_regression_* tests below
            try:
                self._insert(rows, size, seed)
            except sqlite3.OperationalError as exc:  # reached inside our own checkpoint's write lock
                assert "locked" in str(exc), exc

        self.rep.hooks = _CallAt(step, commit)
        ok = self.rep.sync()
        self.rep.hooks = Hooks()
        assert ok, f"sync with a commit at {step} failed:\n{self._tail()}"
        after = _rows(self.app)
        names = self._l0_names()
        if not names:
            return
        self.good_syncs += 1
        self._check_replica(before, after, litestream=self.good_syncs % LITESTREAM_EVERY == 0)
        for txid in range(names_before + 1, len(names) + 1):  # each new TXID is one of the two states
            check, got = self._restore(txid)
            assert check == "ok" and got in (before, after), f"TXID {txid} restores to neither state"
            self.history.setdefault(txid, got)


ReplicatorMachine.TestCase.settings = settings(
    max_examples=10 if CI else 25,
    stateful_step_count=25,
    deadline=None,
    derandomize=CI,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestReplicatorMachine = ReplicatorMachine.TestCase


# ---- a bug this machine found (fixed in 1ace5aa), pinned down ----------------------------------------
# A read transaction started on a fully checkpointed WAL reads the database file alone (read mark 0)
# and does not stop the next commit from restarting the WAL over its frames. The replicator read
# WAL frames by offset after releasing its write lock, so a commit in the middle of a sync made it
# read pages of the new WAL generation: a full read published a corrupt file that passed its proof
# (built from the same bytes), and an increment refused its own file.


def _app(tmp_path: Path) -> tuple[sqlite3.Connection, Callable[[int], None], Replicator]:
    """A WAL database with 20 rows, checkpoints only by hand, and a replicator of it (not synced)."""
    db = tmp_path / "app.db"
    app = sqlite3.connect(db, isolation_level=None)
    app.execute("PRAGMA page_size=4096")
    app.execute("PRAGMA journal_mode=wal")
    app.execute("PRAGMA wal_autocheckpoint=0")
    app.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)")
    rnd = random.Random(1)

    def insert(n: int) -> None:
        app.execute("BEGIN IMMEDIATE")
        app.executemany("INSERT INTO t(v) VALUES (?)", [(rnd.randbytes(1500),) for _ in range(n)])
        app.execute("COMMIT")

    insert(20)
    storage = open_storage(str(tmp_path / "replica"), create=True)
    return app, insert, Replicator(db, storage, options=Options(checkpoint_interval_s=3600), emit=lambda e: None)


def _restart(rep: Replicator, hooks: Hooks) -> Replicator:
    rep.close()
    return Replicator(rep.db, rep.storage, options=rep.options, emit=rep.emit, hooks=hooks)


def test_regression_full_read_races_a_wal_restart(tmp_path: Path) -> None:
    """Before 1ace5aa: sync() True, restore fails integrity_check ("Page 3 is never used" ...) with
    2 rows, neither the 20 before the mid-read commit nor the 35 after it."""
    app, insert, rep = _app(tmp_path)
    try:
        assert rep.sync()  # TXID 1, a snapshot
        rep.close()
        rep.state.path.unlink()  # the state is lost (or untrusted: killed between publish and save)
        assert app.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone() == (0, 14, 14)
        assert _wal_fully_checkpointed(rep.db)
        before = _rows(app)
        # restarted, it reads the whole database; the application commits in the middle of that read
        rep = _restart(rep, _CallAt("encode", lambda: insert(15)))
        assert rep.sync()
        after = _rows(app)
        out = tmp_path / "restored.db"
        restore_to_path(rep.storage, out)
        check, rows = _read_restored(out)
        assert check == "ok" and rows in (before, after), f"{check!r}, {len(rows)} rows"
    finally:
        rep.close()
        app.close()


def test_regression_increment_from_a_checkpointed_wal_races_a_wal_restart(tmp_path: Path) -> None:
    """Before 1ace5aa: sync() False, "built file refused, not published: proof-page-mismatch"."""
    app, insert, rep = _app(tmp_path)
    try:
        assert rep.sync()  # TXID 1, a snapshot, from frames still in the WAL
        rep.close()
        insert(10)  # while it is stopped, the application commits in the same WAL generation ...
        assert app.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone() == (0, 21, 21)  # ... and checkpoints
        assert _wal_fully_checkpointed(rep.db)
        # restarted, it trusts its state and reads the new frames; a commit restarts the WAL over them
        rep = _restart(rep, _CallAt("encode", lambda: insert(60)))
        assert rep.sync()
    finally:
        rep.close()
        app.close()


class _TaggedDirectory:
    """A directory that keeps version tags as an object store keeps ETags: each publish gets a new
    one, and `retag` changes what listings show for a file without touching its bytes (what a
    provider may do), so the replicator's sweep for another writer runs on a real replica."""

    @staticmethod
    def make(root: Path):  # type: ignore[no-untyped-def]
        import dataclasses

        from ltxkit.replica.storage import LocalStorage

        class Tagged(LocalStorage):
            def __init__(self) -> None:
                super().__init__(root)
                self.tags: dict[str, str] = {}

            def publish(self, key, source, *, created_ms):  # type: ignore[no-untyped-def]
                entry = super().publish(key, source, created_ms=created_ms)
                self.tags[key] = f"put-{len(self.tags)}"
                return dataclasses.replace(entry, tag=self.tags[key])

            def list(self, prefix, *, after=None):  # type: ignore[no-untyped-def]
                return [dataclasses.replace(e, tag=self.tags.get(e.key)) for e in super().list(prefix, after=after)]

        (root / "ltx").mkdir(parents=True)
        return Tagged()


def test_the_sweep_stops_on_replaced_bytes_not_on_a_changed_tag(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ltxkit.replicate import engine

    monkeypatch.setattr(engine, "FOREIGN_SWEEP_S", 0.0)  # every sync lists level 0
    app, insert, other = _app(tmp_path)
    other.close()  # the same database, into a replica that keeps tags
    storage = _TaggedDirectory.make(tmp_path / "tagged")
    rep = Replicator(tmp_path / "app.db", storage, options=Options(checkpoint_interval_s=3600), emit=lambda e: None)
    try:
        for _ in range(3):
            insert(3)
            assert rep.sync()
        keys = sorted(storage.tags)
        assert len(keys) == 3
        storage.tags[keys[1]] = "re-tagged by the provider"  # same bytes, another tag
        insert(3)
        assert rep.sync()  # read back: the bytes are ours, so it goes on
        path = tmp_path / "tagged" / keys[1]
        data = path.read_bytes()
        path.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))  # now the bytes differ too
        storage.tags[keys[1]] = "another writer's"
        insert(3)
        with pytest.raises(engine.FatalError, match=f"another replicator replaced {keys[1]}"):
            rep.sync()
    finally:
        rep.close()
        app.close()
