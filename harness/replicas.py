"""Real replicas built by real Litestream, with marks (TXID, rows, content hash) to check restores."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import shutil
import time
from pathlib import Path
from typing import Any

from harness.common import FAST_LEVELS, FAST_SNAPSHOT, SNAPSHOT_LEVEL, TABLE
from harness.db import execute, logical_dump, make_db, pin_wal, row_count, write_rows
from harness.files import LtxName, list_ltx, ltx_timestamp_ms, max_txid
from harness.litestream import Replicator, replicate_once


@dataclasses.dataclass
class Mark:
    """A point in the history: after TXID ``txid`` the table held ``rows`` rows and these
    contents (sha256 over :func:`logical_dump`'s repr); ``timestamp_ms`` is the header time of
    the L0 file ending at ``txid`` (restore ``-timestamp`` with a later time includes it)."""

    txid: int
    rows: int
    dump_sha256: str
    timestamp_ms: int


@dataclasses.dataclass
class Replica:
    """A real replica produced by real Litestream, plus what is needed to check restores."""

    db_path: Path
    replica_dir: Path
    page_size: int
    max_txid: int
    marks: list[Mark] = dataclasses.field(default_factory=list)
    log_path: Path | None = None

    def files(self, level: int | None = None) -> list[LtxName]:
        return list_ltx(self.replica_dir, level)


@dataclasses.dataclass
class DamagedReplica(Replica):
    """A real replica with one shape of damage applied.

    ``shape`` is the LANDSCAPE.md row; ``natural`` is True when real Litestream produced the
    damage by itself; ``damaged_file`` is the file that was changed (or, for a TXID gap, the
    path of the file that was removed); ``detail`` says what was done.
    """

    shape: str = ""
    damaged_file: Path = dataclasses.field(default_factory=Path)
    natural: bool = False
    detail: str = ""


def dump_sha256(db_path: str | os.PathLike[str]) -> str:
    return hashlib.sha256(repr(logical_dump(db_path)).encode()).hexdigest()


def _mark(db_path: Path, replica_dir: Path, txid: int) -> Mark:
    l0 = [n for n in list_ltx(replica_dir, 0) if n.max_txid == txid]
    ts = ltx_timestamp_ms(l0[0].path) if l0 else 0
    return Mark(txid, row_count(db_path), dump_sha256(db_path), ts)


def _row_bytes_for(page_size: int) -> int:
    # Several rows per page, no overflow pages: inserts grow the table page by page.
    return max(64, page_size // 6)


def _once_chain(
    tmp: Path, name: str, page_size: int, increments: int, rows_per_increment: int
) -> tuple[Replica, contextlib.ExitStack]:
    """L0-only replica built with ``replicate -once``: one snapshot L0 then ``increments`` L0
    increments, each from one transaction of ``rows_per_increment`` rows.  The WAL pin stays
    open in the returned ExitStack so callers may keep extending the chain."""
    tmp = Path(tmp)
    db = make_db(tmp / f"{name}.db", page_size=page_size, rows=8, row_bytes=_row_bytes_for(page_size))
    rdir = tmp / f"{name}-replica"
    stack = contextlib.ExitStack()
    stack.enter_context(pin_wal(db))
    rep = Replica(db, rdir, page_size, 0)
    replicate_once(db, rdir)
    rep.marks.append(_mark(db, rdir, max_txid(rdir, 0)))
    for _ in range(increments):
        write_rows(db, rows_per_increment, size=_row_bytes_for(page_size), per_txn=rows_per_increment)
        replicate_once(db, rdir)
        rep.marks.append(_mark(db, rdir, max_txid(rdir, 0)))
    rep.max_txid = max_txid(rdir)
    return rep, stack


def make_once_replica(tmp: str | os.PathLike[str], page_size: int = 4096, increments: int = 4) -> Replica:
    """Deterministic L0-only replica (TXIDs 1..increments+1) via ``replicate -once``; ~50 ms per file."""
    rep, stack = _once_chain(Path(tmp), f"once{page_size}", page_size, increments, 6)
    stack.close()
    return rep


def make_replica(
    tmp: str | os.PathLike[str],
    page_size: int = 4096,
    *,
    with_compactions: bool = True,
    with_snapshots: bool = True,
    vacuum: bool = False,
    retention: bool = False,
    litestream_checkpoints: bool = False,
    name: str | None = None,
) -> Replica:
    """A realistic replica from the real daemon: L0 + L1/L2 compactions + L9 snapshots.

    History (every step is a real transaction followed by a real sync via the control socket):
      1. 24 base rows, daemon started -> L0 snapshot at TXID 1 (and an L9 snapshot ~1 s later);
      2. three single-row transactions, wait for L1; three more, wait for L1 again (so L1 holds
         several files), then for L2 (merging them) and L9;
      3. ``vacuum``: delete 2/3 of the rows, VACUUM, so the database *shrinks* mid-chain (later
         files have a smaller ``commit``), then three more rows;
      4. two more transactions, wait for L1 only (L1 now reaches past L2 and L9);
      5. ``retention``: with ``l0-retention: 500ms`` wait until Litestream deleted the oldest
         L0 files (already covered by L1), so early TXIDs live only in L1+/L9 and point-in-time
         restores to them fail with ``no matching backup files available``;
      6. stop the daemon (SIGTERM), then two more transactions uploaded with ``replicate -once``
         so the replica ends with L0 files no compaction covers yet.

    ``with_snapshots=False``: the daemon always writes an L9 snapshot about 1 s after start
    (whatever the interval), so the ``ltx/9`` directory is removed afterwards; the L0..L8 chain
    still starts at TXID 1.  ``with_compactions=False`` uses ``levels: []``.
    ``litestream_checkpoints``: ``min-checkpoint-page-count: 4`` so Litestream checkpoints (and
    the WAL restarts, new salts) several times mid-chain.  ``marks`` records (txid, rows, content
    hash, L0 timestamp) after each synced step for point-in-time tests (with ``retention`` the
    early ones are no longer restorable by TXID unless they end an L1+/L9 file).
    Takes ~3 s (compaction clocks are 500 ms / 1 s, snapshots 1 s).
    """
    tmp = Path(tmp)
    opts = (("c", with_compactions), ("s", with_snapshots), ("v", vacuum), ("r", retention))
    name = name or f"r{page_size}" + "".join(c for c, on in (*opts, ("k", litestream_checkpoints)) if on)
    row_bytes = _row_bytes_for(page_size)
    db = make_db(tmp / f"{name}.db", page_size=page_size, rows=24, row_bytes=row_bytes)
    rdir = tmp / f"{name}-replica"
    levels = FAST_LEVELS if with_compactions else ()
    kw: dict[str, Any] = {"levels": levels, "snapshot_interval": FAST_SNAPSHOT if with_snapshots else "24h"}
    if retention:
        if not with_compactions:
            raise ValueError("L0 retention only deletes files already compacted into L1")
        kw.update(l0_retention="500ms", l0_retention_check_interval="200ms")
    if litestream_checkpoints:
        kw["db_overrides"] = {"min-checkpoint-page-count": 4}
    rep = Replica(db, rdir, page_size, 0)
    with pin_wal(db), Replicator(db, rdir, **kw) as ls:
        rep.log_path = ls.log_path

        def synced() -> None:
            txid, _ = ls.sync()
            rep.marks.append(_mark(db, rdir, txid))

        synced()

        def catch_up(*levels: int) -> None:
            cur = max_txid(rdir, 0)
            for lvl in levels:
                ls.wait_for_level(lvl, cur)

        compacted = (1,) if with_compactions else ()
        write_rows(db, 3, size=row_bytes, after_txn=synced)
        catch_up(*compacted)
        write_rows(db, 3, size=row_bytes, after_txn=synced)
        catch_up(*compacted, *((2,) if with_compactions else ()), *((SNAPSHOT_LEVEL,) if with_snapshots else ()))
        if vacuum:
            execute(db, f"DELETE FROM {TABLE} WHERE id % 3 != 0")
            synced()
            execute(db, "VACUUM")
            synced()
            write_rows(db, 3, size=row_bytes, after_txn=synced)
        write_rows(db, 2, size=row_bytes, after_txn=synced)
        catch_up(*compacted)
        if retention:
            deadline = time.monotonic() + 15
            while any(n.min_txid == 1 for n in list_ltx(rdir, 0)):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"L0 retention never ran:\n{ls.log_text()[-3000:]}")
                time.sleep(0.05)
        ls.stop()
        for _ in range(2):
            write_rows(db, 1, size=row_bytes)
            replicate_once(db, rdir)
            rep.marks.append(_mark(db, rdir, max_txid(rdir, 0)))
    if not with_snapshots:
        shutil.rmtree(rdir / "ltx" / str(SNAPSHOT_LEVEL), ignore_errors=True)
    rep.max_txid = max_txid(rdir)
    return rep
