"""Litestream 0.5.x replica layout and its restore plan.

A replica holds one file per key of its `KeyLayout` (`ltx/<level>/<min>-<max>.ltx` in a directory).
Level 0 holds each sync's file, levels 1..8 hold
compactions of the level below, level 9 holds full snapshots. `restore_plan` reproduces
Litestream's own choice of files (CalcRestorePlan), so ltxkit restores and verifies exactly what
`litestream restore` would use.
"""

from __future__ import annotations

import heapq
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from ltxkit.errors import LtxkitError
from ltxkit.format.errors import Code
from ltxkit.format.schema import format_filename
from ltxkit.replica.keys import SNAPSHOT_LEVEL
from ltxkit.replica.storage import Entry, Storage
from ltxkit.workers import thread_pool

__all__ = ["SNAPSHOT_LEVEL", "Listing", "PlanError", "ReplicaFile", "list_replica", "restore_plan"]


@dataclass(frozen=True, slots=True)
class ReplicaFile:
    """One LTX file as the listing sees it (name, level, size, creation time); nothing read yet."""

    level: int
    min_txid: int
    max_txid: int
    key: str
    size: int
    created_ns: int  # the storage's creation time (`Entry.created_ns`)

    @property
    def name(self) -> str:
        return format_filename(self.min_txid, self.max_txid)

    @property
    def created_ms(self) -> int:
        """Litestream's CreatedAt: a file's mtime (which it sets to the header timestamp), an
        object's `litestream-timestamp` metadata."""
        return self.created_ns // 1_000_000

    def describe(self) -> str:
        return f"L{self.level} {self.min_txid:016x}-{self.max_txid:016x}"


@dataclass(slots=True)
class Listing:
    files: list[ReplicaFile] = field(default_factory=list)
    stray: list[Entry] = field(default_factory=list)
    not_files: list[Entry] = field(default_factory=list)  # LTX names that are no readable file
    unreadable: list[Entry] = field(default_factory=list)  # directories that could not be listed

    @property
    def entries(self) -> list[Entry]:
        """Everything the listing saw that is not an LTX file (for comparing two listings)."""
        return self.stray + self.not_files + self.unreadable

    def level(self, level: int) -> list[ReplicaFile]:
        return [f for f in self.files if f.level == level]

    @property
    def max_txid(self) -> int:
        return max((f.max_txid for f in self.files), default=0)


def list_replica(storage: Storage, *, top: frozenset[str] | None = None) -> Listing:
    """Sort every key of the storage's LTX area into files by level, and strays (temp files, odd
    names); an LTX name that is no readable file (a directory, a dangling link) and a directory
    that cannot be listed are kept apart, never dropped: Litestream sees the first and misses
    what the second holds.

    On an object store only the levels present are listed (`Storage.top_names`, or `top` when
    the caller has just listed it)."""
    out = Listing()
    layout = storage.layout
    areas = list(layout.areas())
    top = top if top is not None else storage.top_names()
    if top is not None:
        areas = [area for area in areas if area.rstrip("/").rsplit("/", 1)[-1] in top]
    listings: Iterable[list[Entry]]
    if storage.concurrency > 1 and len(areas) > 1:  # an object store: one round trip per level at once
        with thread_pool(len(areas), "ltxkit-list") as pool:
            listings = list(pool.map(storage.list, areas))
    else:
        listings = map(storage.list, areas)
    for entries in listings:
        for entry in entries:
            if entry.directory or (entry.problem is not None and layout.level_of_dir(entry.key) is not None):
                out.unreadable.append(entry)
                continue
            parsed = layout.parse(entry.key)
            if entry.problem is not None:
                (out.stray if parsed is None else out.not_files).append(entry)
                continue
            if parsed is None:
                out.stray.append(entry)
                continue
            level, min_txid, max_txid = parsed
            out.files.append(ReplicaFile(level, min_txid, max_txid, entry.key, entry.size, entry.created_ns))
    out.files.sort(key=lambda f: (f.level, f.min_txid, f.max_txid))
    return out


class PlanError(LtxkitError):
    """No restore plan can be made; `code` is the verify code for the same condition."""

    code: Code

    def __init__(self, code: Code, message: str, **context: object) -> None:
        super().__init__(message, code=code)
        self.context = context


def _extend_chain(plan: list[ReplicaFile], candidates: list[ReplicaFile], current: int, txid: int | None) -> int:
    """Append to `plan` Litestream's furthest-reaching files from `current` on; return where it ends.

    Litestream rescans every file at each step; a replica of many small L0 files makes that
    quadratic. Since `current` only grows, a file that may start the next step stays eligible by
    its start for good: sweep the files by min_txid into a heap ordered by Litestream's preference
    (reach furthest, then start earliest, then higher level, then older), and drop the ones that
    no longer reach past `current` as they surface.
    """
    by_start = sorted(candidates, key=lambda f: f.min_txid)
    heap: list[tuple[int, int, int, int, int, ReplicaFile]] = []
    i = 0
    while True:
        while i < len(by_start) and by_start[i].min_txid <= current + 1:
            f = by_start[i]
            heapq.heappush(heap, (-f.max_txid, f.min_txid, -f.level, f.created_ns, i, f))
            i += 1
        while heap and heap[0][5].max_txid <= current:
            heapq.heappop(heap)
        if not heap:
            return current
        best = heapq.heappop(heap)[5]
        plan.append(best)
        current = best.max_txid
        if txid is not None and current >= txid:
            return current


def first_ms_after(created_ns: int) -> int:
    """The first millisecond at which a `--timestamp` restore reads a file created at
    `created_ns`: as Litestream's, a restore reads the files created strictly before its time."""
    return created_ns // 1_000_000 + 1


def _earliest_time(files: list[ReplicaFile]) -> str:
    """ ": the earliest restorable time is ...", from the files a restore can start with."""
    starts = [f.created_ns for f in files if f.level == SNAPSHOT_LEVEL or f.min_txid == 1]
    if not starts:
        return ""
    return f": the earliest restorable time is just after {_rfc3339(min(starts))}"


class NoZone(ValueError):
    """An RFC 3339 time without its zone."""


def rfc3339_ns(text: str) -> int:
    """An RFC 3339 time as nanoseconds since the epoch, in integers all the way: Litestream
    compares restore times with file times in nanoseconds, and a float (or Python's datetime,
    which keeps microseconds) would move `...22.475Z` to `...22.474999808` and put a file created
    at exactly the target on the wrong side of it. ValueError when malformed, NoZone without a zone."""
    fraction = re.search(r"[.,](\d+)", text)
    whole = text if fraction is None else text[: fraction.start()] + text[fraction.end() :]
    if not any(sep in text for sep in "Tt "):  # a date alone is no time (and Python reads "2026-01-02Z" as one)
        raise ValueError(text)
    if fraction is not None and len(fraction.group(1)) > 9:
        raise ValueError(text)
    ts = datetime.fromisoformat(whole.replace("Z", "+00:00").replace("z", "+00:00"))
    if ts.tzinfo is None:
        raise NoZone(text)
    nanos = int(fraction.group(1).ljust(9, "0")) if fraction is not None else 0
    return int(ts.timestamp()) * 1_000_000_000 + nanos


def _rfc3339(ns: int) -> str:
    """`ns` since the epoch as RFC 3339 in UTC with every digit kept (a restore time is compared to it)."""
    seconds, frac = divmod(ns, 1_000_000_000)
    stamp = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    digits = f"{frac:09d}".rstrip("0")
    return f"{stamp}.{digits}Z" if digits else f"{stamp}Z"


#: Where Litestream 0.3 kept its backups; Litestream 0.5 still restores from them (see
#: `Code.LEGACY_GENERATIONS`). ltxkit does not read them.
LEGACY_GENERATIONS_DIR = "generations"


def holds_legacy_generations(storage: Storage, *, top: frozenset[str] | None = None) -> bool:
    """Does the replica also hold Litestream 0.3 backups (see `LEGACY_GENERATIONS_NOTE`)? `top`:
    the replica's top names, when the caller has them (`Storage.top_names`)."""
    if top is not None:
        return LEGACY_GENERATIONS_DIR in top
    return storage.has_any(f"{LEGACY_GENERATIONS_DIR}/")


LEGACY_GENERATIONS_NOTE = (
    "Litestream 0.3 backups (generations/) lie beside ltx/: litestream restore 0.5 restores from them "
    "when their newest snapshot or WAL segment is newer than the newest LTX file (with -timestamp: when "
    "their best snapshot before it is newer than the best LTX snapshot); ltxkit reads only ltx/, so the "
    "two restores may differ. Remove generations/ once the LTX replica is the one you restore from"
)


def plan_ending_at(files: list[ReplicaFile], txid: int) -> list[ReplicaFile] | None:
    """Litestream's plan for exactly `txid`, or None when no restore can end there (a TXID that
    compaction merged into a larger file, or one past a gap): what makes `txid` a restore point."""
    try:
        plan = restore_plan(files, txid=txid)
    except PlanError:
        return None
    return plan if plan[-1].max_txid == txid else None


def restore_plan(
    files: list[ReplicaFile],
    *,
    txid: int | None = None,
    timestamp_ns: int | None = None,
    listed_newest_ns: int | None = None,
) -> list[ReplicaFile]:
    """The files Litestream would merge to restore `txid` / `timestamp_ns` (None: the latest state).

    Newest eligible level-9 snapshot first, then from levels 0..8 together, repeatedly the file
    that starts at or before current+1 and reaches furthest. Raises PlanError like Litestream
    refuses: no files, a gap before the newest file (latest restore), the target not reached, or
    a time after the newest file's (Litestream's "timestamp does not exist": the replica cannot
    say what the database held then). Times compare in nanoseconds, as Litestream's do: a file
    created 0.4 ms before the target is in the plan. `listed_newest_ns`: the newest time the
    replica's listing shows, where it is not the files' creation times (an object store lists
    upload times, whole seconds): a target up to it is not "too recent", as for Litestream.

    Unlike Litestream, a target up to the first millisecond after the newest file is not too
    recent either: a restore reads the files created strictly before its time, so with
    Litestream's bound no time reaches the newest file, and the latest state has no time at all.
    """

    def eligible(f: ReplicaFile) -> bool:
        if txid is not None and f.max_txid > txid:
            return False
        return timestamp_ns is None or f.created_ns < timestamp_ns

    if timestamp_ns is not None and files:
        newest = max(files, key=lambda f: f.created_ns)
        latest_ns = first_ms_after(newest.created_ns) * 1_000_000
        if timestamp_ns > max(latest_ns, listed_newest_ns or 0):
            raise PlanError(
                Code.UNRESTORABLE,
                f"no restore point is that recent: the newest file ({newest.key}) was created at "
                f"{_rfc3339(newest.created_ns)}, and {_rfc3339(latest_ns)} restores the latest state",
                key=newest.key,
            )

    plan: list[ReplicaFile] = []
    snapshot = None
    for f in files:
        if (
            f.level == SNAPSHOT_LEVEL
            and eligible(f)
            and (snapshot is None or (f.min_txid, f.max_txid) >= (snapshot.min_txid, snapshot.max_txid))
        ):
            snapshot = f
    current = 0
    if snapshot is not None:
        plan.append(snapshot)
        current = snapshot.max_txid
    lower = [f for f in files if f.level < SNAPSHOT_LEVEL]
    if txid is None or current < txid:
        current = _extend_chain(plan, [f for f in lower if eligible(f)], current, txid)
    if plan and txid is None and timestamp_ns is None:
        beyond = [f for f in lower if f.min_txid > current + 1]
        if beyond:
            nxt = min(beyond, key=lambda f: f.min_txid)
            raise PlanError(
                Code.TXID_GAP,
                f"non-contiguous transaction files: have up to {current:016x} but next file "
                f"starts at {nxt.min_txid:016x} ({nxt.key})",
                have=current,
                next_min_txid=nxt.min_txid,
                key=nxt.key,
            )
    if not plan:
        if not files:
            raise PlanError(Code.NO_SNAPSHOT, "replica holds no LTX files")
        first = min(files, key=lambda f: f.min_txid)
        if txid is not None:
            why = f"no file that a restore can start from ends at or before TXID {txid:016x}"
        elif timestamp_ns is not None:
            why = "no restore point is that old" + _earliest_time(files)
        else:
            why = (
                f"no snapshot to start from: the oldest file starts at TXID "
                f"{first.min_txid:016x} and there is no level-9 snapshot"
            )
        raise PlanError(Code.NO_SNAPSHOT, why, key=first.key)
    if txid is not None and current < txid:
        raise PlanError(
            Code.UNRESTORABLE, f"TXID {txid:016x} is not available (the chain reaches {current:016x})", have=current
        )
    return plan
