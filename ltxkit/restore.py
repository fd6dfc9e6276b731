"""Restore a database from a replica: Litestream's plan, straight from the files, every page verified.

Litestream restores by merging the plan's files through its compactor into a new LTX stream and
decoding that again. The result is simply "newest page wins, pages above the final commit dropped,
lock page zero", so ltxkit streams each planned file once, oldest first, writing every page at its
offset. Each file's checksums are verified as it streams; a damaged file aborts the restore and
nothing is left at the output path.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from ltxkit.format.decoder import LTXReader
from ltxkit.format.errors import Code, LTXError
from ltxkit.pagesink import PageSink
from ltxkit.replica.layout import PlanError, ReplicaFile, list_replica, restore_plan
from ltxkit.replica.storage import Storage, atomic_output

Progress = Callable[[int, int], None]  # (bytes of LTX read so far, pages written so far)


class RestoreError(Exception):
    """A restore that cannot be done; `code` is the verify code, `key` the file it is about."""

    def __init__(self, code: Code, message: str, key: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.key = key


@dataclass(slots=True)
class RestoreResult:
    plan: list[ReplicaFile]
    txid: int
    page_size: int
    commit: int
    pages_written: int
    bytes_read: int


def plan_for(storage: Storage, *, txid: int | None = None, timestamp_ms: int | None = None) -> list[ReplicaFile]:
    """Litestream's restore plan for this replica, or RestoreError with the verify code."""
    try:
        return restore_plan(list_replica(storage).files, txid=txid, timestamp_ms=timestamp_ms)
    except PlanError as exc:
        raise RestoreError(
            exc.code, f"cannot make a restore plan: {exc.message}", str(exc.context.get("key") or "")
        ) from exc


def restore_into(
    storage: Storage, plan: list[ReplicaFile], out: BinaryIO, progress: Progress | None = None
) -> RestoreResult:
    """Write the database the plan describes into `out` (a seekable, writable binary file object).

    For embedding: `out` may be any file object; with a real file descriptor, runs of pages go
    out with one pwritev each (see `PageSink`).
    """
    if not plan:
        raise RestoreError(Code.NO_SNAPSHOT, "empty restore plan")
    sink: PageSink | None = None
    commit = 0
    written = bytearray()  # one flag per page: has some file supplied it?
    pages_written = 0
    bytes_read = 0
    for f in plan:
        try:
            stream = storage.open(f.key)
        except OSError as exc:
            raise RestoreError(Code.UNREADABLE, f"{f.key}: cannot open: {exc.strerror or exc}", f.key) from exc
        with stream:
            try:
                reader = LTXReader(stream)
                hdr = reader.header
                if (hdr.min_txid, hdr.max_txid) != (f.min_txid, f.max_txid):
                    raise LTXError(
                        Code.FILENAME_MISMATCH, f"header holds TXIDs {hdr.min_txid:016x}-{hdr.max_txid:016x}"
                    )
                if sink is None:
                    sink = PageSink(out, hdr.page_size)
                elif hdr.page_size != sink.page_size:
                    raise LTXError(
                        Code.PAGE_SIZE_MISMATCH, f"page size {hdr.page_size}, the plan's is {sink.page_size}"
                    )
                if len(written) < hdr.commit + 1:
                    written.extend(bytes(hdr.commit + 1 - len(written)))
                write = sink.write
                file_commit = hdr.commit
                for pgno, page in reader.pages():
                    if pgno > file_commit:  # the decoder names this only after the last page
                        raise LTXError(
                            Code.PAGE_BEYOND_COMMIT, f"page {pgno} is beyond commit {file_commit}", pgno=pgno
                        )
                    write(pgno, page)
                    written[pgno] = 1
                    pages_written += 1
                    if progress is not None and pages_written & 1023 == 0:
                        progress(bytes_read + reader.position, pages_written)
                commit = file_commit
                bytes_read += reader.info.size if reader.info else 0
            except LTXError as exc:
                raise RestoreError(exc.code, f"{f.key}: {exc}", f.key) from exc
    assert sink is not None
    sink.flush()
    page_size = sink.page_size
    lock = (0x40000000 // page_size) + 1
    missing = [p for p in range(1, commit + 1) if p != lock and not written[p]]
    if missing:
        raise RestoreError(
            Code.UNRESTORABLE,
            f"the plan's files do not hold page {missing[0]} of {commit}"
            f" ({len(missing)} pages missing): Litestream's restore fails the same way",
        )
    out.truncate(commit * page_size)
    if progress is not None:
        progress(bytes_read, pages_written)
    return RestoreResult(plan, plan[-1].max_txid, page_size, commit, pages_written, bytes_read)


def restore_to_path(
    storage: Storage,
    output: Path,
    *,
    txid: int | None = None,
    timestamp_ms: int | None = None,
    force: bool = False,
    progress: Progress | None = None,
) -> RestoreResult:
    """Restore atomically to `output`: temp file beside it, fsync, rename, fsync the directory."""
    output = Path(output)
    if output.exists() and not force:
        raise FileExistsError(f"{output}: already exists (use --force to replace it)")
    plan = plan_for(storage, txid=txid, timestamp_ms=timestamp_ms)
    with atomic_output(output) as f:
        result = restore_into(storage, plan, f, progress)
    # a stale WAL beside the new database would be replayed into it by SQLite
    for suffix in ("-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(f"{output}{suffix}")
    return result
