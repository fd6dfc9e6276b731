"""A replica's lifecycle, as Litestream 0.5.x runs it: compaction levels, level-9 snapshots,
retention. Every output is proven before it is published, and nothing is deleted that a restore
still needs.

* **Compaction** into level n merges the files of level n-1 from the TXID after level n's last
  one, in TXID order: the newest copy of each page wins and pages above the last file's commit
  are dropped (as superfly/ltx's compactor, whose header rules it keeps: the last input's commit
  and timestamp, no checksums). The inputs must form an unbroken chain; a gap stops it. The
  merge streams (one page per input held), so compacting over a snapshot of any size costs no
  more memory than the page checksums the proof keeps. The output's proof: it decodes strictly,
  and holds exactly the merge's pages, each equal to the newest input's copy.
* **Snapshots** (level 9, `0000000000000001-<txid>.ltx`) are built from a restore of the
  replica's latest state, and proven to reach the database checksum the replicator recorded for
  that TXID.
* **Retention**: an L0 file goes once a level-1 file covers it and it is older than
  `l0_retention`; a snapshot goes once it is older than `snapshot_retention`, and files of levels
  1..8 below the oldest snapshot kept go with it. The newest file of every level stays. Before
  anything is deleted, the latest restore plan of what would remain is computed: if it would
  fail, or read a file marked for deletion, nothing is deleted.
"""

from __future__ import annotations

import contextlib
import heapq
import os
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ltxkit.format.checksum import page_checksum
from ltxkit.format.decoder import LTXReader, parse_header
from ltxkit.format.encoder import LTXWriter
from ltxkit.format.schema import HEADER_SIZE, Header, lock_pgno
from ltxkit.replica import ledger
from ltxkit.replica.keys import SNAPSHOT_LEVEL
from ltxkit.replica.layout import PlanError, ReplicaFile, list_replica, restore_plan
from ltxkit.replica.page_form import lz4_frames_at
from ltxkit.replica.storage import Storage
from ltxkit.replicate.pagemap import PageMap
from ltxkit.replicate.proof import Intent, ProofError, prove, prove_pages
from ltxkit.replicate.publish import build_and_publish


@dataclass(frozen=True, slots=True)
class Policy:
    """Intervals and retention, in seconds; Litestream's defaults."""

    levels: tuple[tuple[int, float], ...] = ((1, 30.0), (2, 300.0), (3, 3600.0))
    snapshot_interval_s: float = 86_400.0
    snapshot_retention_s: float = 86_400.0
    l0_retention_s: float = 300.0
    l0_retention_check_s: float = 15.0


def _chain(files: list[ReplicaFile], seek: int) -> list[ReplicaFile]:
    """The files starting at or after TXID `seek` that follow each other without a gap or an
    overlap (Litestream takes the files from `seek` on; a broken chain is not merged across)."""
    out: list[ReplicaFile] = []
    for f in sorted((f for f in files if f.min_txid >= seek), key=lambda f: (f.min_txid, f.max_txid)):
        if out and f.min_txid != out[-1].max_txid + 1:
            break
        out.append(f)
    return out


def _recorded(storage: Storage, f: ReplicaFile) -> ledger.Record | None:
    try:
        return ledger.decode(storage.read_bytes(ledger.key(f.level, f.min_txid, f.max_txid)))
    except (FileNotFoundError, ledger.LedgerError):
        return None


def _newest_pages(readers: list[LTXReader], commit: int) -> Iterator[tuple[int, bytes]]:
    """Every input's pages in page order, one copy of each: the newest input's (inputs oldest
    first), none above `commit`. Streams: each input is read once, in order, and only one page
    per input is held, so a compaction over a snapshot costs no more memory than a page per
    input — every input is still decoded to its end, so its own checksums are checked."""

    def keyed(i: int, reader: LTXReader) -> Iterator[tuple[int, int, bytes]]:
        for pgno, page in reader.pages():
            yield pgno, -i, page  # the same page number: the newer input sorts first

    last = 0
    for pgno, _newer, page in heapq.merge(*(keyed(i, r) for i, r in enumerate(readers))):
        if pgno != last and pgno <= commit:
            yield pgno, page
        last = pgno


def compact(storage: Storage, level: int) -> tuple[str, int] | None:
    """Merge level-1 into `level` from the TXID after `level`'s newest file; (key, size) or None."""
    listing = list_replica(storage)
    dst = listing.level(level)
    seek = max((f.max_txid for f in dst), default=0) + 1
    inputs = _chain(listing.level(level - 1), seek)
    if not inputs:
        return None
    with contextlib.ExitStack() as stack:
        readers = [LTXReader(stack.enter_context(storage.open(f.key))) for f in inputs]
        for f, reader in zip(inputs, readers, strict=True):
            if reader.header.page_size != readers[0].header.page_size:
                raise ProofError(
                    "proof-page-size",
                    f"{f.key}: page size {reader.header.page_size}, the chain's {readers[0].header.page_size}",
                )
        last = readers[-1].header
        commit = last.commit
        first, final = inputs[0].min_txid, inputs[-1].max_txid
        full = first == 1
        sums: dict[int, int] = {}  # filled as the pages are written; the proof reads it after
        intent = Intent(final, last.page_size, commit, full, sums, 0, first_txid=first)
        header = intent.header(timestamp=last.timestamp, wal=(0, 0, 0, 0))  # as the reference compactor: no WAL range
        key = storage.layout.key(level, first, final)

        def write(writer: LTXWriter) -> None:
            for pgno, page in _newest_pages(readers, commit):
                sums[pgno] = page_checksum(pgno, page)
                writer.write_page(pgno, page)

        def check(path: Path) -> None:
            with open(path, "rb") as fh:
                found = prove_pages(fh, intent)
            if full:
                missing = PageMap.empty(last.page_size).after(commit, found.items()).missing()
                if missing:
                    raise ProofError("proof-snapshot-hole", f"a compaction from TXID 1 lacks page {missing[0]}")

        frames = lz4_frames_at(storage, inputs[-1].key)  # the form of the file it continues
        size, file_checksum, _ = build_and_publish(
            storage, key, header, write, check, created_ms=header.timestamp, lz4_frames=frames
        )
    head, tail = _recorded(storage, inputs[0]), _recorded(storage, inputs[-1])
    if head is not None and tail is not None:  # the merge reaches what its last input reached
        ledger.put(
            storage,
            ledger.Record(
                level, first, final, last.page_size, commit, len(sums), file_checksum, head.before, tail.after
            ),
        )
    return key, size


def snapshot(storage: Storage, state: PageMap, txid: int) -> tuple[str, int] | None:
    """A level-9 snapshot of the replica at `txid` (its latest), proven to reach `state`."""
    listing = list_replica(storage)
    if any(f.max_txid == txid for f in listing.level(SNAPSHOT_LEVEL)):
        return None
    plan = restore_plan(listing.files)
    if plan[-1].max_txid != txid:
        return None  # the replica moved on since the state was recorded: next time
    from ltxkit.restore import restore_into

    last = parse_header(storage.read_range(plan[-1].key, 0, HEADER_SIZE))
    with tempfile.TemporaryFile() as db:
        result = restore_into(storage, plan, db)
        page_size, commit = result.page_size, result.commit
        lock = lock_pgno(page_size)
        sums: dict[int, int] = {}

        def pages(writer: LTXWriter) -> None:
            for pgno in range(1, commit + 1):
                if pgno == lock:
                    continue
                page = os.pread(db.fileno(), page_size, (pgno - 1) * page_size)
                sums[pgno] = page_checksum(pgno, page)
                writer.write_page(pgno, page)

        header = Header.snapshot(page_size, commit, txid, last.timestamp, checksums=False)
        key = storage.layout.key(SNAPSHOT_LEVEL, 1, txid)

        def check(path: Path) -> None:
            intent = Intent(txid, page_size, commit, True, sums, state.checksum(), first_txid=1)
            with open(path, "rb") as fh:
                prove(fh, intent, None)

        frames = lz4_frames_at(storage, plan[-1].key)
        size, file_checksum, _ = build_and_publish(
            storage, key, header, pages, check, created_ms=header.timestamp, lz4_frames=frames
        )
        ledger.put(
            storage,
            ledger.Record(SNAPSHOT_LEVEL, 1, txid, page_size, commit, len(sums), file_checksum, None, state.checksum()),
        )
        return key, size


def retention(storage: Storage, policy: Policy, *, now_ms: int | None = None) -> list[str]:
    """Delete what retention allows and no restore needs; the keys deleted."""
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    listing = list_replica(storage)
    doomed: list[ReplicaFile] = []
    snaps = listing.level(SNAPSHOT_LEVEL)
    cutoff = now_ms - int(policy.snapshot_retention_s * 1000)
    old = [f for f in snaps[:-1] if f.created_ms < cutoff]
    doomed += old
    kept = [f for f in snaps if f not in old]
    if kept:
        floor = min(f.max_txid for f in kept)
        for level in range(1, SNAPSHOT_LEVEL):
            files = listing.level(level)
            doomed += [f for f in files[:-1] if f.max_txid < floor]
    l1_max = max((f.max_txid for f in listing.level(1)), default=0)
    if l1_max:
        l0_cutoff = now_ms - int(policy.l0_retention_s * 1000)
        l0 = listing.level(0)
        for f in l0[:-1]:
            if f.created_ms >= l0_cutoff:
                break
            if f.max_txid <= l1_max:
                doomed.append(f)
    if not doomed:
        return []
    gone = {f.key for f in doomed}
    remaining = [f for f in listing.files if f.key not in gone]
    try:
        plan = restore_plan(remaining)
    except PlanError:
        return []  # something would no longer restore: delete nothing
    if plan[-1].max_txid != listing.max_txid or any(f.key in gone for f in plan):
        return []
    storage.delete(sorted(gone))
    records = {ledger.key(f.level, f.min_txid, f.max_txid) for f in doomed}
    storage.delete(sorted(records))  # a record without its file vouches for nothing
    return sorted(gone)
