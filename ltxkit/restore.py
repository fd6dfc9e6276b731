"""Restore a database from a replica: Litestream's plan, straight from the files, every page verified.

Litestream restores by merging the plan's files through its compactor into a new LTX stream and
decoding that again. The result is simply "newest page wins, pages above the final commit dropped,
lock page zero", so ltxkit streams each planned file once, oldest first, writing every page at its
offset. Each file's checksums are verified as it streams; a damaged file aborts the restore and
nothing is left at the output path.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import functools
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from ltxkit.errors import EXIT_USAGE, LtxkitError
from ltxkit.format.decoder import LTXReader, SpanResult, read_ends
from ltxkit.format.errors import Code, LTXError
from ltxkit.format.schema import HEADER_SIZE, Header, lock_pgno, missing_among, missing_pages
from ltxkit.format.spans import find_cuts, join_spans
from ltxkit.pagesink import PageSink
from ltxkit.replica.layout import PlanError, ReplicaFile, list_replica, plan_ending_at, restore_plan
from ltxkit.replica.storage import OutputExists, Storage, atomic_output, replaceable
from ltxkit.workers import Forked, WorkerDied, can_fork, fork_call, reaped, thread_pool

Progress = Callable[[int, int], None]  # (bytes of LTX read so far, pages written so far)


class RestoreError(LtxkitError):
    """A restore that cannot be done; `code` is the verify code, `key` the file it is about."""

    def __init__(self, code: Code, message: str, key: str | None = None) -> None:
        super().__init__(message, code=code)
        self.key = key


class Vanished(RestoreError):
    """A file of the plan was deleted after the plan was made: a running replicator's retention
    (or compaction) removed what the listing showed. Not damage: a new plan restores."""

    exit_code = EXIT_USAGE

    def __init__(self, key: str, more: str = "") -> None:
        super().__init__(Code.UNREADABLE, f"{key}: deleted while the restore read the replica{more}", key)


#: a restore whose plan loses a file to a replicator's retention lists the replica again and starts
#: over, this many times in all (each retry restores what the replica holds by then)
REPLAN_ATTEMPTS = 3


@dataclass(slots=True)
class RestoreResult:
    plan: list[ReplicaFile]
    txid: int
    page_size: int
    commit: int
    pages_written: int
    bytes_read: int


def plan_for(
    storage: Storage, *, txid: int | None = None, timestamp_ns: int | None = None, top: frozenset[str] | None = None
) -> list[ReplicaFile]:
    """Litestream's restore plan for this replica, or RestoreError with the verify code. `top`:
    the replica's top names, when the caller has just listed them (`Storage.top_names`)."""
    listing = list_replica(storage, top=top)
    if listing.unreadable:  # a plan made without its files could restore the wrong state
        e = listing.unreadable[0]
        raise RestoreError(
            Code.UNREADABLE_LEVEL, f"cannot make a restore plan: {e.key} cannot be read ({e.problem})", e.key
        )
    files = listing.files
    listed_newest_ns = None
    if timestamp_ns is not None:
        # on an object store Litestream's window ends at the newest upload time the listing shows,
        # which can be later than any file's own time: a target between the two is restorable
        listed_newest_ns = max((f.created_ns for f in files), default=None)
        files = _exact_times(storage, files)
    try:
        return restore_plan(files, txid=txid, timestamp_ns=timestamp_ns, listed_newest_ns=listed_newest_ns)
    except PlanError as exc:
        if txid is not None or timestamp_ns is not None:
            _refuse_target(files, exc, txid)
        raise RestoreError(
            exc.code, f"cannot make a restore plan: {exc.message}", str(exc.context.get("key") or "")
        ) from exc


class TargetNotRestorable(RestoreError):
    """`--txid` / `--timestamp` names no restore point of a sound replica: the argument is at
    fault, not the data (exit 2), and the message says which restore points are near it."""

    exit_code = EXIT_USAGE


def _refuse_target(files: list[ReplicaFile], exc: PlanError, txid: int | None) -> None:
    """Raise `TargetNotRestorable` when the replica restores its latest state (so nothing in it
    is damaged) and only the target misses; return when the replica itself cannot be restored,
    which the caller then reports as the damage it is."""
    try:
        latest = restore_plan(files)[-1].max_txid
    except PlanError:
        return
    message = f"cannot make a restore plan: {exc.message}"
    if txid is not None and txid < latest:
        ends = sorted({f.max_txid for f in files if f.max_txid <= latest})
        below = _first_restore_point(files, reversed([t for t in ends if t < txid]))
        above = _first_restore_point(files, (t for t in ends if t > txid))
        near = " and ".join(f"{t:016x}" for t in (below, above) if t is not None)
        message = (
            f"cannot make a restore plan: TXID {txid:016x} is not a restore point (no restore plan ends "
            f"there: compaction merged it into a larger file, or its file was set aside); the nearest are {near}"
        )
    raise TargetNotRestorable(exc.code, message + " (`ltxkit verify` shows the restorable window)") from exc


def _first_restore_point(files: list[ReplicaFile], txids: Iterable[int]) -> int | None:
    """The first of `txids` a restore can end at exactly (in the order given)."""
    return next((txid for txid in txids if plan_ending_at(files, txid) is not None), None)


def _exact_times(storage: Storage, files: list[ReplicaFile]) -> list[ReplicaFile]:
    """Files with the creation times a timestamp restore must compare (object metadata on S3, read
    concurrently, as Litestream does); unchanged where the listing's time is already exact."""
    first = storage.exact_created_ns(files[0].key) if files else None
    if first is None:
        return files
    with thread_pool(16, "ltxkit-times") as pool:
        exact = [first, *pool.map(lambda f: storage.exact_created_ns(f.key), files[1:])]
    return [f if ns is None else dataclasses.replace(f, created_ns=ns) for f, ns in zip(files, exact, strict=True)]


SPLIT_MIN_BYTES = 32 << 20  # a file smaller than this is decoded in one process
# a file this small is read whole in one call instead of streamed: per-file cost is what a restore
# through thousands of small L0 files spends its time on
WHOLE_READ_MAX_BYTES = 1 << 20
SETTLE_AFTER_BYTES = 16 << 20  # written since the last background sync: start another (`PageSink.settle`)


def _decode_span_in_child(storage: Storage, key: str, header: Header, start: int, end: int, fd: int) -> SpanResult:
    """`_decode_span_into` in a forked child (a fork-safe storage: its copy of the parent's)."""
    return _decode_span_into(storage, key, header, start, end, fd)


def _decode_span_into(
    storage: Storage,
    key: str,
    header: Header,
    start: int,
    end: int,
    fd: int,
    progress: Progress | None = None,
) -> SpanResult:
    """Decode the frames in [start, end) of one file and write its pages through `fd`;
    `progress(bytes, pages)` of this span every 1024 pages, where the caller wants it."""
    with storage.open(key) as stream:
        reader = LTXReader.span(stream, header, start, end)
        sink = PageSink(fd, header.page_size)
        for n, (pgno, page) in enumerate(reader.pages(), 1):
            sink.write(pgno, page)
            if progress is not None and n & 1023 == 0:
                progress(reader.position - start, n)
        sink.flush()
    assert reader.span_result is not None
    return reader.span_result


def _restore_file_in_spans(
    storage: Storage,
    f: ReplicaFile,
    fd: int,
    jobs: int,
    page_size: int | None,
    progress: Progress | None = None,
) -> tuple[Header, list[int]] | None:
    """Decode one large file in up to `jobs` spans at once (the caller takes the first) and prove
    it whole (`join_spans`). None when that cannot start: the caller decodes the file the ordinary
    way, which names any defect, so nothing here decides what is damaged. `_StartOver` when it
    failed after pages were written: a span cut in the wrong place may have written a page where
    this file has none, so the caller restores again from scratch in one process."""
    try:
        with storage.open(f.key) as stream:
            ends = read_ends(stream, f.size)
        _check_names(ends.header, f)
        _check_page_size(ends.header, page_size)
        cuts = find_cuts(ends, jobs)
    except (LTXError, OSError):
        return None
    if not cuts:
        return None
    try:
        bounds = list(zip([HEADER_SIZE, *cuts], [*cuts, ends.frames_end], strict=True))
        others: list[Forked] = []
        with reaped(others):  # every child done writing before anyone goes on, whatever happened here
            for start, end in bounds[1:]:  # forked after `fd` was opened: the children write through it
                others.append(fork_call(_decode_span_in_child, storage, f.key, ends.header, start, end, fd))
            scale = len(bounds)  # the caller's own span stands for all of them in progress reports
            report = None if progress is None else lambda b, p: progress(b * scale, p * scale)
            results = [_decode_span_into(storage, f.key, ends.header, *bounds[0], fd, report)]
        results += [child.result() for child in others]
        pgnos = join_spans(ends, results)
    except (LTXError, OSError, WorkerDied) as exc:
        raise _StartOver from exc
    return ends.header, pgnos


class _StartOver(Exception):
    """A split decode failed after writing: restore again, in one process."""


def restore_into(
    storage: Storage,
    plan: list[ReplicaFile],
    out: BinaryIO,
    progress: Progress | None = None,
    *,
    jobs: int = 1,
) -> RestoreResult:
    """Write the database the plan describes into `out` (a seekable, writable binary file object).

    For embedding: `out` may be any file object; with a real file descriptor, runs of pages go
    out with one pwritev each (see `PageSink`). With `jobs` > 1 a large local file is decoded by
    that many processes at once (files still apply one after another, so newer pages win).
    """
    if not plan:
        raise RestoreError(Code.NO_SNAPSHOT, "empty restore plan")
    if not storage.fork_safe:
        jobs = 1  # see `Storage.fork_safe`
    prefetch = _Prefetch(storage, plan)
    try:
        return _restore_into(storage, plan, out, progress, jobs, prefetch)
    finally:
        prefetch.close()


def _restore_into(
    storage: Storage, plan: list[ReplicaFile], out: BinaryIO, progress: Progress | None, jobs: int, prefetch: _Prefetch
) -> RestoreResult:
    sink: PageSink | None = None
    commit = 0
    written = bytearray()  # one flag per page: has some file supplied it?
    far: set[int] = set()  # pages far beyond the flags, where one byte per page would cost gigabytes
    pages_written = 0
    bytes_read = 0
    settled_at = 0  # pages_written when the last background sync started
    try:
        for f in plan:
            if sink is not None and (pages_written - settled_at) * sink.page_size >= SETTLE_AFTER_BYTES:
                # what was written so far reaches the disk while the rest decode: the final fsync
                # then waits for the last few megabytes only
                sink.settle()
                settled_at = pages_written
            fd = _file_descriptor(out) if jobs > 1 and f.size >= SPLIT_MIN_BYTES and can_fork() else None
            if fd is not None:
                if sink is not None:
                    sink.flush()  # older pages must land before this file's workers write newer ones
                report = None
                if progress is not None:
                    report = functools.partial(_offset_progress, progress, bytes_read, pages_written, f.size)
                try:
                    done = _restore_file_in_spans(storage, f, fd, jobs, sink.page_size if sink else None, report)
                except _StartOver:
                    out.seek(0)
                    out.truncate(0)
                    return restore_into(storage, plan, out, progress, jobs=1)
                if done is not None:
                    hdr, pgnos = done
                    sink = sink or PageSink(out, hdr.page_size)
                    for pgno in pgnos:
                        try:
                            written[pgno] = 1
                        except IndexError:
                            _flag_beyond(written, far, pgno, hdr.commit)
                    pages_written += len(pgnos)
                    commit = hdr.commit
                    bytes_read += f.size
                    if progress is not None:
                        progress(bytes_read, pages_written)
                    continue
            whole = f.size <= WHOLE_READ_MAX_BYTES
            try:
                source = prefetch.read(f) if whole else storage.open(f.key)
            except FileNotFoundError:
                raise Vanished(f.key) from None
            except OSError as exc:
                raise RestoreError(Code.UNREADABLE, f"{f.key}: cannot open: {exc.strerror or exc}", f.key) from exc
            with contextlib.nullcontext() if isinstance(source, bytes) else source, _vanishing(f.key):
                try:
                    reader = LTXReader.from_bytes(source) if isinstance(source, bytes) else LTXReader(source)
                    hdr = reader.header
                    _check_names(hdr, f)
                    _check_page_size(hdr, sink.page_size if sink else None)
                    sink = sink or PageSink(out, hdr.page_size)
                    write = sink.write
                    file_commit = hdr.commit
                    for pgno, page in reader.pages():
                        if pgno > file_commit:  # the decoder names this only after the last page
                            raise LTXError(
                                Code.PAGE_BEYOND_COMMIT, f"page {pgno} is beyond commit {file_commit}", pgno=pgno
                            )
                        write(pgno, page)
                        try:
                            written[pgno] = 1
                        except IndexError:  # grown as pages come: a header may claim billions of pages
                            _flag_beyond(written, far, pgno, file_commit)
                        pages_written += 1
                        if progress is not None and pages_written & 1023 == 0:
                            progress(bytes_read + reader.position, pages_written)
                    commit = file_commit
                    bytes_read += reader.info.size if reader.info else 0
                except LTXError as exc:
                    raise RestoreError(exc.code, f"{f.key}: {exc.message}{exc.where}", f.key) from exc
        assert sink is not None
        sink.flush()
        page_size = sink.page_size
        lock = lock_pgno(page_size)
        count, first = _missing(written, far, commit, lock)
        if count:
            raise RestoreError(
                Code.UNRESTORABLE,
                f"the plan's files do not hold page {first} of {commit}"
                f" ({count} pages missing): Litestream's restore fails the same way",
            )
        out.truncate(commit * page_size)
        if progress is not None:
            progress(bytes_read, pages_written)
        return RestoreResult(plan, plan[-1].max_txid, page_size, commit, pages_written, bytes_read)
    finally:
        if sink is not None:
            sink.wait_settled()  # before anyone closes the file under its background sync


@contextlib.contextmanager
def _vanishing(key: str) -> Iterator[None]:
    """An object deleted while it is read in ranges (a large file on an object store) is `Vanished`."""
    try:
        yield
    except FileNotFoundError:
        raise Vanished(key) from None


class _Prefetch:
    """The plan's small files read ahead, in plan order, by `storage.concurrency` threads, with at
    most `budget` bytes held: an object store answers each GET in milliseconds, and a plan of
    thousands of L0 files would otherwise spend its time waiting on them one by one. A local
    directory (concurrency 1) reads each file when it is needed, as before.

    Reading starts at once, so the small files arrive while the plan's first (large) file is still
    being decoded. Workers claim files in plan order from a shared cursor rather than through one
    executor future per file: with thousands of files, the futures' own locking cost as much CPU
    as the GETs. Files are claimed in order and read in order, so the one being waited for is
    always claimed or claimable (the budget counts only files claimed and not yet read)."""

    def __init__(self, storage: Storage, plan: list[ReplicaFile], *, budget: int = 64 << 20) -> None:
        self._storage = storage
        self._queue = [f for f in plan if f.size <= WHOLE_READ_MAX_BYTES]
        self._index = {f.key: i for i, f in enumerate(self._queue)}
        self._budget = budget
        self._lock = threading.Lock()
        self._ready = threading.Condition(self._lock)  # a file arrived (the reader waits)
        self._space = threading.Condition(self._lock)  # the reader took a file (workers wait)
        self._next = 0  # the next file to claim
        self._held = 0  # bytes of files claimed and not yet read
        self._done: dict[int, bytes | BaseException] = {}
        self._closed = False
        self._threads: list[threading.Thread] = []
        if storage.concurrency > 1 and self._queue:
            for n in range(min(storage.concurrency, len(self._queue))):
                t = threading.Thread(target=self._work, name=f"ltxkit-prefetch-{n}", daemon=True)
                t.start()
                self._threads.append(t)

    def _work(self) -> None:
        queue, storage = self._queue, self._storage
        while True:
            with self._lock:
                while True:
                    if self._closed or self._next >= len(queue):
                        return
                    size = queue[self._next].size
                    if self._held == 0 or self._held + size <= self._budget:
                        break
                    self._space.wait()
                i = self._next
                self._next += 1
                self._held += size
            try:
                data: bytes | BaseException = storage.read_bytes(queue[i].key, listed_size=queue[i].size)
            except BaseException as exc:  # handed to the reader, raised where the file is read
                data = exc
            with self._lock:
                self._done[i] = data
                self._ready.notify()

    def read(self, f: ReplicaFile) -> bytes:
        i = self._index.get(f.key)
        if not self._threads or i is None:
            return self._storage.read_bytes(f.key, listed_size=f.size)
        with self._lock:
            while i not in self._done:
                self._ready.wait()
            data = self._done.pop(i)
            self._held -= f.size
            self._space.notify()
        if isinstance(data, BaseException):
            raise data
        return data

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._space.notify_all()
        for t in self._threads:
            t.join()


def _flag_beyond(written: bytearray, far: set[int], pgno: int, commit: int) -> None:
    """Flag a page past the end of `written`: grow it (doubling, up to `commit`) while pages stay
    dense, else keep the page in `far`."""
    if pgno <= 2 * len(written) + (1 << 24):
        _cover(written, max(pgno, min(commit, 2 * len(written))))
        written[pgno] = 1
    else:
        far.add(pgno)


def _missing(written: bytearray, far: set[int], commit: int, lock: int) -> tuple[int, int]:
    """(how many, the first) of pages 1..commit no file supplied, from the flags and `far`."""
    end = len(written)
    for pgno in far:
        if pgno < end:
            written[pgno] = 1
    count, first = missing_pages(written, min(commit, end - 1), lock) if end > 1 else (0, 0)
    if commit >= max(end, 1):
        more, first_more = missing_among(far, max(end, 1), commit, lock)
        count += more
        first = first or first_more
    return count, first


def _cover(written: bytearray, commit: int) -> None:
    """Make room for one flag per page up to `commit` (index 0 unused; pages past the end of
    `written` count as not written)."""
    if len(written) < commit + 1:
        written.extend(bytes(commit + 1 - len(written)))


def _offset_progress(progress: Progress, bytes_before: int, pages_before: int, size: int, b: int, p: int) -> None:
    progress(bytes_before + min(b, size), pages_before + p)


def _check_names(hdr: Header, f: ReplicaFile) -> None:
    if (hdr.min_txid, hdr.max_txid) != (f.min_txid, f.max_txid):
        raise LTXError(Code.FILENAME_MISMATCH, f"header holds TXIDs {hdr.min_txid:016x}-{hdr.max_txid:016x}")


def _check_page_size(hdr: Header, page_size: int | None) -> None:
    if page_size is not None and hdr.page_size != page_size:
        raise LTXError(Code.PAGE_SIZE_MISMATCH, f"page size {hdr.page_size}, the plan's is {page_size}")


def _file_descriptor(out: BinaryIO) -> int | None:
    try:
        out.flush()
        return out.fileno()
    except (AttributeError, OSError, ValueError):
        return None


def restore_to_path(
    storage: Storage,
    output: Path,
    *,
    txid: int | None = None,
    timestamp_ns: int | None = None,
    plan: list[ReplicaFile] | None = None,
    force: bool = False,
    integrity: str | None = None,
    progress: Progress | None = None,
    jobs: int = 1,
) -> RestoreResult:
    """Restore atomically to `output`: temp file beside it, fsync, rename, fsync the directory.

    `plan` defaults to `plan_for(storage, txid=..., timestamp_ns=...)`. With `integrity` ("quick"
    or "full") SQLite checks the temp file first and a failure leaves `output` as it was. An
    existing `output` (a regular file, never a link or a device) is replaced only with `force`,
    keeping its mode; its stale `-wal`/`-shm` go before the rename,
    so no crash can leave an old WAL beside the new database for SQLite to replay into it.
    """
    output = Path(output)
    if force:
        replaceable(output)  # refuse a link or a device now, before the work of a restore
    elif os.path.lexists(output):
        raise OutputExists(output)
    if not output.parent.is_dir():
        raise FileNotFoundError(errno.ENOENT, "no such directory", str(output.parent))
    if plan is None:
        plan = plan_for(storage, txid=txid, timestamp_ns=timestamp_ns)

    def check(tmp: Path) -> None:
        if integrity is not None:
            from ltxkit.sqlite import integrity_check

            problems = integrity_check(tmp, quick=integrity == "quick")
            if problems:
                pragma = "quick_check" if integrity == "quick" else "integrity_check"
                raise RestoreError(
                    Code.INTEGRITY_CHECK_FAILED,
                    f"{output}: restored database fails {pragma}: {problems[0]}; nothing written",
                )
        for suffix in ("-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(f"{output}{suffix}")

    with atomic_output(output, replace=force, check=check) as f:
        for attempt in range(1, REPLAN_ATTEMPTS + 1):
            try:
                return restore_into(storage, plan, f, progress, jobs=jobs)
            except Vanished as exc:
                if attempt == REPLAN_ATTEMPTS:
                    raise Vanished(
                        exc.key or "",
                        f"; {attempt} plans in a row lost a file so (retention deletes faster than this restore "
                        "reads: run it again, or with the replicator stopped)",
                    ) from None
            f.seek(0)
            f.truncate(0)
            plan = plan_for(storage, txid=txid, timestamp_ns=timestamp_ns)
    raise AssertionError("unreachable: the last attempt returns or raises")
