"""The replication engine: each sync turns what the database committed since the last one into one
L0 file, proves it, publishes it, and records where it stands.

Two ways to read what changed:

* **incremental** (the usual one): the WAL frames after the saved position, when the WAL provably
  continues it (same generation and the last published frame still in place, or a new generation
  started while our pin vouched that nothing came between);
* **resync**: one consistent read of the whole database (taken at an exact WAL position under a
  brief write lock, then read under the pin while writers go on). Against the page checksums of
  the published state it gives an increment of exactly the pages that differ; without a trusted
  previous state it gives a full file (a snapshot when it is the replica's first).

Either way the file is built in the storage's staging area, fsynced, decoded and proven by
`proof.prove` against what was read from the source, and only then published (create-only) and
the state saved. A file that fails its proof is never published; the next sync writes a full
file from a fresh read. Storage and database failures are logged and retried; nothing is
recorded until it is published.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ltxkit.errors import LtxkitError
from ltxkit.format.checksum import fold_page_checksums, page_checksum
from ltxkit.format.decoder import parse_header
from ltxkit.format.encoder import LTXWriter
from ltxkit.format.errors import Code, LTXError
from ltxkit.format.schema import HEADER_SIZE, PAGE_HEADER_SIZE, lock_pgno, pages_are_lz4_frames
from ltxkit.replica import ledger
from ltxkit.replica.keys import SNAPSHOT_LEVEL, quarantine_entry, quarantine_key, quarantine_stamp
from ltxkit.replica.layout import list_replica
from ltxkit.replica.storage import Storage, WriterTaken
from ltxkit.replicate import lifecycle, wal_position
from ltxkit.replicate.hooks import Hooks
from ltxkit.replicate.lifecycle import Policy
from ltxkit.replicate.pagemap import PageMap
from ltxkit.replicate.proof import Intent, ProofError, prove
from ltxkit.replicate.publish import TakenByAnother, build_and_publish, file_checksum_at
from ltxkit.replicate.source import NotWalMode, Source, WalReader
from ltxkit.replicate.state import LocalState, Position, Saved
from ltxkit.replicate.wal_position import LostTrack
from ltxkit.sqlite import DatabaseError, NotADatabase, wal_and_shm
from ltxkit.wal import WAL_HEADER_SIZE, frame_trailer_checksum, scan

WAKE_S = 0.02  # how often an idle replicator looks for a commit (two stat calls)
IDLE_SYNC_S = 10.0  # an unchanged database is still synced this often
RECHECK_SYNCS = 10  # a WAL that moved with no new commit in sight is synced again, WAKE_S apart, this often
REPEAT_ERROR_S = 60.0  # the same sync error is logged again at most this often
FOREIGN_SWEEP_S = 10.0  # how often level 0 is listed for files another replicator replaced
RECENT_PUBLISHED = 64  # how many of this process's newest files that listing checks


@dataclass(frozen=True, slots=True)
class Options:
    interval_s: float = 1.0
    min_checkpoint_pages: int = 1000  # PASSIVE checkpoint once the WAL holds this many frames
    checkpoint_interval_s: float = 60.0  # ... or this long after the last one, if it holds any
    truncate_pages: int = 121_359  # TRUNCATE checkpoint once the WAL file is this many frames long
    busy_timeout_s: float = 5.0


@dataclass(frozen=True, slots=True)
class Event:
    """One line of the replicator's log."""

    kind: str  # started, waiting, published, resync, ready, checkpoint, compacted, snapshot, retention,
    # warning, error, stopped; and `sync` after each sync (for metrics: QUIET, never logged)
    message: str
    fields: dict[str, Any] = field(default_factory=dict)


Emit = Callable[[Event], None]


class FatalError(LtxkitError):
    """Replicating cannot go on without a person deciding (a page size change, a foreign replica)."""


def _shape(error: str) -> str:
    """An error with its numbers blanked: a store that refuses every connection says "gave up
    after 0.6 s" one time and "0.7 s" the next, and that is the same error, not a new one to log."""
    return re.sub(r"\d+(?:\.\d+)?", "#", error)


@dataclass(slots=True)
class _Outage:
    """Syncs failing in a row: the last error, since when, when it was last logged, how many."""

    error: str
    since: float
    logged: float
    failed: int = 1


class Replicator:
    def __init__(
        self,
        db: Path,
        storage: Storage,
        *,
        options: Options | None = None,
        emit: Emit,
        hooks: Hooks | None = None,
        policy: Policy | None = None,
    ) -> None:
        self.db = Path(db)
        self.storage = storage
        self.options = options or Options()
        self.emit = emit
        self.hooks = hooks or Hooks()
        self.state = LocalState(self.db)
        self.state.lock()
        try:
            self.storage.claim_writer(f"pid {os.getpid()}, database {self.db.resolve()}")
        except BaseException:
            self.state.unlock()
            raise
        self.source: Source | None = None
        self.saved: Saved | None = None  # the published state, when proven to be the replica's latest
        self.position: Position | None = None  # where `saved` stands in the WAL (None: unknown)
        self.next_txid = 0
        self.replica_page_size = 0  # of the replica's files, once it has any
        self.lz4_frames = False  # the replica's pages are LZ4 frames: ours too (`ltxkit.replica.page_form`)
        self._full_next = False  # the last built file failed its proof: next time, a full file
        # the highest TXID this process published or tried to (a failed publish may still have
        # landed): a newer file in the replica is another replicator's (see `_open`)
        self._own_txid = 0
        # the newest TXID known to be in the replica: published by this process, or the trusted
        # saved state's (what a stop whose last sync failed names as the last one replicated)
        self.published_txid = 0
        self._outage: _Outage | None = None  # syncs failing in a row (None: the last one succeeded)
        self._last_resync = ""  # the resync reason last logged (during an outage: not logged again)
        # key -> (version tag, size, file checksum) of this process's newest published files, oldest
        # first; the tag is an S3 ETag or a file's device and inode (`Entry.tag`)
        self._published: dict[str, tuple[str, int, int]] = {}
        self._last_sweep = time.monotonic()
        self._waiting = False
        self._retries = True  # a failed sync is tried again (not in a `--once` run: said so when it fails)
        self._last_checkpoint = time.monotonic()
        self._checkpointed: tuple[tuple[int, int] | None, int] | None = None  # WAL (salts, end) checkpointed whole
        self.policy = policy  # compaction, snapshots, retention (None: L0 files only)
        self._ran: dict[str, float] = {}  # maintenance task -> when it last ran (monotonic)

    # ---- the loop ---------------------------------------------------------------------------------

    def run(self, stop: threading.Event, *, once: bool = False) -> bool:
        """Sync until `stop` is set, then once more. Returns whether the last sync succeeded. A
        `FatalError` ends the loop (raised).

        Syncs are at least `interval_s` apart, and happen when the database changed: its WAL and
        file are looked at every `WAKE_S` (two `stat` calls), so a commit to a database that was
        idle for an interval is published within about `WAKE_S`, while a busy one gets one file
        per interval. An unchanged database is still synced every `IDLE_SYNC_S` (pin refresh,
        checkpoint interval) and a failed sync is retried every interval.
        """
        self.emit(Event("started", f"replicating {self.db} to {self.storage.label}", {"db": str(self.db)}))
        self._retries = not once
        try:
            ok = self.sync()
            if ok and self.source is not None:
                txid = self.saved.txid if self.saved else 0
                self.emit(
                    Event("ready", f"replica at TXID {txid:016x}; following the database", {"txid": f"{txid:016x}"})
                )
            if not once:
                interval = self.options.interval_s
                last, seen = time.monotonic(), self._signature()
                rechecks = 0  # quick syncs still due: the WAL moved, and no new commit was seen yet
                while not stop.wait(min(WAKE_S, interval)):
                    elapsed = time.monotonic() - last
                    now_seen = self._signature()
                    if not rechecks and (
                        elapsed < interval or (ok and now_seen == seen and elapsed < max(interval, IDLE_SYNC_S))
                    ):
                        continue
                    moved, quick = now_seen != seen, rechecks > 0
                    last, seen = time.monotonic(), now_seen
                    before = self.published_txid
                    ok = self.sync()
                    if not ok or self.published_txid != before:
                        rechecks = 0
                    elif quick:
                        rechecks -= 1
                    elif moved:
                        # SQLite writes a commit's frames to the WAL, and only then (after their
                        # fsync) makes them visible to readers: a sync in between sees the WAL
                        # moved and no new commit. Looked at again WAKE_S apart, the commit is
                        # published at once, not at the next change or the idle sync 10 s later.
                        rechecks = RECHECK_SYNCS
                ok = self.sync()  # the last one, after the stop: what was committed before it is published
        finally:
            self.close()
        txid = self.saved.txid if self.saved else 0
        said = f"the replica is at TXID {txid:016x}" if txid else "nothing published"
        self.emit(Event("stopped", said, {"txid": f"{txid:016x}"}))
        return ok

    def _signature(self) -> tuple[int, ...]:
        """What changes when the database commits: the WAL's size and time, the file's identity."""
        out: list[int] = []
        for path in (self.db, wal_and_shm(self.db)[0]):
            try:
                st = os.stat(path)
            except OSError:
                out += [-1, -1, -1]
                continue
            out += [st.st_ino, st.st_size, st.st_mtime_ns]
        return tuple(out)

    def sync(self) -> bool:
        """One sync: publish what the database committed since the last one. False on a logged error."""
        try:
            self._sync()
            if self._outage is not None:
                outage, self._outage, self._last_resync = self._outage, None, ""
                took = time.monotonic() - outage.since
                self.emit(Event("recovered", f"syncing again after {outage.failed} failed syncs over {took:.0f} s", {}))
            self.emit(Event("sync", "", {"ok": True}))
            return True
        except (FatalError, NotWalMode, NotADatabase):  # no retry can mend these: a person must act
            raise
        except ProofError as exc:
            self._full_next = True
            self.emit(
                Event(
                    "error",
                    f"built file refused, not published: {exc}; next sync writes a full file",
                    {"reason": exc.reason},
                )
            )
        except (LtxkitError, LTXError, OSError) as exc:
            # start the next sync from what the replica and the saved state say, not from memory
            self._drop_source()
            message = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            where = f"{exc.filename}: " if isinstance(exc, OSError) and exc.filename else ""
            self._failed(f"{where}{message}")
        self.emit(Event("sync", "", {"ok": False}))
        return False

    def _failed(self, why: str) -> None:
        """Log a failed sync. An outage fails every sync the same way, once per interval: the same
        error is logged again only every `REPEAT_ERROR_S`, with how many times it happened since."""
        now = time.monotonic()
        outage = self._outage
        if outage is None:
            self._outage = _Outage(why, now, now)
            self.emit(Event("error", f"sync failed{', will retry' if self._retries else ''}: {why}", {}))
            return
        outage.failed += 1
        if _shape(outage.error) != _shape(why):  # another error: said at once
            outage.error, outage.logged = why, now
            self.emit(Event("error", f"sync failed, will retry: {why}", {}))
        elif now - outage.logged >= REPEAT_ERROR_S:
            outage.logged = now
            took = now - outage.since
            message = f"sync failed, will retry: {why} (still failing: {outage.failed} syncs over {took:.0f} s)"
            self.emit(Event("error", message, {"failed_syncs": outage.failed}))

    def close(self) -> None:
        self._drop_source()
        self.storage.release_writer()
        self.state.unlock()

    def _drop_source(self) -> None:
        if self.source is not None:
            self.source.close()
            self.source = None
        self.position = None

    # ---- one sync -------------------------------------------------------------------------------

    def _sync(self) -> None:
        self._keep_writer()
        if self.source is None and not self._open():
            return
        source = self.source
        assert source is not None
        if source.replaced():
            self.emit(Event("warning", f"{self.db}: the database file was replaced; reading it again", {}))
            self._drop_source()
            if not self._open():
                return
        self._check_replica()
        if self.saved is None or self.position is None or self._full_next:
            self._resync(self._why_resync())
        else:
            try:
                self._incremental()
            except LostTrack as why:
                self._resync(why.reason)
        self._maybe_checkpoint()
        self._refresh_pin()
        self._maintain()

    def _keep_writer(self) -> None:
        """Still the replica's one writer? Its directory deleted and made again while we ran took
        our lock with it: take the new one, or stop if another replicator took it first (its
        database's TXIDs and ours would take turns in one replica)."""
        try:
            if self.storage.keep_writer():
                message = f"{self.storage.label}: the replica's directory was made again while this replicator ran"
                self.emit(Event("warning", message + "; holding its new lock", {}))
        except WriterTaken as exc:  # (a directory still gone is a failed sync: retried, logged as an outage)
            raise FatalError(
                f"{self.storage.label}: another ltxkit replicate ({exc.holder}) took the replica after its directory "
                "was deleted and made again while this one ran; stopping (one database per replica)"
            ) from exc

    def _maintain(self) -> None:
        """Compaction, snapshots and retention when due (`lifecycle`); a failure is logged and
        retried at the next interval, and never touches what was published."""
        policy, saved = self.policy, self.saved
        if policy is None or saved is None:
            return
        now = time.monotonic()
        if not self._ran:  # first pass: a snapshot only if the newest is older than the interval
            snaps = list_replica(self.storage).level(SNAPSHOT_LEVEL)
            age_s = time.time() - snaps[-1].created_ms / 1000 if snaps else float("inf")
            self._ran["snapshot"] = now - min(age_s, policy.snapshot_interval_s)
            for level, _interval in policy.levels:
                self._ran[f"L{level}"] = now
            self._ran["retention"] = now
        for level, interval in policy.levels:
            if now - self._ran[f"L{level}"] >= interval:
                self._ran[f"L{level}"] = now
                self._task("compacted", f"L{level}", functools.partial(lifecycle.compact, self.storage, level))
        if now - self._ran["snapshot"] >= policy.snapshot_interval_s:
            self._ran["snapshot"] = now
            self._task("snapshot", "L9", lambda: lifecycle.snapshot(self.storage, saved.pages, saved.txid))
        if now - self._ran["retention"] >= policy.l0_retention_check_s:
            self._ran["retention"] = now
            try:
                gone = lifecycle.retention(self.storage, policy)
            except (LtxkitError, LTXError, OSError) as exc:
                self.emit(Event("error", f"retention failed, will retry: {exc}", {}))
                return
            if gone:
                self.emit(Event("retention", f"deleted {len(gone)} file(s) no restore needs", {"keys": gone}))

    def _task(self, kind: str, what: str, run: Callable[[], tuple[str, int] | None]) -> None:
        try:
            done = run()
        except ProofError as exc:
            self.emit(Event("error", f"{what}: built file refused, not published: {exc}", {"reason": exc.reason}))
            return
        except (LtxkitError, LTXError, OSError) as exc:
            self.emit(Event("error", f"{what} failed, will retry: {exc}", {}))
            return
        if done is not None:
            key, size = done
            self.emit(Event(kind, f"{what}: {key}, {size} bytes", {"key": key, "bytes": size}))

    def _refresh_pin(self) -> None:
        """Move the pin up to the newest snapshot after each sync.

        A FULL, RESTART or TRUNCATE checkpoint the application runs waits for every reader to
        reach the newest snapshot (and blocks its writers meanwhile), so a pin left behind would
        stall the application for its whole busy timeout. Re-pinned under the write lock nothing
        can slip between the old pin and the new one; when the lock is busy (such a checkpoint
        holds it while it waits for us) the pin moves without it, and `any_generation` is given
        up: a WAL restart in that instant is then caught by its salts and costs a full read.
        """
        source = self.source
        if source is None:
            return
        try:
            with source.write_lock(timeout_s=0.02):
                source.pin()
            return
        except DatabaseError:
            pass
        source.pin()
        if self.position is not None:
            self.position.any_generation = False

    def _why_resync(self) -> str:
        if self._full_next:
            return "the last built file was refused"
        if self.saved is None:
            return "first sync" if self.next_txid == 1 else "no trusted local state"
        return "no trusted WAL position"

    def _open(self) -> bool:
        """Open the database and decide where the replica stands. False: the database is not there."""
        try:
            self.source = Source(self.db, busy_timeout_s=self.options.busy_timeout_s)
        except FileNotFoundError:
            if not self._waiting:
                self.emit(Event("waiting", f"{self.db}: no such database yet; waiting for it to appear", {}))
                self._waiting = True
            return False
        self._waiting = False
        if self.storage.remove_stale_staging():
            self.emit(Event("warning", "removed files a killed ltxkit process left unpublished in the replica", {}))
        listing = list_replica(self.storage)
        latest = max(listing.files, key=lambda f: (f.max_txid, -f.level), default=None)
        self.next_txid = (latest.max_txid if latest else 0) + 1
        self.replica_page_size = 0
        lz4_frames = False
        if latest is not None:
            head = self.storage.read_range(latest.key, 0, HEADER_SIZE + PAGE_HEADER_SIZE)
            try:
                self.replica_page_size = parse_header(head[:HEADER_SIZE]).page_size
            except LTXError:
                self.replica_page_size = 0  # verify's business; a proof never leans on it
            lz4_frames = pages_are_lz4_frames(head)
        if lz4_frames and not self.lz4_frames:
            self.emit(
                Event(
                    "warning",
                    f"{latest.key if latest else ''} stores its pages as LZ4 frames (Litestream 0.5.15 or older "
                    "wrote it): the files published here take that form too, so that Litestream can still restore "
                    "and continue the replica",
                    {},
                )
            )
        self.lz4_frames = lz4_frames
        saved, why = self.state.load()
        if latest is not None:
            self._refuse_past_own(latest.key, latest.max_txid)
        if saved is not None:
            why = self._distrust(saved, latest.key if latest else None, latest.size if latest else 0)
        if saved is not None and not why:
            self.saved = saved
            self.published_txid = max(self.published_txid, saved.txid)
            self.position = saved.position if saved.database == self.source.identity else None
        else:
            self.saved = None
            self.position = None
            if latest is not None:
                self.emit(
                    Event(
                        "warning",
                        f"continuing the replica above TXID {latest.max_txid:016x} with a full file ({why})",
                        {"txid": f"{latest.max_txid:016x}"},
                    )
                )
        return True

    def _distrust(self, saved: Saved, latest_key: str | None, latest_size: int) -> str:
        """Why `saved` cannot be the replica's latest state ("" when it is)."""
        if saved.replica != self.storage.url:
            return "saved state belongs to another replica"
        latest_txid = self.next_txid - 1
        if latest_txid == saved.txid + 1:
            # a kill between a publish and the state's save leaves this too: it cannot be told apart
            return (
                f"{latest_key} is one file past the saved state (this replicator was stopped before "
                "it recorded it, or another replicator wrote it)"
            )
        if latest_txid > saved.txid:
            moved = latest_txid - saved.txid
            return f"the replica moved on {moved} TXIDs past the saved state (another replicator wrote to it)"
        if latest_key != saved.key or latest_txid != saved.txid:
            return f"the replica no longer ends with {saved.key}, the file the state was saved for"
        if latest_size != saved.size or file_checksum_at(self.storage, saved.key, saved.size) != saved.file_checksum:
            return f"{saved.key} is not the file the state was saved for"
        return ""

    def _another_replicator(self, what: str) -> FatalError:
        """Another replicator writes this replica while this one runs: going on would take turns
        with it, each writing full files over the other's TXIDs. A person must stop one."""
        return FatalError(
            f"{self.storage.label}: another replicator {what}, while this one ran (a Litestream, or an "
            "ltxkit on another machine). One replicator per replica: stop the other, then start this one again"
        )

    def _check_replica(self) -> None:
        """Before publishing on top of it: does the replica still end with our last file?"""
        saved = self.saved
        if saved is None:
            return
        found = file_checksum_at(self.storage, saved.key, saved.size)
        if found == saved.file_checksum:
            self._sweep_for_another()
            return
        if found is not None and self._own_txid >= saved.txid:
            # replaced, not removed (a repair only ever moves files away): Litestream writes the
            # same TXIDs from the same WAL and replaces files of the same name
            raise self._another_replicator(f"replaced {saved.key}, a file this one published")
        self.emit(Event("warning", f"the replica no longer holds {saved.key}; continuing it with a full file", {}))
        self._drop_source()
        self.saved = None
        if not self._open():
            return

    def _sweep_for_another(self) -> None:
        """Catch a replicator that lags behind this one: a Litestream uploading the same TXIDs a
        little later replaces files this one has already moved past, where the check of the newest
        file never looks. Every `FOREIGN_SWEEP_S`, one listing of level 0 from the oldest of this
        process's recent files on: a tag that is not the one our PUT got back is another's file
        once its bytes say so too (a provider may change a tag, not the bytes), and so is any file
        past our last TXID."""
        if not self._published or time.monotonic() - self._last_sweep < FOREIGN_SWEEP_S:
            return
        self._last_sweep = time.monotonic()
        layout = self.storage.layout
        oldest = next(iter(self._published))
        for entry in self.storage.list(layout.level_dir(0), after=oldest[:-1]):  # keys from `oldest` on
            ours = self._published.get(entry.key)
            if ours is not None and entry.tag is not None and entry.tag != ours[0]:
                _, size, checksum = ours
                if entry.size != size or file_checksum_at(self.storage, entry.key, size) != checksum:
                    raise self._another_replicator(f"replaced {entry.key}, a file this one published")
                self._published[entry.key] = (entry.tag, size, checksum)
            parsed = layout.parse(entry.key)
            if parsed is not None:
                self._refuse_past_own(entry.key, parsed[2])

    def _refuse_past_own(self, key: str, max_txid: int) -> None:
        """A file past the last TXID this process published (or tried to) is another replicator's."""
        if self._own_txid and max_txid > self._own_txid:
            raise self._another_replicator(f"published {key}, past this one's last TXID")

    def _remember(self, key: str, tag: str | None, size: int, file_checksum: int) -> None:
        if tag is None:
            return
        self._published[key] = (tag, size, file_checksum)
        if len(self._published) > RECENT_PUBLISHED:
            del self._published[next(iter(self._published))]

    # ---- reading the WAL ----------------------------------------------------------------------------

    def _incremental(self) -> None:
        source, saved, pos = self.source, self.saved, self.position
        assert source is not None and saved is not None and pos is not None
        with source.wal() as w:
            if w is None:
                if pos.salts is None:
                    return
                raise LostTrack("the WAL was emptied or removed (a TRUNCATE checkpoint, or its last connection closed)")
            index = source.index()
            start, checksum, limit = wal_position.follow(index, w, pos, saved.pages.page_size)
            if limit <= start:
                return
            seg = scan(w.read_at, w.header, start, checksum, limit=limit)
            if seg.end != limit:
                raise LostTrack(f"the WAL does not verify up to the frames SQLite counts ({seg.stopped})")
            if seg.frames == 0:
                return
            prev = saved.pages
            commit = seg.commit
            lock = lock_pgno(prev.page_size)
            grown = [p for p in range(prev.commit + 1, commit + 1) if p != lock and p not in seg.pages]
            if grown:
                raise LostTrack(f"the database grew by pages the WAL does not hold (first {grown[0]})")
            pgnos = sorted(p for p in seg.pages if p <= commit)
            sums = {p: seg.pages[p][1] for p in pgnos}
            intent = Intent(
                txid=self.next_txid,
                page_size=prev.page_size,
                commit=commit,
                full=False,
                page_sums=sums,
                source_checksum=prev.after(commit, sums.items()).checksum(),
            )
            ps = prev.page_size
            if index is not None and index.fully_backfilled:
                # a pin taken on a fully checkpointed WAL does not hold it: a commit may restart it
                # over these frames at any moment, but the database file, which our pin keeps from
                # being checkpointed into, holds exactly their pages
                pages = ((p, source.read_pages(p, 1, ps)) for p in pgnos)
            else:
                pages = ((p, w.page(seg.pages[p][0], ps)) for p in pgnos)
            after = Position(w.header.salts, seg.end, seg.checksum)
            wal_range = (start, seg.end - start, *w.header.salts)
            self._publish(intent, pages, prev, after, wal_range, "increment", w.mtime_ns, frames=seg.frames)

    # ---- reading the whole database -----------------------------------------------------------------

    def _resync(self, reason: str) -> None:
        source = self.source
        assert source is not None
        source.unpin()  # a checkpoint the application started may be waiting for it: let it finish first
        with contextlib.ExitStack() as stack:
            with source.write_lock():  # an exact WAL position, and a pin taken exactly there
                w = stack.enter_context(source.wal())  # the WAL header too: read while nothing moves
                index = source.index()
                source.pin()
                page_size, commit = source.size()
                counted = wal_position.counted_frames(index, w)
                end_checksum = None
                if w is not None and counted and index is not None and index.fully_backfilled:
                    # the pin does not hold a fully checkpointed WAL (see `_incremental`): take what
                    # the position needs from it now, while the write lock keeps it in place
                    end = WAL_HEADER_SIZE + counted * w.header.frame_size
                    end_checksum = frame_trailer_checksum(w.read_at, w.header, end)
            if commit == 0:
                return
            if self.replica_page_size and page_size != self.replica_page_size:
                raise FatalError(
                    f"{self.db}: page size is {page_size}, the replica's files have {self.replica_page_size}; "
                    "a replica cannot change page size: replicate to a new location"
                )
            wal_pages: dict[int, int] = {}
            if w is not None and end_checksum is not None:
                # every counted frame is in the database file: read it alone; and since the pin was
                # taken on a fully checkpointed WAL, whatever generation comes next starts from here
                after = Position(w.header.salts, end, end_checksum, any_generation=True)
                wal_range = (WAL_HEADER_SIZE, end - WAL_HEADER_SIZE, *w.header.salts)
            elif w is not None and counted:
                limit = WAL_HEADER_SIZE + counted * w.header.frame_size
                seg = scan(w.read_at, w.header, WAL_HEADER_SIZE, w.header.checksum, limit=limit)
                if seg.end != limit:
                    raise DatabaseError(
                        f"{source.wal_path}: the WAL does not verify up to the frames SQLite counts ({seg.stopped})"
                    )
                wal_pages = {p: off for p, (off, _sum) in seg.pages.items() if p <= commit}
                after = Position(w.header.salts, seg.end, seg.checksum)
                wal_range = (WAL_HEADER_SIZE, seg.end - WAL_HEADER_SIZE, *w.header.salts)
            else:
                # no committed frame: the database file is the whole state, and under the pin the
                # first WAL generation to appear holds only what comes after it
                after = Position(None, WAL_HEADER_SIZE, (0, 0), any_generation=True)
                wal_range = (WAL_HEADER_SIZE, 0, 0, 0)
            stamp = w.mtime_ns if w is not None else os.stat(self.db).st_mtime_ns
            prev = self.saved.pages if self.saved is not None and not self._full_next else None
            if prev is not None and prev.page_size != page_size:
                prev = None
            if self._outage is None or self._last_resync != reason:  # not once per retry of an outage
                self.emit(Event("resync", f"reading the whole database: {reason}", {"reason": reason}))
                self._last_resync = reason
            read = _SourceReader(source, w, page_size, commit, wal_pages)
            if prev is None:
                sums: dict[int, int] = {}
                intent = Intent(self.next_txid, page_size, commit, True, sums, 0)
                pages = read.pages(sums)
                kind = "snapshot" if self.next_txid == 1 else "full"
                # the intent's sums and source checksum fill in as the pages are read, before the proof
                self._publish(intent, pages, None, after, wal_range, kind, stamp, complete=read.finish)
                return
            sums = read.checksums()
            changed = {p: v for p, v in sums.items() if p > prev.commit or prev.sums[p] != v}
            if not changed and commit == prev.commit:
                self.position = after
                self._save(self.saved)
                self.emit(Event("resync", "the replica already holds this state; nothing to publish", {}))
                return
            intent = Intent(self.next_txid, page_size, commit, False, changed, fold_page_checksums(sums.values()))
            self._publish(intent, read.selected(sorted(changed)), prev, after, wal_range, "diff", stamp)

    # ---- building, proving, publishing ----------------------------------------------------------------

    def _publish(
        self,
        intent: Intent,
        pages: Iterator[tuple[int, bytes]],
        previous: PageMap | None,
        after: Position,
        wal_range: tuple[int, int, int, int],
        kind: str,
        stamp_ns: int,
        *,
        frames: int = 0,
        complete: Callable[[Intent], Intent] | None = None,
    ) -> None:
        storage = self.storage
        key = storage.layout.key(0, intent.txid, intent.txid)
        now_ms = int(time.time() * 1000)
        proven: list[tuple[Intent, PageMap]] = []  # what `check` proved: the intent, the state reached

        def write(writer: LTXWriter) -> None:
            for n, (pgno, data) in enumerate(pages):
                writer.write_page(pgno, data)
                if n == 0:
                    self.hooks.step("encode")

        def check(path: Path) -> None:
            done = complete(intent) if complete is not None else intent
            self.hooks.damage(path)
            self.hooks.step("written")
            with open(path, "rb") as fh:
                proven.append((done, prove(fh, done, previous)))

        header = intent.header(timestamp=now_ms, wal=wal_range)
        self._own_txid = max(self._own_txid, intent.txid)
        try:
            size, file_checksum, tag = build_and_publish(
                storage, key, header, write, check, created_ms=now_ms, lz4_frames=self.lz4_frames
            )
        except TakenByAnother:
            raise self._another_replicator(f"published {key} first, the file this one was publishing") from None
        self._remember(key, tag, size, file_checksum)
        self.hooks.step("published")
        intent, state = proven[0]
        assert self.source is not None
        saved = Saved(storage.url, intent.txid, key, size, file_checksum, self.source.identity, after, state)
        self.saved = saved
        self.published_txid = intent.txid
        self.position = after
        self.next_txid = intent.txid + 1
        self.replica_page_size = intent.page_size
        self._full_next = False
        self._save(saved)
        self._record(
            ledger.Record(
                0,
                intent.min_txid,
                intent.txid,
                intent.page_size,
                intent.commit,
                len(intent.page_sums),
                file_checksum,
                previous.checksum() if previous is not None else None,
                state.checksum(),
            )
        )
        lag_ms = max(0, (time.time_ns() - stamp_ns) // 1_000_000)
        self.emit(
            Event(
                "published",
                f"L0 {intent.txid:016x} {kind}: {len(intent.page_sums)} pages, {size} bytes, lag {lag_ms} ms",
                {
                    "level": 0,
                    "min_txid": f"{intent.txid:016x}",
                    "max_txid": f"{intent.txid:016x}",
                    "kind": kind,
                    "pages": len(intent.page_sums),
                    "commit": intent.commit,
                    "bytes": size,
                    "frames": frames,
                    "lag_ms": lag_ms,
                    "key": key,
                },
            )
        )

    def _record(self, record: ledger.Record) -> None:
        """The ledger record of a published file; failing to write it costs the proof, not data."""
        try:
            try:
                ledger.put(self.storage, record)
            except FileExistsError:
                # the file was just published create-only, so the record there is of a file by
                # that name the replica lost (`ledger-ahead`): set aside, never deleted
                self._set_aside_record(ledger.key(record.level, record.min_txid, record.max_txid))
                ledger.put(self.storage, record)
        except (LtxkitError, OSError) as exc:
            self.emit(Event("warning", f"ledger record not written: {exc}", {}))

    def _set_aside_record(self, rkey: str) -> None:
        stamp = quarantine_stamp()
        dest = quarantine_key(stamp, rkey)
        self.storage.quarantine(rkey, dest)
        why = "a record of an earlier file by this name, which the replica no longer held when this one was published"
        doc = {"tool": "ltxkit replicate", "files": [quarantine_entry(rkey, dest, [str(Code.LEDGER_AHEAD)], [why])]}
        self.storage.put_bytes(quarantine_key(stamp, "manifest.json"), json.dumps(doc, indent=2).encode())
        self.emit(Event("warning", f"{rkey} was {why}: moved to {dest}", {"key": rkey}))

    def _save(self, saved: Saved | None) -> None:
        if saved is None:
            return
        saved.position = self.position
        self.state.save(saved)

    # ---- checkpoints -----------------------------------------------------------------------------------

    def _maybe_checkpoint(self) -> None:
        source, pos, saved = self.source, self.position, self.saved
        if source is None or pos is None or pos.salts is None or saved is None:
            return
        if self._checkpointed == (pos.salts, pos.end):
            # all of this WAL is in the database already: until a writer adds to it or starts it
            # again, another checkpoint would only take the write lock again (after one large
            # commit, each of the quick looks that follow did, 20 ms apart)
            return
        frame_size = saved.pages.page_size + 24
        frames = (pos.end - WAL_HEADER_SIZE) // frame_size
        due = frames >= self.options.min_checkpoint_pages or (
            frames > 0 and time.monotonic() - self._last_checkpoint >= self.options.checkpoint_interval_s
        )
        if not due:
            return
        self._last_checkpoint = time.monotonic()
        try:
            with source.write_lock(timeout_s=0.2):  # no commit lands: publish the rest, checkpoint what we hold
                try:
                    self._incremental()
                except LostTrack:
                    return
                pos = self.position
                with source.wal() as w:
                    if pos is None or w is None or wal_position.end_of_counted(source.index(), w) != pos.end:
                        return
                self.hooks.step("checkpoint")
                busy, log, done = source.checkpoint("PASSIVE")
                self.hooks.step("checkpointed")
                source.pin()
        except DatabaseError as exc:
            self.emit(Event("warning", f"checkpoint skipped: {exc}", {}))
            return
        if log == done and not busy:
            pos.any_generation = True
            self._checkpointed = (pos.salts, pos.end)
        self.emit(
            Event(
                "checkpoint",
                f"checkpoint PASSIVE: {done} of {log} frames",
                {"mode": "PASSIVE", "frames": log, "done": done},
            )
        )
        try:
            wal_frames = os.stat(source.wal_path).st_size // frame_size
        except FileNotFoundError:
            return
        if wal_frames >= self.options.truncate_pages and log == done:
            busy, log, done = source.checkpoint("TRUNCATE")
            source.pin()
            # writers may have committed between our lock and the TRUNCATE: nothing proves what the
            # truncated WAL held, so the next sync reads the database whole (a diff, not a snapshot)
            self.position = None
            self.emit(
                Event(
                    "checkpoint",
                    f"checkpoint TRUNCATE: the WAL was {wal_frames} frames long",
                    {"mode": "TRUNCATE", "frames": wal_frames, "busy": busy},
                )
            )


class _SourceReader:
    """Every page of the pinned database state: the database file overlaid with counted WAL frames."""

    def __init__(self, source: Source, w: WalReader | None, page_size: int, commit: int, wal: dict[int, int]) -> None:
        self.source = source
        self.w = w
        self.page_size = page_size
        self.commit = commit
        self.wal = wal
        self.lock = lock_pgno(page_size)
        self._sums: dict[int, int] | None = None

    def _read(self, pgnos: list[int] | None = None) -> Iterator[tuple[int, bytes]]:
        ps, wal, w, lock = self.page_size, self.wal, self.w, self.lock
        if pgnos is not None:
            for p in pgnos:
                off = wal.get(p)
                if off is not None and w is not None:
                    yield p, w.page(off, ps)
                else:
                    yield p, self.source.read_pages(p, 1, ps)
            return
        chunk_pages = max(1, (1 << 20) // ps)
        first = 1
        while first <= self.commit:
            n = min(chunk_pages, self.commit - first + 1)
            chunk = self.source.read_pages(first, n, ps, exact=False)  # pages only in the WAL may be past its end
            for i in range(n):
                p = first + i
                if p == lock:
                    continue
                off = wal.get(p)
                if off is not None and w is not None:
                    yield p, w.page(off, ps)
                    continue
                page = chunk[i * ps : (i + 1) * ps]
                if len(page) != ps:
                    raise DatabaseError(f"{self.source.path}: file ends before page {p}, which no WAL frame holds")
                yield p, page
            first += n

    def pages(self, sums: dict[int, int]) -> Iterator[tuple[int, bytes]]:
        """Every page, recording each one's checksum in `sums` as it goes."""
        for p, data in self._read():
            sums[p] = page_checksum(p, data)
            yield p, data
        self._sums = sums

    def finish(self, intent: Intent) -> Intent:
        """The full file's intent, once every page was read: its sums and the source checksum."""
        assert self._sums is not None, "pages() was not read to the end"
        return Intent(
            intent.txid, intent.page_size, intent.commit, True, self._sums, fold_page_checksums(self._sums.values())
        )

    def checksums(self) -> dict[int, int]:
        return {p: page_checksum(p, data) for p, data in self._read()}

    def selected(self, pgnos: list[int]) -> Iterator[tuple[int, bytes]]:
        return self._read(pgnos)
