"""`ltxkit repair --rebuild-snapshot`: make a damaged replica restorable again, deleting nothing.

The steps, each safe to stop after:
1. verify the replica and decide which files would keep verify failing (damaged files, files
   with a defect of their own, files beyond an unbridgeable gap when rebuilding from the chain);
2. build the new files in the storage's staging directory (for a directory replica, inside it
   but outside `ltx/`, so neither Litestream nor ltxkit reads them yet), fsync and verify each one;
3. re-list the replica: if anything changed since step 1, someone is writing to it: back out;
4. move the condemned files to `quarantine/<stamp>/<key>` with a manifest, publish the new files
   (create-only), and re-list again (backing everything out if a writer appeared meanwhile).

Every step goes through the `Storage` protocol, so a replica on an object store is repaired the
same way (quarantine there is copy, verify, delete).

From a live database (`from_db`), the new snapshot carries a TXID above everything in the replica
and is published at level 9. Level 0 gets a single-TXID full-page file at that TXID (Litestream
takes its position from the newest L0 file), and level 1 plus every other level in use get a
full-page file that carries them up to the same TXID, so Litestream's compactions continue
contiguously above the repair once it is restarted.

Files are published without checksum tracking, as Litestream writes them: Litestream 0.5.x
cannot restore a plan whose last file tracks checksums. On a replica that keeps ltxkit's checksum
ledger, each published file gets its record (all are full files: the state they lead to is the
fold of their own pages), and a quarantined file's record goes to quarantine with it.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ltxkit.errors import EXIT_INTERRUPTED, EXIT_TERMINATED, EXIT_USAGE, LtxkitError, Terminated
from ltxkit.format.checksum import CHECKSUM_FLAG, database_checksum, fold_page_checksums, page_checksum
from ltxkit.format.decoder import LTXReader
from ltxkit.format.encoder import LTXWriter
from ltxkit.format.errors import Code
from ltxkit.format.schema import FLAG_NO_CHECKSUM, Header, format_filename, lock_pgno, parse_filename
from ltxkit.replica import ledger
from ltxkit.replica.keys import QUARANTINE_DIR, quarantine_entry, quarantine_key, quarantine_stamp
from ltxkit.replica.layout import SNAPSHOT_LEVEL, PlanError, ReplicaFile, restore_plan
from ltxkit.replica.page_form import newest_uses_lz4_frames
from ltxkit.replica.storage import Storage
from ltxkit.restore import RestoreError, restore_into
from ltxkit.snapshot import verify_file
from ltxkit.sqlite import (
    WAL_HEADER_SIZE,
    DatabaseError,
    DatabaseView,
    Schema,
    consistent_view,
    integrity_check,
    schema_of,
)
from ltxkit.verify.engine import check_replica
from ltxkit.verify.findings import Finding, ReplicaSummary, Severity, join_label


class RepairError(LtxkitError):
    """Repair cannot proceed; nothing was changed, everything was backed out, or (`backed_out`
    false) the back-out itself failed and the message names what is not back in place.
    `applied`: the repair was published, and what failed came after (its message says what).
    `aside`: where a backed-out repair keeps the files it had published (never deleted)."""

    def __init__(
        self,
        message: str,
        *,
        exit_code: int | None = None,
        backed_out: bool = True,
        applied: bool = False,
        aside: str | None = None,
    ) -> None:
        super().__init__(message, exit_code=exit_code)
        self.backed_out = backed_out
        self.applied = applied
        self.aside = aside


@dataclass(slots=True)
class NewFile:
    key: str
    level: int
    min_txid: int
    max_txid: int
    staged: Path
    timestamp_ms: int


@dataclass(slots=True)
class RepairPlan:
    before: ReplicaSummary
    quarantine: dict[str, list[Finding]] = field(default_factory=dict)  # key -> why
    new_files: list[NewFile] = field(default_factory=list)
    source: str = ""
    txid: int = 0
    lost: tuple[int, int] | None = None  # TXIDs that can no longer be restored (from the chain)
    comparison: str = ""  # from a database: how it was compared with the replica
    staging: Path | None = None
    lz4_frames: bool = False  # the new files' pages are LZ4 frames, as the replica's (`replica.page_form`)

    @property
    def needed(self) -> bool:
        return bool(self.quarantine or self.new_files)


@dataclass(slots=True)
class RepairResult:
    plan: RepairPlan
    quarantine: str | None  # the key prefix the condemned files and manifest.json went to
    after: ReplicaSummary | None

    @property
    def errors(self) -> list[Finding]:
        """What verify (content included) still finds after the repair: empty when it worked."""
        return self.after.errors if self.after is not None else []


def _condemned(summary: ReplicaSummary) -> dict[str, list[Finding]]:
    """Files whose own findings are errors: they would keep verify failing."""
    out: dict[str, list[Finding]] = {}
    by_path = {fc.path: fc for fc in summary.files}
    for fc in summary.files:
        bad = [f for f in fc.findings if f.severity == Severity.ERROR]
        if bad and fc.key:
            out[fc.key] = bad
    for f in summary.findings:  # replica findings attached to one file (overlap, chain break...)
        owner = by_path.get(f.path)
        if owner is not None and owner.key and f.severity == Severity.ERROR:
            out.setdefault(owner.key, []).append(f)
    return out


def _wrong_records(summary: ReplicaSummary) -> dict[str, list[Finding]]:
    """Ledger records that do not parse, are about another file than the one beside them (a
    Litestream that wrote over ltxkit's TXIDs leaves those), or are of files the replica lost:
    they would keep verify failing (and the last kind would stop a replicator from recording the
    file it publishes next under that name), and they are ltxkit's proof, not the replica's data.
    The files they were about stay."""
    out: dict[str, list[Finding]] = {}
    for f in summary.findings:
        if f.severity != Severity.ERROR:
            continue
        records = f.context.get("records", [f.context.get("record")])  # several: `ledger-ahead`
        for record in records if isinstance(records, list) else []:
            if isinstance(record, str):
                out.setdefault(record, []).append(f)
    return out


def _condemned_by_content(summary: ReplicaSummary) -> dict[str, list[Finding]]:
    """When restores fail SQLite's check: every file from the first bad restore point on."""
    verdict = summary.content
    if verdict is None or verdict.ok or verdict.first_bad is None:
        return {}
    bad = verdict.first_bad
    why = (
        f"restore points from TXID {bad.txid:016x} on fail {verdict.mode.pragma} "
        f"({bad.said}); the damage came in with {bad.last_key}"
    )
    return {
        f.key: [Finding(Code.INTEGRITY_CHECK_FAILED, f.key, why, {"first_bad_txid": bad.txid})]
        for f in summary.listing.files
        if f.max_txid >= bad.txid
    }


def plan_repair(
    storage: Storage, *, from_db: Path | None, now_ms: int | None = None, force_source: bool = False
) -> RepairPlan:
    """Decide what to build and what to move; build and verify the new files in staging.

    The replica is verified with its content checked, so a replica whose files are sound but
    whose restores are corrupt is repaired too: from the database, or from the chain up to the
    last restore point SQLite accepts.
    """
    summary = check_replica(storage, storage.label, content=True)
    plan = RepairPlan(before=summary)
    if not summary.errors:
        return plan
    stopped = summary.content.search_stopped if summary.content is not None else None
    if stopped is not None:  # the last good restore point is not known: what to set aside is not either
        raise RepairError(
            f"{stopped.vanished} was deleted while repair's check restored TXID {stopped.txid:016x} "
            "(retention or a replicator at work?), so the last good restore point is not known; "
            "nothing was changed: run repair again, with the replicator stopped",
            exit_code=EXIT_USAGE,
        )
    plan.quarantine = _condemned(summary)
    for key, why in [*_condemned_by_content(summary).items(), *_wrong_records(summary).items()]:
        plan.quarantine.setdefault(key, []).extend(why)
    listing = summary.listing
    keep = [f for f in listing.files if f.key not in plan.quarantine]
    plan.lz4_frames = newest_uses_lz4_frames(storage, keep or listing.files)
    now = int(time.time() * 1000) if now_ms is None else now_ms
    staging = storage.make_staging()
    plan.staging = staging
    try:
        if from_db is not None:
            _plan_from_db(plan, storage, keep, from_db, now, staging, force_source=force_source)
        else:
            _plan_from_chain(plan, storage, keep, now, staging)
        _records_above_the_end(plan)
    except BaseException as exc:
        shutil.rmtree(staging, ignore_errors=True)
        plan.staging = None
        if isinstance(exc, OSError) and (
            str(exc.filename).startswith(str(staging))
            if exc.filename is not None
            else exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
        ):
            # a file of ours in staging: name the replica the user typed, not our staging path
            raise OSError(exc.errno, f"{exc.strerror}: while building the new files", storage.label) from exc
        raise
    return plan


def _records_above_the_end(plan: RepairPlan) -> None:
    """Set aside the ledger records above the TXID the repaired replica ends at, whose files are
    not moved with them: records of files the replica had lost already (a deleted L0 file below
    the newest, whose gap made the chain stop there). Verify said nothing of them before, as the
    replica went further; after the repair they are `ledger-ahead`, and a repair that left them
    failed its own check and needed running again."""
    moved = set(plan.quarantine)
    kept = [f.max_txid for f in plan.before.listing.files if f.key not in moved]
    end = max([plan.txid, *kept, *(nf.max_txid for nf in plan.new_files)])
    with_files = {ledger.key(f.level, f.min_txid, f.max_txid) for f in plan.before.listing.files if f.key in moved}
    for rkey in sorted(plan.before.ledger_records):  # as verify listed them: not listed again
        top = ledger.max_txid_of(rkey)
        if top is None or top <= end or rkey in with_files or rkey in plan.quarantine:
            continue
        plan.quarantine[rkey] = [
            Finding(
                Code.LEDGER_AHEAD,
                rkey,
                f"records a file up to TXID {top:016x}, above TXID {end:016x} where the repaired replica ends",
            )
        ]


def _write_staged(
    plan: RepairPlan,
    storage: Storage,
    staging: Path,
    view_pages: Callable[[], Iterator[tuple[int, bytes]]],
    header: Header,
    level: int,
) -> NewFile:
    name = f"L{level}-{format_filename(header.min_txid, header.max_txid)}"
    path = staging / name
    with path.open("xb") as fh:
        writer = LTXWriter(fh, header, lz4_frames=plan.lz4_frames)
        for pgno, page in view_pages():
            writer.write_page(pgno, page)
        writer.close()
        fh.flush()
        os.fsync(fh.fileno())
    verify_file(path)  # raises LTXError: nothing unverified is ever published
    key = storage.layout.key(level, header.min_txid, header.max_txid)
    return NewFile(key, level, header.min_txid, header.max_txid, path, header.timestamp)


def _plan_from_db(
    plan: RepairPlan,
    storage: Storage,
    keep: list[ReplicaFile],
    db: Path,
    now: int,
    staging: Path,
    *,
    force_source: bool,
) -> None:
    listing = plan.before.listing
    txid = listing.max_txid + 1
    plan.txid = txid
    plan.source = f"database {db}"
    problems = integrity_check(db, live=True)
    if problems:
        raise RepairError(
            f"{db} itself fails integrity_check ({problems[0]}): it cannot be the source of a sound snapshot"
        )
    _compare_source(plan, storage, db, keep, force_source=force_source)
    with consistent_view(db) as view:
        _check_page_size(db, view.page_size, plan.before)  # again, inside the read: it may have changed
        _stage_full_state(plan, storage, view, keep, txid, now, staging)


def _check_page_size(db: Path, page_size: int, before: ReplicaSummary) -> None:
    want = _replica_page_size(before)
    if want is not None and page_size != want:
        raise RepairError(
            f"{db} has {page_size}-byte pages, the replica {want}-byte pages: is it the replica's database?"
        )


@dataclass(frozen=True, slots=True)
class PageComparison:
    """The database against a restore point, page by page (the lock page never counts)."""

    identical: int
    changed: int
    added: int  # pages the database has beyond the restore point's size
    removed: int  # pages the restore point has beyond the database's size
    same_checksum: bool  # the database checksum equals the restore point's

    @property
    def shared(self) -> int:
        return self.identical + self.changed

    @property
    def unrelated(self) -> bool:
        """Fewer than half the pages both have are identical: not a later state of the same
        database, as far as pages can tell (an application rewriting most pages is possible, so
        it is an override, not a verdict)."""
        return not self.same_checksum and self.identical * 2 < self.shared

    def describe(self) -> str:
        if self.same_checksum:
            return "pages: identical (the database checksum equals the restore point's)"
        return (
            f"pages: {self.identical:,} identical, {self.changed:,} changed, {self.added:,} added, "
            f"{self.removed:,} removed ({self.identical * 100 // max(1, self.shared)}% of the "
            f"{self.shared:,} both have are identical)"
        )


def compare_pages(restored: Path, db: Path) -> PageComparison:
    """Read the restore point's file and one consistent view of the live database side by side."""
    identical = changed = added = 0
    our_sum = CHECKSUM_FLAG  # folded as the pages go by: the database is read once
    with consistent_view(db) as view, restored.open("rb") as fh:
        ps = view.page_size
        lock = lock_pgno(ps)
        theirs = os.fstat(fh.fileno()).st_size // ps
        their_sum = database_checksum(((p, fh.read(ps)) for p in range(1, theirs + 1)), lock)
        for pgno, page in view.pages():  # the lock page is never among them
            our_sum = CHECKSUM_FLAG | (our_sum ^ page_checksum(pgno, page))
            if pgno > theirs:
                added += 1
            elif os.pread(fh.fileno(), ps, (pgno - 1) * ps) == page:
                identical += 1
            else:
                changed += 1
        ours = view.commit
    removed = sum(1 for p in range(ours + 1, theirs + 1) if p != lock)
    return PageComparison(identical, changed, added, removed, our_sum == their_sum and ours == theirs)


def _restore_point(files: list[ReplicaFile]) -> list[ReplicaFile] | None:
    """The newest restore point of `files`: their latest plan, or the chain up to a gap."""
    try:
        return restore_plan(files)
    except PlanError as exc:
        have = exc.context.get("have")
        if exc.code == Code.TXID_GAP and isinstance(have, int):
            with contextlib.suppress(PlanError):
                return restore_plan(files, txid=have)
    return None


def _candidate_points(before: ReplicaSummary, keep: list[ReplicaFile]) -> list[list[ReplicaFile]]:
    """Restore points to compare the database with, best first: the newest one whose files are
    sound (its content may fail SQLite's check because of a page or two: the database is the
    state those files recorded, so nearly every page matches), then the newest one the repair
    keeps (content checked)."""
    structural = set(_condemned(before))
    out: list[list[ReplicaFile]] = []
    for files in ([f for f in before.listing.files if f.key not in structural], keep):
        point = _restore_point(files)
        if point is not None and all(point != p for p in out):
            out.append(point)
    return out


def _compare_source(
    plan: RepairPlan, storage: Storage, db: Path, keep: list[ReplicaFile], *, force_source: bool
) -> None:
    """Does `db` look like the database this replica was made from? Compared with the replica's
    newest restore point that restores: its application id and tables must be the database's,
    and at least half of the pages both have must be identical (a later state of one database
    changes some pages, not most). What was compared goes into the plan either way."""
    before = plan.before
    live = schema_of(db, live=True)
    _check_page_size(db, live.page_size, before)
    found: tuple[int, Schema, PageComparison] | None = None
    for point in _candidate_points(before, keep):
        with tempfile.TemporaryDirectory(prefix="ltxkit-repair-") as tmp:
            restored = Path(tmp) / "restore-point.db"
            try:
                with restored.open("wb") as out:
                    restore_into(storage, point, out)
                replica = schema_of(restored)
            except (RestoreError, DatabaseError):
                continue
            found = (point[-1].max_txid, replica, compare_pages(restored, db))
            break
    if found is None:
        plan.comparison = f"no restore point restores, so only the page size is compared; {db}: {live.describe()}"
        return
    txid, replica, pages = found
    plan.comparison = (
        f"restore point TXID {txid:016x}: {replica.describe()}; {db}: {live.describe()}; {pages.describe()}"
    )
    missing = replica.tables - live.tables
    whys = []
    if replica.application_id != live.application_id:
        whys.append(f"application id {live.application_id}, the replica's {replica.application_id}")
    elif missing:
        whys.append(f"it lacks the replica's table(s) {', '.join(sorted(missing)[:6])}")
    if pages.unrelated:
        proof = None if whys else _replicated_from(db, storage, before.listing.files)
        if proof is not None:  # a small database that grew since: most of its pages changed
            plan.comparison += f"; most pages changed since, but {proof}"
            return
        whys.append(f"only {pages.identical:,} of the {pages.shared:,} pages both have are identical")
    if not whys:
        return
    why = "; ".join(whys)
    if not force_source:
        raise RepairError(
            f"{db} does not look like this replica's database ({why}); nothing changed. "
            "Pass --force-source to publish it anyway"
        )
    by = "its pages" if not missing and replica.application_id == live.application_id else "its schema"
    plan.comparison += f"; NOT the replica's database by {by} ({why}), used because of --force-source"


def _replicated_from(db: Path, storage: Storage, files: list[ReplicaFile]) -> str | None:
    """Proof, from a replicator's own state beside `db`, that the replica was made from it: where
    the pages of a small database that grew since its newest good restore point are mostly new,
    the page comparison takes the right database for another one. Litestream keeps a local copy
    of each file it uploads (`.<db>-litestream/ltx/<level>/`): one with the name and the file
    checksum of a replica file is proof. So is ltxkit replicate's saved state naming this replica
    and a file it holds."""
    by_range = {(f.level, f.min_txid, f.max_txid): f for f in files}
    local = db.parent / f".{db.name}-litestream" / "ltx"
    for path in sorted(local.glob("*/*.ltx"), reverse=True)[:64]:
        txids = parse_filename(path.name)
        f = by_range.get((int(path.parent.name), *txids)) if txids and path.parent.name.isdigit() else None
        if f is None or f.size < 8:
            continue
        try:
            with path.open("rb") as fh:
                fh.seek(-8, os.SEEK_END)
                if fh.read(8) == storage.read_range(f.key, f.size - 8, 8):
                    return f"Litestream's local copy of {f.key} beside it is the replica's file"
        except OSError:
            continue
    from ltxkit.replicate.state import LocalState

    saved, _why = LocalState(db).load()
    if saved is not None and saved.replica == storage.url and any(f.key == saved.key for f in files):
        return f"ltxkit replicate's state beside it names this replica and its file {saved.key}"
    return None


def _replica_page_size(summary: ReplicaSummary) -> int | None:
    """The latest restore point's page size, else the newest readable file's."""
    if summary.page_size is not None:
        return summary.page_size
    readable = [(fc.header, fc.level or 0) for fc in summary.files if fc.header is not None]
    newest = max(readable, key=lambda hl: (hl[0].max_txid, hl[1]), default=None)
    return newest[0].page_size if newest is not None else None


def _stage_full_state(
    plan: RepairPlan,
    storage: Storage,
    view: DatabaseView,
    keep: list[ReplicaFile],
    txid: int,
    now: int,
    staging: Path,
) -> None:
    def pages() -> Iterator[tuple[int, bytes]]:
        return view.pages()

    # no checksum tracking: Litestream 0.5.x cannot restore a plan ending in a tracked file
    snap = Header.snapshot(view.page_size, view.commit, txid, now, checksums=False)
    plan.new_files.append(_write_staged(plan, storage, staging, pages, snap, SNAPSHOT_LEVEL))
    # Level 0 gets a single-TXID file, as Litestream names its own: on restart Litestream adopts the
    # replica's newest L0 file as its position and checks it against the live WAL. The file claims
    # to start at the WAL header with salts that differ from the live WAL's, so Litestream sees a
    # WAL reset and writes a full snapshot at the next TXID instead of guessing an offset.
    salt1, salt2 = view.wal_salts or (0, 0)
    l0 = Header(
        flags=FLAG_NO_CHECKSUM,
        page_size=view.page_size,
        commit=view.commit,
        min_txid=txid,
        max_txid=txid,
        timestamp=now,
        wal_offset=WAL_HEADER_SIZE,
        wal_salt1=(salt1 ^ 0x5A5A5A5A) or 1,
        wal_salt2=(salt2 ^ 0xA5A5A5A5) or 1,
    )
    plan.new_files.append(_write_staged(plan, storage, staging, pages, l0, 0))
    # Levels 1..8 (level 1 always) get a full-page file that carries them up to the same TXID, so
    # Litestream's next compaction into each level starts contiguously above the repair.
    for level in sorted({1} | {f.level for f in keep if 0 < f.level < SNAPSHOT_LEVEL}):
        start = max((f.max_txid for f in keep if f.level == level), default=0) + 1
        hdr = Header(
            flags=FLAG_NO_CHECKSUM,
            page_size=view.page_size,
            commit=view.commit,
            min_txid=start,
            max_txid=txid,
            timestamp=now,
        )
        plan.new_files.append(_write_staged(plan, storage, staging, pages, hdr, level))


class _FileView:
    """Pages of a restored database file, shaped like DatabaseView for the encoder."""

    def __init__(self, path: Path, page_size: int, commit: int) -> None:
        self.path, self.page_size, self.commit = path, page_size, commit

    def pages(self) -> Iterator[tuple[int, bytes]]:
        lock = lock_pgno(self.page_size)
        with self.path.open("rb") as fh:
            for pgno in range(1, self.commit + 1):
                data = fh.read(self.page_size)
                if pgno != lock:
                    yield pgno, data


def _plan_from_chain(plan: RepairPlan, storage: Storage, keep: list[ReplicaFile], now: int, staging: Path) -> None:
    listing = plan.before.listing
    verdict = plan.before.content
    if verdict is not None and not verdict.ok and verdict.last_good is None:
        raise RepairError(
            f"no restore point passes {verdict.mode.pragma}, so the chain holds nothing sound to rebuild "
            "from: use --from-db with the live database"
        )
    try:
        chain = restore_plan(keep)
    except PlanError as exc:
        if exc.code != Code.TXID_GAP:
            raise RepairError(
                f"nothing healthy to rebuild from: {exc.message}; use --from-db with the live database"
            ) from exc
        have = exc.context["have"]
        assert isinstance(have, int)  # a TXID_GAP plan error always says how far the chain got
        chain = restore_plan(keep, txid=have)
    txid = chain[-1].max_txid
    plan.txid = txid
    plan.source = "the replica's healthy chain: " + ", ".join(f.describe() for f in chain)
    if txid < listing.max_txid:
        plan.lost = (txid + 1, listing.max_txid)
        for f in keep:  # files past the break would keep the latest restore failing
            past = f.max_txid > txid if f.level == SNAPSHOT_LEVEL else f.min_txid > txid + 1
            if past:
                plan.quarantine.setdefault(f.key, []).append(
                    Finding(Code.TXID_GAP, f.key, f"beyond TXID {txid:016x}, the last one the healthy chain reaches")
                )
    db = staging / "chain.db"
    try:
        with db.open("wb") as out:
            result = restore_into(storage, chain, out)
    except RestoreError as exc:
        raise RepairError(f"the healthy chain does not restore: {exc.message}") from exc
    view = _FileView(db, result.page_size, result.commit)
    snap = Header.snapshot(result.page_size, result.commit, txid, now, checksums=False)
    existing = {f.key for f in keep}
    key = storage.layout.key(SNAPSHOT_LEVEL, 1, txid)
    tracked = [f for f in plan.before.findings if f.code == Code.TRACKED_PLAN_END and f.context.get("key") == key]
    if key in existing and tracked:  # the snapshot ending the plan tracks checksums: Litestream cannot restore it
        plan.quarantine.setdefault(key, []).extend(tracked)
    if key not in existing or tracked:
        plan.new_files.append(_write_staged(plan, storage, staging, view.pages, snap, SNAPSHOT_LEVEL))
    db.unlink()


def _listing_keys(storage: Storage) -> set[tuple[str, int]]:
    return {(e.key, e.size) for area in storage.layout.areas() for e in storage.list(area)}


def apply_repair(storage: Storage, plan: RepairPlan) -> RepairResult:
    """Move condemned files to quarantine and publish the staged files; back out if a writer appears."""
    expected = {(f.key, f.size) for f in plan.before.listing.files} | {
        (e.key, e.size) for e in plan.before.listing.entries
    }
    if _listing_keys(storage) != expected:
        discard(plan)
        raise RepairError(
            "the replica changed while repair was planning (is Litestream running?); nothing was "
            "changed. Stop replication, then run repair again."
        )
    stamp = quarantine_stamp()
    manifest: list[dict[str, object]] = []
    moved: list[tuple[str, str]] = []
    gone: set[str] = set()  # the keys in `moved`
    published: dict[str, int] = {}  # key -> size
    recorded = {e.key for e in storage.list(ledger.LEDGER_DIR + "/")}
    records = [_ledger_record(nf) for nf in plan.new_files] if recorded else []
    files = {f.key: f for f in plan.before.listing.files}
    step = ""  # what was being done, for the message if it fails
    try:
        for key, why in sorted(plan.quarantine.items()):
            dest = quarantine_key(stamp, key)
            step = f"moving {key} to quarantine"
            if key in gone:
                continue  # a wrong record whose file went first, taking it along
            moved.append((key, dest))  # first: a Ctrl-C inside the move still puts the file back
            gone.add(key)
            storage.quarantine(key, dest)
            f = files.get(key)
            rkey = ledger.key(f.level, f.min_txid, f.max_txid) if f is not None else None
            if rkey in recorded and rkey not in gone:  # its record goes with it: it vouches only for its file
                step = f"moving {rkey} to quarantine"
                moved.append((rkey, quarantine_key(stamp, rkey)))
                gone.add(rkey)
                storage.quarantine(rkey, quarantine_key(stamp, rkey))
            manifest.append(quarantine_entry(key, dest, sorted({str(f.code) for f in why}), [f.message for f in why]))
        for nf in plan.new_files:
            step = f"publishing {nf.key}"
            published[nf.key] = -1  # first, as above: backed out even if interrupted inside publish
            try:
                entry = storage.publish(nf.key, nf.staged, created_ms=nf.timestamp_ms)
            except FileExistsError:
                del published[nf.key]  # not ours: never moved by a back-out
                raise RepairError(f"{nf.key}: already exists; refusing to overwrite it") from None
            published[nf.key] = entry.size
        if manifest:
            step = "writing the quarantine manifest"
            storage.put_bytes(quarantine_key(stamp, "manifest.json"), _manifest(manifest, plan))
        step = "listing the replica after publishing"
        after_expected = {(k, s) for k, s in expected if k not in plan.quarantine} | set(published.items())
        if _listing_keys(storage) != after_expected:
            raise RepairError("the replica changed while repair was publishing (is Litestream running?)")
        for record in records:  # the replica keeps a ledger: what repair published is recorded too
            rkey = ledger.key(record.level, record.min_txid, record.max_txid)
            step = f"recording {rkey} in the ledger"
            ledger.put(storage, record)
            published[rkey] = 0
    except BaseException as exc:
        left, aside = _back_out(storage, moved, list(published), stamp)
        discard(plan)
        expected_failure = isinstance(exc, (LtxkitError, OSError, KeyboardInterrupt))
        if not left and (isinstance(exc, RepairError) or not expected_failure):
            if isinstance(exc, RepairError):
                exc.aside = aside
            raise  # all put back: a refusal says it as it is, and a bug stays an internal error
        failed = _failed_apply(exc, step, left)
        failed.aside = aside
        raise failed from exc
    discard(plan)
    where = f"{QUARANTINE_DIR}/{stamp}" if manifest else None
    try:
        after = check_replica(storage, storage.label, content=True)
    except KeyboardInterrupt as exc:  # the repair is in place: say so, not just "interrupted"
        code = EXIT_TERMINATED if isinstance(exc, Terminated) else EXIT_INTERRUPTED
        moved_to = f" (what it replaced is in {join_label(storage.label, where)})" if where else ""
        raise RepairError(
            f"interrupted after the repair was published{moved_to}, while checking the result: "
            f"run `ltxkit verify {storage.label}`",
            exit_code=code,
            applied=True,
        ) from exc
    return RepairResult(plan, where, after)


def _ledger_record(nf: NewFile) -> ledger.Record:
    """The ledger record of a file repair publishes: every such file holds every page (a full
    state), so the database checksum it leads to is the fold of its own pages."""
    with open(nf.staged, "rb") as fh:
        reader = LTXReader(fh)
        sums = [page_checksum(pgno, page) for pgno, page in reader.pages()]
        assert reader.info is not None
        hdr, trailer = reader.header, reader.info.trailer
    return ledger.Record(
        level=nf.level,
        min_txid=hdr.min_txid,
        max_txid=hdr.max_txid,
        page_size=hdr.page_size,
        commit=hdr.commit,
        pages=len(sums),
        file_checksum=trailer.file_checksum,
        before=None,
        after=fold_page_checksums(sums),
    )


def _manifest(entries: list[dict[str, object]], plan: RepairPlan) -> bytes:
    doc = {
        "tool": "ltxkit repair --rebuild-snapshot",
        "source": plan.source,
        "new_snapshot_txid": f"{plan.txid:016x}",
        "lost_txids": [f"{plan.lost[0]:016x}", f"{plan.lost[1]:016x}"] if plan.lost else None,
        "files": entries,
    }
    return json.dumps(doc, indent=2).encode()


def _back_out(
    storage: Storage, moved: list[tuple[str, str]], published: list[str], stamp: str
) -> tuple[list[str], str | None]:
    """Undo a half-applied repair: new files go to quarantine (never deleted), moved files go back.

    Every step is tried even when one fails (the store may be failing as the repair did). Returns
    what is not back where it was (one phrase each) and where the files this repair had published
    now lie, if any did."""
    left: list[str] = []
    aside = None
    silent = False  # the store stopped answering: every step after would wait out its timeout too
    for key in published:
        dest = quarantine_key(stamp, f"backed-out/{key}")
        if silent:
            left.append(f"{key} (published by this repair) may still be in place: not tried")
            continue
        try:
            storage.quarantine(key, dest)
            aside = quarantine_key(stamp, "backed-out")
        except FileNotFoundError:
            continue  # its publish never happened
        except (OSError, LtxkitError) as exc:
            silent = silent or _unanswered(exc)
            left.append(f"{key} (published by this repair) is still in place")
    for key, dest in reversed(moved):
        if silent:
            left.append(f"{key} may still be at {dest}: not tried")
            continue
        try:
            storage.quarantine(dest, key)
        except FileNotFoundError:
            continue  # its move never began
        except FileExistsError:  # the move stopped before the original went: its copy goes instead
            _drop_copy(storage, dest, key)
        except (OSError, LtxkitError) as exc:
            silent = silent or _unanswered(exc)
            left.append(f"{key} is still at {dest}")
    if silent:
        left.append("the store stopped answering, so no step after that was tried")
    return left, aside


def _unanswered(exc: BaseException) -> bool:
    """Did the store not answer at all (a timeout, no connection), rather than refuse one step?"""
    return bool(getattr(exc, "unreachable", False))


def _drop_copy(storage: Storage, copy: str, original: str) -> None:
    """Remove the quarantine copy of a file that never left its place, once it reads back the
    same as the original (an object store's move is copy, then delete: an interrupt between
    the two left a copy as large as the file, with no manifest to say what it was). A copy that
    cannot be read or compared stays: a stray copy loses nothing."""
    with contextlib.suppress(FileNotFoundError, OSError, LtxkitError):
        if storage.read_bytes(copy) == storage.read_bytes(original):
            storage.delete([copy])


def _failed_apply(exc: BaseException, step: str, left: list[str]) -> RepairError:
    """The one error a failed apply ends with: what failed, and whether everything is back.

    It keeps the exit code of what failed (an unreachable store: 2; Ctrl-C: 130)."""
    code: int | None = None
    if isinstance(exc, RepairError):
        what, code = exc.message, exc.exit_code
    elif isinstance(exc, KeyboardInterrupt):
        what = f"interrupted while {step}"
        code = EXIT_TERMINATED if isinstance(exc, Terminated) else EXIT_INTERRUPTED
    elif isinstance(exc, OSError):  # a local file system's refusal: could not run, as anywhere else
        where = f"{exc.filename}: " if exc.filename else ""
        what, code = f"{step} failed: {where}{exc.strerror or exc}", EXIT_USAGE
    else:
        what = f"{step} failed: {exc}"
        code = exc.exit_code if isinstance(exc, LtxkitError) else None
    if left:
        return RepairError(
            f"{what}; backing out did not finish, the replica is half-repaired: "
            + "; ".join(left)
            + " (nothing is lost). Once the storage answers, `ltxkit verify` the replica",
            exit_code=code,
            backed_out=False,
        )
    return RepairError(what, exit_code=code)


def discard(plan: RepairPlan) -> None:
    if plan.staging is not None:
        shutil.rmtree(plan.staging, ignore_errors=True)
        plan.staging = None
