"""Content checks: does a restore point give a database SQLite accepts?

Structure is not truth. Every file of a replica can be well-formed, every checksum right and the
chain complete, and the restored database still be corrupt: an increment written after a restart
can lack a page that an application checkpoint had already moved into the database (the #752
family), and nothing in the LTX files says so. The one witness is SQLite, so verify restores a
restore point into a temporary file (outside the replica) and runs `PRAGMA quick_check` on it, or
the full `integrity_check` with `--deep`.

When the latest restore point fails, `check_content` bisects the replica's restore points (each
probe a restore plus a check) for the last TXID whose database passes and the first that fails,
and names the file that first brought the damage in: what a user restores with
`ltxkit restore --txid`, and what repair quarantines. The bisection assumes damage, once in, stays
in the chain until a newer snapshot replaces it; it finds *a* boundary between a good and a bad
restore point, the latest such one when damage came in once. A probe that loses a file to
retention while it restores says nothing about its point: the search stops there
(`search_stopped`) rather than count it bad, which would put the boundary too early and have
repair set aside good increments.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from ltxkit.replica.layout import ReplicaFile, plan_ending_at
from ltxkit.replica.storage import Storage

Note = Callable[[str], None]  # a line of progress for a person watching
SAID_LINES = 3  # SQLite's complaints shown in one line; JSON carries up to 20 rows


class CheckMode(StrEnum):
    """Which SQLite check a restore point must pass."""

    QUICK = "quick"  # PRAGMA quick_check: b-tree structure and record formats, no index cross-check
    FULL = "full"  # PRAGMA integrity_check: also every index against its table

    @property
    def pragma(self) -> str:
        return "quick_check" if self is CheckMode.QUICK else "integrity_check"


@dataclass(slots=True)
class PointCheck:
    """One restore point restored and checked."""

    txid: int
    last_key: str  # the plan's last file: the one that brought this restore point in
    problems: list[str] = field(default_factory=list)  # what SQLite said (empty: ok)
    restore_error: str | None = None  # the restore itself failed
    vanished: str | None = None  # ... because this file was deleted meanwhile (retention): not damage

    @property
    def ok(self) -> bool:
        return not self.problems and self.restore_error is None

    @property
    def said(self) -> str:
        """What went wrong, in one line."""
        if self.restore_error is not None:
            return f"restore failed: {self.restore_error}"
        if not self.problems:
            return "ok"
        lines = [ln for ln in self.lines if not ln.startswith("***")] or self.lines
        more = f" (+{len(lines) - SAID_LINES} more)" if len(lines) > SAID_LINES else ""
        return "; ".join(lines[:SAID_LINES]) + more

    @property
    def lines(self) -> list[str]:
        """What SQLite said, a line each: it may put several complaints in one row, under a
        "*** in database main ***" banner."""
        return [ln for row in self.problems for ln in row.splitlines() if ln]


@dataclass(slots=True)
class ContentVerdict:
    """The latest restore point's check and, when it fails, where the replica went bad."""

    mode: CheckMode
    latest: PointCheck
    last_good: PointCheck | None = None
    first_bad: PointCheck | None = None
    probes: list[PointCheck] = field(default_factory=list)  # every restore point checked, in order
    # a probe whose file was deleted while it was restored (retention at work): the search stopped
    # there, so `last_good` is a point that passes but maybe not the last, `first_bad` one that
    # fails but maybe not the first, and no point is known to be the boundary
    search_stopped: PointCheck | None = None

    @property
    def ok(self) -> bool:
        return self.latest.ok

    def to_json(self) -> dict[str, Any]:
        return {
            "checked": True,
            "mode": str(self.mode),
            "check": self.mode.pragma,
            "txid": f"{self.latest.txid:016x}",
            "ok": self.ok,
            "sqlite": self.latest.lines[:20],
            "restore_error": self.latest.restore_error,
            "last_good_txid": f"{self.last_good.txid:016x}" if self.last_good else None,
            "first_bad_txid": f"{self.first_bad.txid:016x}" if self.first_bad else None,
            "first_bad_file": self.first_bad.last_key if self.first_bad else None,
            "search_stopped_by": self.search_stopped.vanished if self.search_stopped else None,
            "restore_points_checked": [f"{p.txid:016x}" for p in self.probes],
        }


def check_point(storage: Storage, plan: list[ReplicaFile], db: Path, mode: CheckMode, *, jobs: int = 1) -> PointCheck:
    """Restore `plan` into `db` (a scratch path, replaced) and run SQLite's check on it."""
    from ltxkit.restore import RestoreError, Vanished, restore_into  # restore imports verify's neighbours
    from ltxkit.sqlite import integrity_check

    point = PointCheck(plan[-1].max_txid, plan[-1].key)
    try:
        with db.open("wb") as out:
            restore_into(storage, plan, out, jobs=jobs)
    except RestoreError as exc:
        point.restore_error = exc.message
        point.vanished = exc.key if isinstance(exc, Vanished) else None
        return point
    point.problems = integrity_check(db, quick=mode is CheckMode.QUICK)
    return point


_scratch: list[str] = []  # the process's one directory for restore points, once made
_scratch_lock = threading.Lock()


def _scratch_dir() -> str:
    """Where content checks restore: one directory per process, removed when it exits.

    A fleet verify checks replicas on daemon threads, which an interrupted run does not wait
    for: one may be making its restore point's directory while the process exits. Made inside
    this one, it is removed with it; made after it (the removal came first), it fails instead
    of staying behind in $TMPDIR."""
    with _scratch_lock:
        if not _scratch:
            _scratch.append(tempfile.mkdtemp(prefix="ltxkit-verify-"))
            atexit.register(_remove_scratch)
        return _scratch[0]


def _remove_scratch() -> None:
    for _ in range(10):  # a thread may still be adding to it: again until it is gone
        shutil.rmtree(_scratch[0], ignore_errors=True)
        if not os.path.lexists(_scratch[0]):
            return


def check_content(
    storage: Storage,
    files: list[ReplicaFile],
    latest_plan: list[ReplicaFile],
    mode: CheckMode,
    *,
    jobs: int = 1,
    note: Note | None = None,
) -> ContentVerdict:
    """Check the latest restore point; if it fails, bisect for the last good and first bad ones."""
    # a failed cleanup is left to `_remove_scratch`: after an interrupt it races this (daemon)
    # thread, and an error here was printed after "interrupted", the run's last line
    with tempfile.TemporaryDirectory(prefix="point-", dir=_scratch_dir(), ignore_cleanup_errors=True) as tmp:
        db = Path(tmp) / "restore-point.db"
        probes: list[PointCheck] = []

        def probe(plan: list[ReplicaFile]) -> PointCheck:
            if note is not None:
                note(f"checking TXID {plan[-1].max_txid:016x}: restore + {mode.pragma}")
            point = check_point(storage, plan, db, mode, jobs=jobs)
            probes.append(point)
            return point

        verdict = ContentVerdict(mode, probe(latest_plan), probes=probes)
        if verdict.latest.ok:
            return verdict
        _bisect(files, verdict, probe)
    return verdict


def _bisect(
    files: list[ReplicaFile], verdict: ContentVerdict, probe: Callable[[list[ReplicaFile]], PointCheck]
) -> None:
    """Narrow (known good, known bad) down to two neighbouring restore points."""
    latest = verdict.latest.txid
    candidates = sorted({f.max_txid for f in files if f.max_txid < latest})
    plans: dict[int, list[ReplicaFile]] = {}

    def plan_of(i: int) -> list[ReplicaFile] | None:
        txid = candidates[i]
        if txid not in plans:
            plan = plan_ending_at(files, txid)
            if plan is None:
                return None
            plans[txid] = plan
        return plans[txid]

    bad = verdict.latest
    hi = len(candidates)  # index of the known-bad point (the latest sits just past the candidates)
    lo = 0
    good: PointCheck | None = None
    # the earliest restore point: if it fails too, no restore point is good
    while lo < hi and plan_of(lo) is None:
        lo += 1
    if lo == hi:
        verdict.first_bad = bad
        return
    first_plan = plan_of(lo)
    assert first_plan is not None  # the loop above stopped on a restore point
    first = probe(first_plan)
    if first.vanished is not None:  # not a verdict on that point: nothing is known of it
        verdict.search_stopped, verdict.first_bad = first, bad
        return
    if not first.ok:
        verdict.first_bad = first
        return
    good = first
    while hi - lo > 1:
        mid = (lo + hi) // 2
        # a TXID no restore can end at is skipped: look for the nearest real restore point
        m = mid
        while m < hi and plan_of(m) is None:
            m += 1
        if m == hi:
            m = mid - 1
            while m > lo and plan_of(m) is None:
                m -= 1
            if m == lo:
                break
        plan = plan_of(m)
        assert plan is not None  # the search above stopped on a restore point
        point = probe(plan)
        if point.vanished is not None:  # retention moved the replica under the search: stop here
            verdict.search_stopped = point
            break
        if point.ok:
            lo, good = m, point
        else:
            hi, bad = m, point
    verdict.last_good = good
    verdict.first_bad = bad
