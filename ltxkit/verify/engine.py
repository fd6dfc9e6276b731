"""The verify engine: runs the checks over paths and replicas.

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
import dataclasses
import io
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ltxkit.errors import UsageError
from ltxkit.format.errors import Code
from ltxkit.format.schema import parse_filename
from ltxkit.replica.keys import LTX_DIR
from ltxkit.replica.layout import (
    LEGACY_GENERATIONS_DIR,
    LEGACY_GENERATIONS_NOTE,
    SNAPSHOT_LEVEL,
    Listing,
    ReplicaFile,
    first_ms_after,
    holds_legacy_generations,
    list_replica,
    restore_plan,
)
from ltxkit.replica.storage import ReplicaNotFound, Storage, legacy_replica_message, local_path, open_storage
from ltxkit.verify import files as file_checks
from ltxkit.verify.agreement import AGREEMENT_CODES, check_agreement
from ltxkit.verify.content import CheckMode, Note, check_content
from ltxkit.verify.files import check_file, check_loose_file
from ltxkit.verify.findings import (
    FileCheck,
    Finding,
    Mode,
    ProgressHook,
    ReplicaSummary,
    Report,
    Severity,
    join_label,
)
from ltxkit.verify.ledger_check import check_ledger, ledger_keys
from ltxkit.verify.rules import (
    check_chain,
    check_latest,
    check_overlaps,
    check_page_sizes,
    plan_has_errors,
    window_through,
)
from ltxkit.workers import can_fork, fork_pool, map_on_daemons, thread_pool

# ---- replica checks ---------------------------------------------------------------------------


PARALLEL_MIN_BYTES = 32 << 20  # below this, starting worker processes costs more than it saves
WHOLE_GET_MAX_BYTES = 1 << 20  # remote files up to this size are fetched in one request
LARGE_AT_ONCE = 2  # remote files above it read at the same time (each streams with read-ahead)


def _check_one_in_worker(storage: Storage, label: str, f: ReplicaFile, quick: bool, page_sums: bool) -> FileCheck:
    """`_check_one` in a worker process (a fork-safe storage, handed over pickled)."""
    return _check_one(storage, label, f, quick, page_sums=page_sums)


def _check_one(
    storage: Storage, label: str, f: ReplicaFile, quick: bool, jobs: int = 1, *, page_sums: bool = False
) -> FileCheck:
    """One replica file. From an object store a small file is one GET, not a HEAD and ranged GETs;
    with `jobs` > 1 (a fork-safe storage only) a large one is split in spans."""
    whole = storage.concurrency > 1 and f.size <= WHOLE_GET_MAX_BYTES
    fc = check_file(
        (lambda: io.BytesIO(storage.read_bytes(f.key, listed_size=f.size))) if whole else (lambda: storage.open(f.key)),
        join_label(label, f.key),
        f.size,
        name=f.key.rsplit("/", 1)[-1],
        level=f.level,
        quick=quick,
        jobs=jobs,
        page_sums=page_sums,
    )
    fc.key = f.key
    return fc


def _check_files(
    storage: Storage,
    label: str,
    files: list[ReplicaFile],
    *,
    quick: bool,
    jobs: int,
    progress: ProgressHook | None,
    page_sums: bool = False,
) -> dict[str, FileCheck]:
    """Check every file; a large local replica is spread over `jobs` processes: a file larger than
    an even share in spans over all of them, the others whole, biggest first.

    Decoding is CPU-bound Python and the codecs hold the GIL, so threads would not help; each file
    is independent, so processes do. Results come back in listing order whatever the schedule.
    """
    checks: dict[str, FileCheck] = {}
    if storage.concurrency > 1 and len(files) > 1:
        return _check_files_concurrently(storage, label, files, quick=quick, progress=progress, page_sums=page_sums)

    def one_by_one(todo: list[ReplicaFile]) -> None:  # each file may still be split in spans
        for f in todo:
            checks[f.key] = fc = _check_one(storage, label, f, quick, jobs, page_sums=page_sums)
            if progress is not None:
                progress(fc.path, f.size)

    total = sum(f.size for f in files)
    if not (jobs > 1 and not quick and can_fork() and len(files) > 1 and total >= PARALLEL_MIN_BYTES):
        one_by_one(files)
        return checks
    # A file bigger than an even share of the work (a snapshot among small increments) would keep
    # one process busy while the others run out of files: it is split in spans over every process
    # first, and only the rest are shared out whole.
    one_by_one([f for f in files if f.size * jobs > total and f.size >= file_checks.SPLIT_MIN_BYTES])
    rest = [f for f in files if f.key not in checks]
    if len(rest) < 2 or sum(f.size for f in rest) < PARALLEL_MIN_BYTES:
        one_by_one(rest)
    else:
        with fork_pool(min(jobs, len(rest))) as pool:
            futures = [
                pool.submit(_check_one_in_worker, storage, label, f, quick, page_sums)
                for f in sorted(rest, key=lambda f: -f.size)
            ]
            for fut in concurrent.futures.as_completed(futures):
                fc = fut.result()
                assert fc.key is not None  # `_check_one` always sets it
                checks[fc.key] = fc
                if progress is not None:
                    progress(fc.path, fc.size)
    return {f.key: checks[f.key] for f in files}


def _check_files_concurrently(
    storage: Storage,
    label: str,
    files: list[ReplicaFile],
    *,
    quick: bool,
    progress: ProgressHook | None,
    page_sums: bool = False,
) -> dict[str, FileCheck]:
    """Check a remote replica's files on `storage.concurrency` threads: each check spends most of
    its time waiting on GETs (with `quick`, two small ranged GETs per file), which threads overlap;
    the decoding between them takes the GIL in turn. Results come back in listing order.

    A large file streams through a reader that holds up to 32 MiB fetched ahead, so only
    `LARGE_AT_ONCE` large files are read at a time (memory stays bounded whatever the replica)."""
    checks: dict[str, FileCheck] = {}
    large = threading.BoundedSemaphore(LARGE_AT_ONCE)

    def check(f: ReplicaFile) -> FileCheck:
        if quick or f.size <= WHOLE_GET_MAX_BYTES:
            return _check_one(storage, label, f, quick, page_sums=page_sums)
        with large:
            return _check_one(storage, label, f, quick, page_sums=page_sums)

    with thread_pool(min(storage.concurrency, len(files)), "ltxkit-verify") as pool:
        futures = [pool.submit(check, f) for f in files]
        for f, fut in zip(files, futures, strict=True):
            fc = fut.result()
            checks[f.key] = fc
            if progress is not None:
                progress(fc.path, f.size)
    return checks


def _check_listed(
    storage: Storage,
    label: str,
    *,
    quick: bool,
    jobs: int,
    progress: ProgressHook | None,
    page_sums: bool = False,
    top: frozenset[str] | None = None,
) -> tuple[Listing, dict[str, FileCheck], list[Finding]]:
    """List the replica and check every file.

    A replica is not frozen while verify reads it: retention deletes covered files and a
    replicator publishes new ones. A file that failed its check and has since vanished or changed
    (another size or time in a fresh listing) is not damage, so the replica is listed and checked
    once more; a file that moves under that second look too is named `changed-during-check` (a
    warning) and left out of the replica's rules, instead of being reported as unreadable or
    truncated."""
    for attempt in (1, 2):
        listing = list_replica(storage, top=top if attempt == 1 else None)  # the second look: all afresh
        checks = _check_files(
            storage, label, listing.files, quick=quick, jobs=jobs, progress=progress, page_sums=page_sums
        )
        moved = _moved_since_listing(storage, listing, checks)
        if not moved:
            return listing, checks, []
        if attempt == 1:
            continue
        notes = [
            Finding(
                Code.CHANGED_DURING_CHECK,
                join_label(label, key),
                f"{why} while verify read it (retention or a replicator at work?); not judged",
            )
            for key, why in moved.items()
        ]
        kept = [f for f in listing.files if f.key not in moved]
        return dataclasses.replace(listing, files=kept), {f.key: checks[f.key] for f in kept}, notes
    raise AssertionError("unreachable")


def _moved_since_listing(storage: Storage, listing: Listing, checks: dict[str, FileCheck]) -> dict[str, str]:
    """Files whose check found an error and that a fresh listing no longer shows as they were."""
    failed = [f for f in listing.files if any(x.severity is Severity.ERROR for x in checks[f.key].findings)]
    if not failed:
        return {}
    now = {f.key: f for f in list_replica(storage).files}
    moved: dict[str, str] = {}
    for f in failed:
        current = now.get(f.key)
        if current is None:
            moved[f.key] = "deleted"
        elif (current.size, current.created_ns) != (f.size, f.created_ns):
            moved[f.key] = "rewritten"
    return moved


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
    if not storage.fork_safe:
        jobs = 1
    # every page's checksum, kept by the file checks (which decode every page anyway): copies of
    # one TXID range must agree page by page (`verify.agreement`), and a replica with a ledger is
    # proven from them, instead of decoding every file a second time
    top = storage.top_names()  # an object store: what exists below the root, in one request
    recorded = set() if quick else ledger_keys(storage, top=top)
    listing, checks, moved = _check_listed(
        storage, label, quick=quick, jobs=jobs, progress=progress, page_sums=not quick, top=top
    )
    summary = ReplicaSummary(label, list(checks.values()), listing, ledger_records=recorded)
    add = summary.findings.append
    summary.findings.extend(moved)
    for entry in listing.stray:
        add(Finding(Code.STRAY_FILE, join_label(label, entry.key), _stray_note(entry.key)))
    if holds_legacy_generations(storage, top=top):
        add(Finding(Code.LEGACY_GENERATIONS, join_label(label, f"{LEGACY_GENERATIONS_DIR}/"), LEGACY_GENERATIONS_NOTE))
    for name in storage.stale_staging():
        add(
            Finding(
                Code.STALE_STAGING,
                join_label(label, name),
                "a staging directory left by an interrupted ltxkit repair or replicator (its process is "
                "gone); nothing reads it. `ltxkit repair REPLICA --rebuild-snapshot` removes it (with "
                "--from-db DB when nothing in the replica restores)",
            )
        )
    for entry in listing.not_files:
        add(
            Finding(
                Code.NOT_A_FILE,
                join_label(label, entry.key),
                f"named like an LTX file but {entry.problem}: Litestream lists it as one and its restore "
                "fails on it; `ltxkit restore` leaves it out and may still restore the replica",
            )
        )
    for entry in listing.unreadable:
        add(
            Finding(
                Code.UNREADABLE_LEVEL,
                join_label(label, entry.key),
                f"level directory that cannot be read ({entry.problem}): its files were not checked, "
                "and Litestream cannot list them either",
            )
        )
    if not listing.files:
        add(Finding(Code.NO_SNAPSHOT, label, "replica holds no LTX files"))
        summary.content_skipped = "there is nothing to restore"
        return summary

    usable = [f for f in listing.files if checks[f.key].header is not None]
    check_page_sizes(usable, checks, add)
    check_overlaps(listing, checks, add)
    for level in range(SNAPSHOT_LEVEL):
        check_chain([f for f in usable if f.level == level], checks, add, label)
    if not quick:
        check_agreement(usable, checks, add)
    check_latest(listing, checks, summary, label)
    # two copies that disagree are sound files each: the ledger replays them, and says which is wrong
    if summary.plan and not quick and not plan_has_errors(summary, checks, besides=AGREEMENT_CODES):
        check_ledger(storage, listing.files, checks, summary, label, recorded)
    if not (content or deep):
        summary.content_skipped = "--quick reads no pages" if quick else "structure only (--structure-only)"
    elif summary.latest_txid is None or any(f.code == Code.UNRESTORABLE for f in summary.findings):
        summary.content_skipped = "the latest restore point cannot be restored"
    elif plan_has_errors(summary, checks):
        summary.content_skipped = "the latest restore reads files with errors"
    else:
        _check_content(storage, listing, summary, label, CheckMode.FULL if deep else CheckMode.QUICK, jobs, note)
    _exact_window_times(storage, summary)  # once the content check has had its say on the window
    return summary


def _stray_note(key: str) -> str:
    if key.endswith(".ltx.tmp") and parse_filename(key.rsplit("/", 1)[-1].removesuffix(".tmp")) is not None:
        # Litestream writes `<name>.tmp` and renames it: a kill between the two leaves this for good
        return (
            "not an LTX file name Litestream would read: a temporary file a replicator stopped in the middle "
            "of writing left behind (Litestream writes NAME.tmp, then renames it); nothing reads it, delete it"
        )
    return "not an LTX file name Litestream would read"


def _exact_window_times(storage: Storage, summary: ReplicaSummary) -> None:
    """The window's times as `restore --timestamp` compares them: on an object store a listing
    gives upload times in whole seconds, and a window drawn from them named times that restore
    refused (too early) or that restored an older point (too late). Two HEADs, one per end."""
    for name in ("window_start", "window_end"):
        end = getattr(summary, name)
        if end is None:
            continue
        with contextlib.suppress(FileNotFoundError):  # deleted meanwhile: the listing's time stays
            ns = storage.exact_created_ns(end.key)
            if ns is not None:  # the first millisecond a restore reads its file
                setattr(summary, name, dataclasses.replace(end, ms=first_ms_after(ns)))


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
    latest = verdict.latest
    if latest.vanished is not None:  # retention racing verify: nothing to judge, nothing damaged
        summary.content_skipped = "a file of the latest restore point was deleted while verify restored it"
        why = "deleted while verify restored the latest restore point (retention or a replicator at work?)"
        summary.findings.append(Finding(Code.CHANGED_DURING_CHECK, join_label(label, latest.vanished), why))
        return
    summary.content = verdict
    if latest.ok:
        return
    if latest.restore_error is not None:
        summary.findings.append(Finding(Code.UNRESTORABLE, label, latest.restore_error, {"txid": latest.txid}))
        return
    good, bad, stopped = verdict.last_good, verdict.first_bad, verdict.search_stopped
    window = (summary.window_start, summary.window_end)
    summary.window_start, summary.window_end = window_through(listing.files, window, good.txid if good else None)
    ctx: dict[str, Any] = {"txid": latest.txid, "check": mode.pragma, "sqlite": latest.lines[:20]}
    message = f"the latest restore point (TXID {latest.txid:016x}) fails {mode.pragma}: {latest.said}"
    if good is not None:
        ctx["last_good_txid"] = good.txid
        which = "a good restore point" if stopped else "last good restore point"
        message += f"; {which}: TXID {good.txid:016x} (ltxkit restore --txid {good.txid:016x})"
    elif stopped is None:
        message += "; no earlier restore point passes either"
    if bad is not None:
        ctx["first_bad_txid"] = bad.txid
        ctx["first_bad_file"] = bad.last_key
        if stopped is None:
            message += f"; first bad: TXID {bad.txid:016x}, brought in by {bad.last_key}"
        elif bad is not latest:
            message += f"; TXID {bad.txid:016x} fails too"
    if stopped is not None:  # the bounds above are real restore points, the boundary is not known
        assert stopped.vanished is not None  # what stops the search
        ctx["search_stopped_by"] = stopped.vanished
        message += (
            f"; the search for the last good one stopped at TXID {stopped.txid:016x}, whose file "
            f"{stopped.vanished} was deleted meanwhile: run verify again for the exact boundary"
        )
        why = f"deleted while verify restored TXID {stopped.txid:016x} to find the last good restore point"
        summary.findings.append(Finding(Code.CHANGED_DURING_CHECK, join_label(label, stopped.vanished), why))
    summary.findings.append(Finding(Code.INTEGRITY_CHECK_FAILED, label, message, ctx))


# ---- entry point ------------------------------------------------------------------------------


#: replicas in an object store checked at once (`verify --recursive`); each also reads its own files
#: on `S3Storage.concurrency` threads, so this bounds the requests in flight to about 8 x 16
REMOTE_REPLICAS_AT_ONCE = 8


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
    """Check each path: a loose LTX file, a directory of them, or a replica (see `check_replica`).

    A path that cannot be checked at all (missing, not a replica, an object store that stops
    answering or refuses) goes into `report.unusable`;
    the other paths are still checked, so one bad argument never hides what the rest hold."""
    report = Report(mode=Mode.QUICK if quick else Mode.DEEP if deep else Mode.FULL if content else Mode.STRUCTURE)

    def replica(storage: Storage, label: str) -> ReplicaSummary:
        t = time.perf_counter()
        summary = check_replica(
            storage, label, quick=quick, content=content, deep=deep, progress=progress, note=note, jobs=jobs
        )
        summary.seconds = time.perf_counter() - t
        return summary

    def one(raw: str) -> Report:
        part = Report(mode=report.mode)
        try:
            _verify_path(raw, part, replica, quick=quick, progress=progress, jobs=jobs)
        except UsageError as exc:  # missing, not a replica, a store that fails: the other paths are still checked
            part.unusable.append(str(exc))
            part.unusable_errors.append(exc)
        return part

    started = time.perf_counter()
    if len(paths) > 1 and all(raw.startswith("s3://") for raw in paths):
        # replicas in an object store (a fleet): each check waits on the network most of the time
        parts = []
        for ok, value in map_on_daemons(one, paths, REMOTE_REPLICAS_AT_ONCE):
            if not ok:
                raise value
            parts.append(value)
    else:  # local replicas: each check already uses every core
        parts = [one(raw) for raw in paths]
    for part in parts:  # in the order given, whatever order they finished in
        report.files += part.files
        report.replicas += part.replicas
        report.unusable += part.unusable
        report.unusable_errors += part.unusable_errors
    report.seconds = time.perf_counter() - started
    return report


def _verify_path(
    raw: str,
    report: Report,
    replica: Callable[[Storage, str], ReplicaSummary],
    *,
    quick: bool,
    progress: ProgressHook | None,
    jobs: int = 1,
) -> None:
    if "://" in raw:
        if raw.startswith("s3://") and urlsplit(raw).path.endswith(".ltx"):  # one object, as a local file
            report.files.append(_check_object(raw, quick=quick))
            return
        storage = open_storage(raw)
        report.replicas.append(replica(storage, storage.label))
        return
    path = Path(raw)
    if path.is_file():
        report.files.append(check_loose_file(path, quick=quick, jobs=jobs))
        if progress is not None:
            progress(str(path), report.files[-1].size)
    elif path.is_dir():
        if (path / LTX_DIR).is_dir():
            report.replicas.append(replica(open_storage(raw), str(path)))
        else:
            ltx_files = sorted(p for p in path.iterdir() if p.suffix == ".ltx" and p.is_file())
            if not ltx_files and (path / "generations").is_dir():
                raise VerifyUsageError(legacy_replica_message(str(path)))
            if not ltx_files:
                raise VerifyUsageError(f"{path}: not a replica (no {LTX_DIR}/ directory) and holds no .ltx files")
            for p in ltx_files:
                report.files.append(check_loose_file(p, quick=quick, jobs=jobs))
    else:
        raise VerifyUsageError(f"{path}: no such file or directory")


def _check_object(url: str, *, quick: bool) -> FileCheck:
    """One object of a bucket, checked as a loose file is (`check_loose_file`)."""
    from ltxkit.replica.s3 import open_object

    storage, name, size = open_object(url)
    return check_file(lambda: storage.open(name, size=size), url, size, name=name, level=None, quick=quick)


def total_bytes(paths: list[str]) -> int:
    """Bytes verify will read (for a progress bar)."""
    total = 0
    for raw in paths:
        try:
            p = local_path(raw)
        except ReplicaNotFound:  # an object store's, or a URL the check itself will refuse
            continue
        if p.is_file():
            total += p.stat().st_size
        elif p.is_dir():
            for dirpath, _d, names in os.walk(p):
                for n in names:
                    if n.endswith(".ltx"):
                        with contextlib.suppress(OSError):
                            total += os.stat(os.path.join(dirpath, n)).st_size
    return total
