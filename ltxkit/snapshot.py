"""Encode a live database into a verified LTX snapshot (used by `snapshot` and `repair`)."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from ltxkit.errors import UsageError
from ltxkit.format.decoder import LTXReader
from ltxkit.format.encoder import LTXWriter
from ltxkit.format.schema import Header
from ltxkit.replica.storage import atomic_output
from ltxkit.sqlite import DatabaseView, consistent_view, wal_and_shm


@dataclass(frozen=True, slots=True)
class SnapshotInfo:
    page_size: int
    commit: int
    max_txid: int
    timestamp_ms: int
    post_apply_checksum: int


def encode_snapshot(
    view: DatabaseView, out: BinaryIO, *, max_txid: int, timestamp_ms: int | None = None, checksums: bool = True
) -> SnapshotInfo:
    """Write every page of `view` as a snapshot (TXIDs 1..max_txid).

    With `checksums` the file tracks the database checksum (post-apply checksum set). Litestream
    0.5.x cannot restore a plan whose last file tracks checksums (its restore compactor writes
    no-checksum output and refuses to carry a post-apply checksum over), so files meant for a
    Litestream replica are written with `checksums=False`, as Litestream itself writes them.
    """
    ts = int(time.time() * 1000) if timestamp_ms is None else timestamp_ms
    header = Header.snapshot(view.page_size, view.commit, max_txid, ts, checksums=checksums)
    writer = LTXWriter(out, header)
    for pgno, page in view.pages():
        writer.write_page(pgno, page)
    trailer = writer.close()
    return SnapshotInfo(view.page_size, view.commit, max_txid, ts, trailer.post_apply_checksum)


def verify_file(path: Path) -> None:
    """Decode a just-written file strictly; raises LTXError on any defect."""
    with path.open("rb") as fh:
        LTXReader(fh).read_all()


def refuse_database_files(db: Path, output: Path) -> None:
    """UsageError when `output` is `db` (by any path or link) or one of its `-wal`/`-shm`."""
    ours = [Path(os.path.realpath(db)), *wal_and_shm(db)]
    there = Path(os.path.realpath(output))
    if there in ours:
        raise UsageError(f"{output}: is the database {db} or its WAL; refusing to write a snapshot over it")


def write_snapshot_file(
    db: Path, output: Path, *, max_txid: int, checksums: bool = True, replace: bool = False
) -> SnapshotInfo:
    """Snapshot `db` into `output`, verified before it appears (`replace`: an existing one may go).

    Never over the database itself or its `-wal`/`-shm`, `replace` or not: a mistyped `-o app.db
    --force` would put a snapshot where the data was."""
    refuse_database_files(db, output)
    with consistent_view(db) as view, atomic_output(output, replace=replace, check=verify_file) as fh:
        return encode_snapshot(view, fh, max_txid=max_txid, checksums=checksums)
