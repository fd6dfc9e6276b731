"""The verify engine: file checks, replica checks, findings.

File checks decode each file strictly (or, with `quick`, read only header, page index and trailer).
Replica checks then reason over what the files hold — their TXID ranges, commits and page
numbers — following Litestream's restore plan, so the latest state is proven restorable from
page indexes alone, without writing a database. The content check (`content`, and `deep` for
the full `integrity_check`) then restores the latest state into a temporary directory outside
the replica and asks SQLite whether it is a sound database (`verify.content`).
Nothing here writes inside a replica or next to a verified file.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import itertools
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from ltxkit.errors import UsageError
from ltxkit.format.decoder import LTXReader, page_number_defects, read_header, read_page_index
from ltxkit.format.errors import FATAL_CODES, WARNING_CODES, Code, LTXError
from ltxkit.format.schema import Header, Trailer, lock_pgno, parse_filename
from ltxkit.replica.keys import LTX_DIR
from ltxkit.replica.layout import SNAPSHOT_LEVEL, Listing, PlanError, ReplicaFile, list_replica, restore_plan
from ltxkit.replica.storage import ReplicaNotFound, Storage, open_storage
from ltxkit.verify.content import CheckMode, ContentVerdict, Note, check_content
from ltxkit.workers import can_fork, fork_pool


class Severity(StrEnum):
    ERROR = "error"
    WARNING = "warning"


TXID_KEYS = frozenset({"min_txid", "max_txid", "txid", "have", "next_min_txid", "last_good_txid", "first_bad_txid"})


@dataclass(slots=True)
class Finding:
    code: Code
    path: str
    message: str
    context: dict[str, Any] = field(default_factory=dict)

    @property
    def severity(self) -> Severity:
        return Severity.WARNING if self.code in WARNING_CODES else Severity.ERROR

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "code": str(self.code),
            "severity": str(self.severity),
            "path": self.path,
            "message": self.message,
        }
        for k, v in self.context.items():
            if k in TXID_KEYS and isinstance(v, int):
                v = f"{v:016x}"
            out[k] = v
        return out


@dataclass(slots=True)
class FileCheck:
    """What one file holds and what is wrong with it."""

    path: str
    key: str | None = None
    level: int | None = None
    size: int = 0
    header: Header | None = None
    trailer: Trailer | None = None
    pgnos: list[int] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    broken: bool = False  # a structural defect: its pages cannot be trusted

    @property
    def known_header(self) -> Header:
        """The header, where the caller has already kept only files whose header was read."""
        if self.header is None:
            raise ValueError(f"{self.path}: header was not read")
        return self.header

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "level": self.level,
            "size": self.size,
            "min_txid": f"{self.header.min_txid:016x}" if self.header else None,
            "max_txid": f"{self.header.max_txid:016x}" if self.header else None,
            "commit": self.header.commit if self.header else None,
            "page_count": len(self.pgnos),
            "ok": not self.findings,
        }


@dataclass(slots=True)
class ReplicaSummary:
    path: str
    files: list[FileCheck]
    listing: Listing
    findings: list[Finding] = field(default_factory=list)
    latest_txid: int | None = None
    page_size: int | None = None
    commit: int | None = None
    plan: list[str] = field(default_factory=list)
    content: ContentVerdict | None = None
    content_skipped: str | None = None  # why the content was not checked

    def to_json(self) -> dict[str, Any]:
        levels: dict[str, Any] = {}
        for fc in self.files:
            lv = levels.setdefault(str(fc.level), {"files": 0, "bytes": 0, "min_txid": None, "max_txid": None})
            lv["files"] += 1
            lv["bytes"] += fc.size
        for level, lv in levels.items():
            fs = self.listing.level(int(level))
            lv["min_txid"] = f"{min(f.min_txid for f in fs):016x}" if fs else None
            lv["max_txid"] = f"{max(f.max_txid for f in fs):016x}" if fs else None
        return {
            "path": self.path,
            "ok": not any(f.severity == Severity.ERROR for f in self.findings)
            and not any(f.severity == Severity.ERROR for fc in self.files for f in fc.findings),
            "files": len(self.files),
            "bytes": sum(fc.size for fc in self.files),
            "levels": levels,
            "snapshots": len(self.listing.level(SNAPSHOT_LEVEL)),
            "min_txid": f"{min((f.min_txid for f in self.listing.files), default=0):016x}",
            "max_txid": f"{self.listing.max_txid:016x}",
            "latest_txid": f"{self.latest_txid:016x}" if self.latest_txid is not None else None,
            "page_size": self.page_size,
            "commit": self.commit,
            "restore_plan": self.plan,
            "content": self.content.to_json()
            if self.content is not None
            else {"checked": False, "why": self.content_skipped},
        }


@dataclass(slots=True)
class Report:
    files: list[FileCheck] = field(default_factory=list)  # loose files given on the command line
    replicas: list[ReplicaSummary] = field(default_factory=list)

    @property
    def findings(self) -> list[Finding]:
        out: list[Finding] = []
        for fc in self.files:
            out.extend(fc.findings)
        for r in self.replicas:
            for fc in r.files:
                out.extend(fc.findings)
            out.extend(r.findings)
        return out

    def failed(self, fail_on: Severity = Severity.ERROR) -> bool:
        levels = {Severity.ERROR} if fail_on == Severity.ERROR else {Severity.ERROR, Severity.WARNING}
        return any(f.severity in levels for f in self.findings)

    def to_json(self, fail_on: Severity = Severity.ERROR) -> dict[str, Any]:
        return {
            "ok": not self.failed(fail_on),
            "findings": [f.to_json() for f in self.findings],
            "files": [fc.to_json() for fc in self.files],
            "replicas": [r.to_json() for r in self.replicas],
        }


ProgressHook = Callable[[str, int], None]  # (path, bytes done for that file)


# ---- file checks ------------------------------------------------------------------------------


def check_file(
    opener: Callable[[], Any], path: str, size: int, *, name: str | None, level: int | None, quick: bool
) -> FileCheck:
    """Check one file. `name` (its base name) enables the filename-mismatch check."""
    fc = FileCheck(path=path, level=level, size=size)

    def add(err: LTXError) -> None:
        ctx = dict(err.context)
        if err.offset is not None:
            ctx["offset"] = err.offset
        fc.findings.append(Finding(err.code, path, err.message, ctx))

    try:
        with opener() as stream:
            if quick:
                fc.header = read_header(stream)
                entries, fc.trailer = read_page_index(stream, size)
                fc.pgnos = [e.pgno for e in entries]
                for err in page_number_defects(fc.header, entries):
                    add(err)
                problems = fc.trailer.problems(fc.header)
                if problems:
                    add(LTXError(Code.BAD_TRAILER, "; ".join(problems), offset=size - 16))
            else:
                reader = LTXReader(stream, on_defect=add)
                fc.header = reader.header
                for pgno, _page in reader.pages():
                    fc.pgnos.append(pgno)
                assert reader.info is not None
                fc.trailer = reader.info.trailer
    except LTXError as err:
        add(err)
        fc.broken = err.code in FATAL_CODES
    except OSError as exc:
        fc.findings.append(Finding(Code.UNREADABLE, path, f"cannot read: {exc.strerror or exc}"))
        fc.broken = True
    if fc.header is not None and name is not None:
        parsed = parse_filename(name)
        if parsed is not None and parsed != (fc.header.min_txid, fc.header.max_txid):
            fc.findings.append(
                Finding(
                    Code.FILENAME_MISMATCH,
                    path,
                    f"name says TXIDs {parsed[0]:016x}-{parsed[1]:016x}, header holds "
                    f"{fc.header.min_txid:016x}-{fc.header.max_txid:016x}",
                    {"min_txid": fc.header.min_txid, "max_txid": fc.header.max_txid},
                )
            )
    return fc


def check_loose_file(path: Path, *, quick: bool) -> FileCheck:
    try:
        size = path.stat().st_size
    except OSError as exc:
        fc = FileCheck(path=str(path))
        fc.findings.append(Finding(Code.UNREADABLE, str(path), f"cannot read: {exc.strerror or exc}"))
        fc.broken = True
        return fc
    return check_file(lambda: path.open("rb"), str(path), size, name=path.name, level=None, quick=quick)


# ---- replica checks ---------------------------------------------------------------------------


PARALLEL_MIN_BYTES = 32 << 20  # below this, starting worker processes costs more than it saves


def _check_one_in_worker(url: str, label: str, f: ReplicaFile, quick: bool) -> FileCheck:
    """`_check_one` in a worker process, which opens its own storage from the URL."""
    return _check_one(open_storage(url), label, f, quick)


def _check_one(storage: Storage, label: str, f: ReplicaFile, quick: bool) -> FileCheck:
    """One replica file."""
    fc = check_file(
        lambda: storage.open(f.key),
        _join(label, f.key),
        f.size,
        name=f.key.rsplit("/", 1)[-1],
        level=f.level,
        quick=quick,
    )
    fc.key = f.key
    return fc


def _check_files(
    storage: Storage, label: str, files: list[ReplicaFile], *, quick: bool, jobs: int, progress: ProgressHook | None
) -> dict[str, FileCheck]:
    """Check every file; a large local replica is spread over `jobs` processes, biggest files first.

    Decoding is CPU-bound Python and the codecs hold the GIL, so threads would not help; each file
    is independent, so processes do. Results come back in listing order whatever the schedule.
    """
    checks: dict[str, FileCheck] = {}
    parallel = (
        jobs > 1 and not quick and can_fork() and len(files) > 1 and sum(f.size for f in files) >= PARALLEL_MIN_BYTES
    )
    if parallel:
        with fork_pool(min(jobs, len(files))) as pool:
            futures = [
                pool.submit(_check_one_in_worker, storage.url, label, f, quick)
                for f in sorted(files, key=lambda f: -f.size)
            ]
            for fut in concurrent.futures.as_completed(futures):
                fc = fut.result()
                assert fc.key is not None  # `_check_one` always sets it
                checks[fc.key] = fc
                if progress is not None:
                    progress(fc.path, fc.size)
        return {f.key: checks[f.key] for f in files}
    for f in files:
        fc = _check_one(storage, label, f, quick)
        checks[f.key] = fc
        if progress is not None:
            progress(fc.path, f.size)
    return checks


def check_replica(
    storage: Storage,
    label: str,
    *,
    quick: bool = False,
    content: bool = False,
    deep: bool = False,
    progress: ProgressHook | None = None,
    note: Note | None = None,
    jobs: int = 1,
) -> ReplicaSummary:
    """Check every file and the replica's rules; with `content` (or `deep`, the full check) also
    restore the latest restore point and let SQLite judge it (the `ltxkit verify` default)."""
    listing = list_replica(storage)
    checks = _check_files(storage, label, listing.files, quick=quick, jobs=jobs, progress=progress)
    summary = ReplicaSummary(label, list(checks.values()), listing)
    add = summary.findings.append
    for entry in listing.stray:
        add(Finding(Code.STRAY_FILE, _join(label, entry.key), "not an LTX file name Litestream would read"))
    if not listing.files:
        add(Finding(Code.NO_SNAPSHOT, label, "replica holds no LTX files"))
        return summary

    usable = [f for f in listing.files if checks[f.key].header is not None]
    _check_page_sizes(usable, checks, add)
    _check_overlaps(listing, checks, add)
    for level in range(SNAPSHOT_LEVEL):
        _check_chain([f for f in usable if f.level == level], checks, add, label)
    _check_latest(listing, checks, summary, label)
    if not (content or deep):
        summary.content_skipped = "--quick reads no pages" if quick else "structure only (--structure-only)"
    elif summary.latest_txid is None or any(f.code == Code.UNRESTORABLE for f in summary.findings):
        summary.content_skipped = "the latest restore point cannot be restored"
    elif _plan_has_errors(summary, checks):
        summary.content_skipped = "the latest restore reads files with errors"
    else:
        _check_content(storage, listing, summary, label, CheckMode.FULL if deep else CheckMode.QUICK, jobs, note)
    return summary


def _plan_has_errors(summary: ReplicaSummary, checks: dict[str, FileCheck]) -> bool:
    """Does an error name a file of the latest restore plan (its own defect, or a rule it breaks)?"""
    paths = {checks[key].path for key in summary.plan}
    return any(f.severity == Severity.ERROR for key in summary.plan for f in checks[key].findings) or any(
        f.severity == Severity.ERROR and f.path in paths for f in summary.findings
    )


def _join(label: str, key: str) -> str:
    return os.path.join(label, *key.split("/"))


def _check_page_sizes(files: list[ReplicaFile], checks: dict[str, FileCheck], add: Callable[[Finding], None]) -> None:
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


def _check_overlaps(listing: Listing, checks: dict[str, FileCheck], add: Callable[[Finding], None]) -> None:
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


def _check_chain(
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
        have = set(cb.pgnos)
        missing = [p for p in range(ha.commit + 1, hb.commit + 1) if p != lock and p not in have]
        if missing:
            if any(f.code == Code.GROWTH_PAGES_MISSING for f in cb.findings):
                return
            cb.findings.append(
                Finding(
                    Code.GROWTH_PAGES_MISSING,
                    cb.path,
                    f"raises commit from {ha.commit} to {hb.commit} but lacks {len(missing)} of the new pages "
                    f"(first: {missing[0]})",
                    {"level": b.level, "min_txid": b.min_txid, "max_txid": b.max_txid, "pgno": missing[0]},
                )
            )


def _check_latest(listing: Listing, checks: dict[str, FileCheck], summary: ReplicaSummary, label: str) -> None:
    add = summary.findings.append
    files = listing.files
    try:
        plan = restore_plan(files)
    except PlanError as exc:
        add(Finding(exc.code, label, exc.message, dict(exc.context)))
        plan = None
    _check_gaps(listing, summary, label, plan_ok=plan is not None)
    if plan is None:
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
        return
    headers = [checks[f.key].known_header for f in plan]  # files without one were `broken` above
    summary.page_size = headers[-1].page_size
    summary.commit = headers[-1].commit
    for a, b, ha, hb in zip(plan, plan[1:], headers, headers[1:], strict=False):
        if b.level != a.level or b.min_txid != a.max_txid + 1:  # same-level pairs were checked already
            _check_pair(a, b, ha, hb, checks, add)
    commit = summary.commit or 0
    lock = lock_pgno(summary.page_size or 4096)
    covered = bytearray(commit + 1)
    for f in plan:
        for p in checks[f.key].pgnos:
            if p <= commit:
                covered[p] = 1
    missing = [p for p in range(1, commit + 1) if p != lock and not covered[p]]
    if missing:
        add(
            Finding(
                Code.UNRESTORABLE,
                label,
                f"the latest restore (TXID {summary.latest_txid:016x}) lacks {len(missing)} of {commit} pages "
                f"(first: page {missing[0]}); `litestream restore` fails on it",
                {"txid": summary.latest_txid, "pgno": missing[0]},
            )
        )


def _check_gaps(listing: Listing, summary: ReplicaSummary, label: str, *, plan_ok: bool) -> None:
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


def _check_content(
    storage: Storage,
    listing: Listing,
    summary: ReplicaSummary,
    label: str,
    mode: CheckMode,
    jobs: int,
    note: Note | None,
) -> None:
    plan = restore_plan(listing.files)
    verdict = check_content(storage, listing.files, plan, mode, jobs=jobs, note=note)
    summary.content = verdict
    latest = verdict.latest
    if latest.ok:
        return
    if latest.restore_error is not None:
        summary.findings.append(Finding(Code.UNRESTORABLE, label, latest.restore_error, {"txid": latest.txid}))
        return
    ctx: dict[str, Any] = {"txid": latest.txid, "check": mode.pragma, "sqlite": latest.problems[:20]}
    message = f"the latest restore point (TXID {latest.txid:016x}) fails {mode.pragma}: {latest.said}"
    good, bad = verdict.last_good, verdict.first_bad
    if good is not None:
        ctx["last_good_txid"] = good.txid
        message += f"; last good restore point: TXID {good.txid:016x} (ltxkit restore --txid {good.txid:016x})"
    else:
        message += "; no earlier restore point passes either"
    if bad is not None:
        ctx["first_bad_txid"] = bad.txid
        ctx["first_bad_file"] = bad.last_key
        message += f"; first bad: TXID {bad.txid:016x}, brought in by {bad.last_key}"
    summary.findings.append(Finding(Code.INTEGRITY_CHECK_FAILED, label, message, ctx))


# ---- entry point ------------------------------------------------------------------------------


class VerifyUsageError(UsageError):
    """A path that cannot be verified at all (missing, not a replica): exit code 2."""


def verify_paths(
    paths: list[str],
    *,
    quick: bool = False,
    content: bool = False,
    deep: bool = False,
    progress: ProgressHook | None = None,
    note: Note | None = None,
    jobs: int = 1,
) -> Report:
    """Check each path: a loose LTX file, a directory of them, or a replica (see `check_replica`)."""
    report = Report()

    def replica(storage: Storage, label: str) -> ReplicaSummary:
        return check_replica(
            storage, label, quick=quick, content=content, deep=deep, progress=progress, note=note, jobs=jobs
        )

    for raw in paths:
        if "://" in raw:
            try:
                storage = open_storage(raw)
            except ReplicaNotFound as exc:
                raise VerifyUsageError(str(exc)) from exc
            report.replicas.append(replica(storage, storage.label))
            continue
        path = Path(raw)
        if path.is_file():
            report.files.append(check_loose_file(path, quick=quick))
            if progress is not None:
                progress(str(path), report.files[-1].size)
        elif path.is_dir():
            if (path / LTX_DIR).is_dir():
                report.replicas.append(replica(open_storage(raw), str(path)))
            else:
                ltx_files = sorted(p for p in path.iterdir() if p.suffix == ".ltx" and p.is_file())
                if not ltx_files:
                    raise VerifyUsageError(f"{path}: not a replica (no {LTX_DIR}/ directory) and holds no .ltx files")
                for p in ltx_files:
                    report.files.append(check_loose_file(p, quick=quick))
        else:
            raise VerifyUsageError(f"{path}: no such file or directory")
    return report


def total_bytes(paths: list[str]) -> int:
    """Bytes verify will read (for a progress bar)."""
    total = 0
    for raw in paths:
        p = Path(raw.split("://", 1)[1]) if raw.startswith("file://") else Path(raw)
        if p.is_file():
            total += p.stat().st_size
        elif p.is_dir():
            for dirpath, _d, names in os.walk(p):
                for n in names:
                    if n.endswith(".ltx"):
                        with contextlib.suppress(OSError):
                            total += os.stat(os.path.join(dirpath, n)).st_size
    return total
