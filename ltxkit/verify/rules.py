"""Replica rules: what the files of one replica must satisfy together, following Litestream's
restore plan (page sizes, TXID overlaps and gaps, checksum chains, growth pages, and whether the
latest restore plan holds every page), reasoned from headers and page indexes alone."""

from __future__ import annotations

import itertools
from collections.abc import Callable

from ltxkit.format.errors import Code
from ltxkit.format.schema import Header, lock_pgno, missing_among, missing_pages
from ltxkit.replica.layout import SNAPSHOT_LEVEL, Listing, PlanError, ReplicaFile, plan_ending_at, restore_plan
from ltxkit.verify.findings import FileCheck, Finding, ReplicaSummary, Severity, WindowEnd


def plan_has_errors(
    summary: ReplicaSummary, checks: dict[str, FileCheck], *, besides: frozenset[Code] = frozenset()
) -> bool:
    """Does an error name a file of the latest restore plan (its own defect, or a rule it breaks)?
    Errors with a code in `besides` do not count."""
    paths = {checks[key].path for key in summary.plan}
    return any(f.severity == Severity.ERROR for key in summary.plan for f in checks[key].findings) or any(
        f.severity == Severity.ERROR and f.path in paths and f.code not in besides for f in summary.findings
    )


def check_page_sizes(files: list[ReplicaFile], checks: dict[str, FileCheck], add: Callable[[Finding], None]) -> None:
    if not files:
        return
    newest = max(files, key=lambda f: (f.max_txid, f.level))
    want = checks[newest.key].known_header.page_size
    for f in files:
        got = checks[f.key].known_header.page_size
        if got != want:
            add(
                Finding(
                    Code.PAGE_SIZE_MISMATCH,
                    checks[f.key].path,
                    f"page size {got}, the replica's newest file has {want}",
                    {"level": f.level},
                )
            )


def check_overlaps(listing: Listing, checks: dict[str, FileCheck], add: Callable[[Finding], None]) -> None:
    for level in range(SNAPSHOT_LEVEL):  # level-9 snapshots all start at TXID 1 by design
        prev: ReplicaFile | None = None
        for f in listing.level(level):
            if prev is not None and f.min_txid <= prev.max_txid:
                add(
                    Finding(
                        Code.TXID_OVERLAP,
                        checks[f.key].path,
                        f"TXIDs {f.min_txid:016x}-{f.max_txid:016x} overlap {prev.name} at level {level}",
                        {"level": level, "min_txid": f.min_txid, "max_txid": f.max_txid},
                    )
                )
            if prev is None or f.max_txid > prev.max_txid:
                prev = f


def check_chain(
    files: list[ReplicaFile], checks: dict[str, FileCheck], add: Callable[[Finding], None], label: str
) -> None:
    """Consecutive files of one level: checksum chain, and growth must bring its new pages."""
    for a, b in itertools.pairwise(files):
        if b.min_txid != a.max_txid + 1:
            continue
        ha, hb = checks[a.key].header, checks[b.key].header
        assert ha is not None and hb is not None
        _check_pair(a, b, ha, hb, checks, add)


def _check_pair(
    a: ReplicaFile,
    b: ReplicaFile,
    ha: Header,
    hb: Header,
    checks: dict[str, FileCheck],
    add: Callable[[Finding], None],
) -> None:
    cb = checks[b.key]
    ta = checks[a.key].trailer
    tracked = not ha.no_checksum and not hb.no_checksum and not hb.is_snapshot
    if tracked and ta is not None and hb.pre_apply_checksum != ta.post_apply_checksum:
        add(
            Finding(
                Code.CHECKSUM_CHAIN_BREAK,
                cb.path,
                f"pre-apply checksum {hb.pre_apply_checksum:016x} does not match the post-apply checksum "
                f"{ta.post_apply_checksum:016x} of {a.name}",
                {"level": b.level, "min_txid": b.min_txid, "max_txid": b.max_txid},
            )
        )
    if hb.commit > ha.commit and not hb.is_snapshot and not cb.broken:
        lock = lock_pgno(hb.page_size)
        count, first = missing_among(set(cb.pgnos), ha.commit + 1, hb.commit, lock)
        if count:
            if any(f.code == Code.GROWTH_PAGES_MISSING for f in cb.findings):
                return
            cb.findings.append(
                Finding(
                    Code.GROWTH_PAGES_MISSING,
                    cb.path,
                    f"raises commit from {ha.commit} to {hb.commit} but lacks {count} of the new pages "
                    f"(first: {first})",
                    {"level": b.level, "min_txid": b.min_txid, "max_txid": b.max_txid, "pgno": first},
                )
            )


#: restore points a damaged replica's window search tries at each end before it gives up (each try
#: is a plan and its page count: a replica whose every point is damaged must not take minutes)
MAX_WINDOW_PROBES = 256


def _restores(plan: list[ReplicaFile], checks: dict[str, FileCheck]) -> bool:
    """Does this plan give a database: every file sound, every page up to its commit held?"""
    if any(checks[f.key].broken or checks[f.key].header is None for f in plan):
        return False
    last = checks[plan[-1].key].known_header
    count, _first = _plan_missing([checks[f.key].pgnos for f in plan], last.commit, lock_pgno(last.page_size))
    return count == 0


def _restore_point(files: list[ReplicaFile], checks: dict[str, FileCheck], txid: int) -> WindowEnd | None:
    """`txid` as a window end, when a restore can stop exactly there and gives a database."""
    plan = plan_ending_at(files, txid)
    if plan is None or not _restores(plan, checks):
        return None
    return WindowEnd.after(txid, plan[-1])


def _first_point(files: list[ReplicaFile], checks: dict[str, FileCheck], txids: list[int]) -> WindowEnd | None:
    for txid in txids[:MAX_WINDOW_PROBES]:
        point = _restore_point(files, checks, txid)
        if point is not None:
            return point
    return None


def restorable_window(
    files: list[ReplicaFile], checks: dict[str, FileCheck], latest: list[ReplicaFile], *, latest_restores: bool
) -> tuple[WindowEnd | None, WindowEnd | None]:
    """The oldest and newest restore points that restore. The newest is the end of the latest
    plan (`latest`) when it restores (`latest_restores`, which the caller has just checked), else
    the nearest point below its first damaged file (or below its end, when no file is to blame)
    that restores. The oldest: every restore starts from a file that begins at TXID 1, so the
    smallest such file's end whose own plan restores. (None, None) when no point is found."""
    last = latest[-1]
    if latest_restores:
        return _window_ending(files, checks, WindowEnd.after(last.max_txid, last))
    damaged = [f.min_txid for f in latest if checks[f.key].broken or checks[f.key].header is None]
    return window_below(files, checks, min(damaged, default=last.max_txid) - 1)


def window_below(
    files: list[ReplicaFile], checks: dict[str, FileCheck], top: int
) -> tuple[WindowEnd | None, WindowEnd | None]:
    """`restorable_window` of the restore points at or below TXID `top`: where the latest one
    cannot be planned at all (a gap in the chain above `top`), the earlier ones may still restore."""
    below = sorted({f.max_txid for f in files if f.max_txid <= top}, reverse=True)
    return _window_ending(files, checks, _first_point(files, checks, below))


def window_through(
    files: list[ReplicaFile], window: tuple[WindowEnd | None, WindowEnd | None], good_txid: int | None
) -> tuple[WindowEnd | None, WindowEnd | None]:
    """The window once SQLite's check failed the latest restore point: it ends at the newest point
    the check saw pass (`good_txid`; None: none passed, and there is no window)."""
    start, end = window
    if good_txid is None or start is None or start.txid > good_txid:
        return None, None
    if end is not None and end.txid <= good_txid:
        return start, end
    plan = plan_ending_at(files, good_txid)
    if plan is None:
        return None, None
    return start, WindowEnd.after(good_txid, plan[-1])


def _window_ending(
    files: list[ReplicaFile], checks: dict[str, FileCheck], end: WindowEnd | None
) -> tuple[WindowEnd | None, WindowEnd | None]:
    if end is None:
        return None, None
    starts = sorted({f.max_txid for f in files if f.min_txid == 1 and f.max_txid <= end.txid})
    start = _first_point(files, checks, starts)
    return (_earliest_time(files, checks, start, end.txid), end) if start is not None else (None, None)


def _earliest_time(files: list[ReplicaFile], checks: dict[str, FileCheck], start: WindowEnd, top: int) -> WindowEnd:
    """`start` at the earliest time a `--timestamp` restore succeeds: the first millisecond after
    the creation of a file that starts at TXID 1 (every restore begins with one, created strictly
    before its time) whose restore restores. The oldest point's own plan may begin with a later
    file (Litestream's first snapshot, taken after the L0 file it covers, or a snapshot a repair
    made), and a restore at a file's own creation time leaves the file out."""
    firsts = sorted((f for f in files if f.min_txid == 1 and f.max_txid <= top), key=lambda f: f.created_ns)
    for f in firsts[:MAX_WINDOW_PROBES]:
        earliest = WindowEnd.after(start.txid, f)
        try:
            plan = restore_plan(files, timestamp_ns=earliest.ms * 1_000_000)
        except PlanError:
            continue
        if _restores(plan, checks):
            return earliest
    return start  # already the first millisecond after its own plan's last file


def check_latest(listing: Listing, checks: dict[str, FileCheck], summary: ReplicaSummary, label: str) -> None:
    add = summary.findings.append
    files = listing.files
    reaches: object = None  # where the chain stops, when the latest plan cannot be made
    try:
        plan = restore_plan(files)
    except PlanError as exc:
        add(Finding(exc.code, label, exc.message, dict(exc.context)))
        plan, reaches = None, exc.context.get("have")
    check_gaps(listing, summary, label, plan_ok=plan is not None)
    if plan is None:
        if isinstance(reaches, int):  # a gap: the chain below it may still restore
            summary.window_start, summary.window_end = window_below(files, checks, reaches)
        return
    summary.plan = [f.key for f in plan]
    summary.latest_txid = plan[-1].max_txid
    broken = [f for f in plan if checks[f.key].broken or checks[f.key].header is None]
    if broken:
        add(
            Finding(
                Code.UNRESTORABLE,
                label,
                "the latest restore would read damaged file(s): " + ", ".join(f.key for f in broken),
                {"files": [f.key for f in broken]},
            )
        )
        summary.window_start, summary.window_end = restorable_window(files, checks, plan, latest_restores=False)
        return
    headers = [checks[f.key].known_header for f in plan]  # files without one were `broken` above
    summary.page_size = headers[-1].page_size
    summary.commit = headers[-1].commit
    if not headers[-1].no_checksum:
        check_tracked_end(plan[-1], checks[plan[-1].key], summary, label)
    for a, b, ha, hb in zip(plan, plan[1:], headers, headers[1:], strict=False):
        if b.level != a.level or b.min_txid != a.max_txid + 1:  # same-level pairs were checked already
            _check_pair(a, b, ha, hb, checks, add)
    commit = summary.commit or 0
    lock = lock_pgno(summary.page_size or 4096)
    count, first = _plan_missing([checks[f.key].pgnos for f in plan], commit, lock)
    summary.window_start, summary.window_end = restorable_window(files, checks, plan, latest_restores=count == 0)
    if count:
        add(
            Finding(
                Code.UNRESTORABLE,
                label,
                f"the latest restore (TXID {summary.latest_txid:016x}) lacks {count} of {commit} pages "
                f"(first: page {first}); `litestream restore` fails on it",
                {"txid": summary.latest_txid, "pgno": first},
            )
        )


def _plan_missing(held: list[list[int]], commit: int, lock: int) -> tuple[int, int]:
    """(how many, the first) of pages 1..commit the plan's files (`held`: each one's pgnos) lack.
    Memory follows the pages the files hold, never the commit a header claims (billions, maybe):
    one flag per page up to the highest page held when that is dense enough, else a set."""
    total = sum(map(len, held))
    top = min(commit, max((max(pgnos, default=0) for pgnos in held), default=0))
    if top > 8 * total + (1 << 20):
        return missing_among({p for pgnos in held for p in pgnos}, 1, commit, lock)
    covered = bytearray(top + 1)
    for pgnos in held:
        for p in pgnos:
            if p <= top:
                covered[p] = 1
    return missing_pages(covered, commit, lock)


def check_tracked_end(last: ReplicaFile, check: FileCheck, summary: ReplicaSummary, label: str) -> None:
    """Litestream 0.5.x restores through ltx's compactor, which copies the last file's post-apply
    checksum into an output that may not carry one: a tracked file at the end of the plan makes
    `litestream restore` fail ("post-apply checksum not allowed"). It is the latest restore, so it
    is an error; reported on the replica, not the file, since the file itself is sound."""
    summary.findings.append(
        Finding(
            Code.TRACKED_PLAN_END,
            label,
            f"the latest restore plan ends with {last.key}, a checksum-tracked file (no no-checksum flag): "
            "`litestream restore` 0.5.x refuses it (post-apply checksum not allowed); `ltxkit restore` "
            "can still restore it",
            {"key": last.key, "file": check.path, "txid": last.max_txid},
        )
    )


def check_gaps(listing: Listing, summary: ReplicaSummary, label: str, *, plan_ok: bool) -> None:
    """TXID holes above the oldest snapshot. Holes the latest plan jumps over are warnings."""
    snapshots = listing.level(SNAPSHOT_LEVEL)
    base = min((s.max_txid for s in snapshots), default=0)
    spans = [(f.min_txid, f.max_txid) for f in listing.files if f.level < SNAPSHOT_LEVEL]
    spans += [(s.max_txid, s.max_txid) for s in snapshots]
    spans.sort()
    cur = base
    for lo, hi in spans:
        if hi <= cur:
            continue
        if lo > cur + 1 and cur > 0:
            bridged = plan_ok
            if bridged or not any(f.code == Code.TXID_GAP for f in summary.findings):
                summary.findings.append(
                    Finding(
                        Code.TXID_GAP_BRIDGED if bridged else Code.TXID_GAP,
                        label,
                        f"no file holds TXIDs {cur + 1:016x}..{lo - 1:016x}"
                        + (
                            "; a later snapshot bridges it, but point-in-time restore inside it is lost"
                            if bridged
                            else ""
                        ),
                        {"min_txid": cur + 1, "max_txid": lo - 1},
                    )
                )
        cur = max(cur, hi)
