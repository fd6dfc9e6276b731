"""Damage shapes from LANDSCAPE.md, applied to real replicas."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sqlite3
from pathlib import Path
from typing import Any

from harness.common import SNAPSHOT_LEVEL, TABLE
from harness.db import checkpoint, execute, make_db, pin_wal, row_count, write_rows
from harness.files import LtxName, list_ltx, max_txid
from harness.litestream import Replicator, replicate_once, restore
from harness.ltxcodec import _Ltx, _read_ltx, _rewrite_ltx, _write_preserving_mtime
from harness.replicas import DamagedReplica, Replica, _mark, _once_chain


def _snapshot_holes(replica_dir: Path) -> list[tuple[LtxName, list[int]]]:
    """Files with min_txid == 1 whose pages are not exactly 1..commit (lock page aside)."""
    out = []
    for n in list_ltx(replica_dir):
        if n.min_txid != 1:
            continue
        f = _read_ltx(n.path)
        lock = 0x40000000 // f.page_size + 1
        want = [p for p in range(1, f.commit + 1) if p != lock]
        got = [p for p, _ in f.pages]
        if got != want:
            out.append((n, sorted(set(want) - set(got))))
    return out


def _kill9_checkpoint_history(
    tmp: Path, name: str, mode: str, *, rows_after_checkpoint: int, page_size: int = 4096
) -> tuple[Replica, str]:
    """The #752 recipe with the real daemon: replicate, ``kill -9``, keep writing, checkpoint
    while Litestream is down, (optionally) write more so the WAL restarts, restart Litestream
    and let it catch up.  Returns the replica and the daemon log."""
    row_bytes = 600 if page_size >= 4096 else 100
    db = make_db(tmp / f"{name}.db", page_size=page_size, rows=200, row_bytes=row_bytes)
    rdir = tmp / f"{name}-replica"
    rep = Replica(db, rdir, page_size, 0)
    with pin_wal(db), Replicator(db, rdir, levels=(), snapshot_interval="24h", log_level="debug") as ls:
        rep.log_path = ls.log_path

        def synced() -> None:
            rep.marks.append(_mark(db, rdir, ls.sync()[0]))

        synced()
        write_rows(db, 20, size=row_bytes, per_txn=2, after_txn=synced)
        ls.kill9()
        write_rows(db, 30, size=row_bytes, per_txn=3)
        checkpoint(db, mode)
        if rows_after_checkpoint:
            write_rows(db, rows_after_checkpoint, size=row_bytes, per_txn=2)
        ls.start()
        ls.wait_until_caught_up()
        ls.stop()
        log = ls.log_text()
    rep.max_txid = max_txid(rdir)
    return rep, log


def make_seed_shape(tmp: str | os.PathLike[str], *, checkpoint_mode: str = "TRUNCATE") -> DamagedReplica:
    """#752, "snapshot with a hole".

    First runs the real recipe (:func:`_kill9_checkpoint_history`: kill -9, writes and a
    ``wal_checkpoint(<checkpoint_mode>)`` while down, restart).  Litestream 0.5.17 does NOT
    produce a hole that way: after a TRUNCATE checkpoint it logs ``reason="wal truncated by
    another process"`` and uploads a complete full-database L0 file (min_txid = next TXID, all
    pages 1..commit), so the replica stays restorable.  (FULL/RESTART/PASSIVE checkpoints followed
    by more writes produce a different, silent failure: see :func:`make_mixed_state_shape`.)

    So when no natural hole exists, the shape is built by post-processing that real replica:
    ``replicate -once -force-snapshot`` writes a real L9 snapshot ``1-<max>``, then two adjacent
    pages in the middle of it are dropped (commit unchanged) and the file is re-encoded with a
    valid checksum and its original mtime.  ``litestream restore`` (which starts from that
    snapshot) fails with ``nonsequential page numbers in snapshot transaction: a,b`` - the text
    quoted in the seed report.  ``natural`` tells which path was taken.
    """
    tmp = Path(tmp)
    rep, _log = _kill9_checkpoint_history(tmp, "seed", checkpoint_mode, rows_after_checkpoint=10)
    holes = _snapshot_holes(rep.replica_dir)
    if holes:
        n, missing = holes[0]
        return DamagedReplica(
            **_fields(rep),
            shape="snapshot-hole",
            damaged_file=n.path,
            natural=True,
            detail=f"Litestream itself wrote {n.path.name} at L{n.level} without pages {missing}",
        )
    with pin_wal(rep.db_path):
        replicate_once(rep.db_path, rep.replica_dir, force_snapshot=True)
    snap = max(list_ltx(rep.replica_dir, SNAPSHOT_LEVEL), key=lambda n: n.max_txid)
    removed: list[int] = []

    def punch(f: _Ltx) -> None:
        mid = len(f.pages) // 2
        removed.extend(p for p, _ in f.pages[mid : mid + 2])
        del f.pages[mid : mid + 2]

    _rewrite_ltx(snap.path, punch)
    rep.max_txid = max_txid(rep.replica_dir)
    return DamagedReplica(
        **_fields(rep),
        shape="snapshot-hole",
        damaged_file=snap.path,
        natural=False,
        detail=f"dropped pages {removed} from real L9 snapshot {snap.path.name} (commit kept)",
    )


def make_mixed_state_shape(tmp: str | os.PathLike[str], *, checkpoint_mode: str = "FULL") -> DamagedReplica:
    """NATURAL silent divergence from the #752 recipe on Litestream 0.5.17 (no post-processing).

    kill -9 the daemon, write 30 rows, ``wal_checkpoint(FULL|RESTART|PASSIVE)`` while it is down,
    write 10 more rows (the writer restarts the WAL: new salts, frames from offset 0), restart.
    Litestream finds a stale frame of the old WAL generation at its saved offset, so its
    "last page matches" check passes; it treats the salt change as a benign restart and reads
    the new WAL from its start.  The pages that only the checkpoint carried into the database
    (e.g. the leaf that received rows while it was down) never reach the replica.  ``litestream
    restore`` exits 0, ``PRAGMA integrity_check`` says ``ok``, and rows are missing (observed:
    258 of 260).  ``damaged_file`` is the first L0 written after the restart; ``detail`` gives
    the row counts.  (A TRUNCATE checkpoint is handled correctly: full-database L0 upload.)
    """
    tmp = Path(tmp)
    rep, _log = _kill9_checkpoint_history(tmp, "mixed", checkpoint_mode, rows_after_checkpoint=10)
    first_after = [n for n in list_ltx(rep.replica_dir, 0) if n.min_txid > rep.marks[-1].txid]
    return DamagedReplica(
        **_fields(rep),
        shape="mixed-state",
        damaged_file=first_after[0].path if first_after else Path(),
        natural=True,
        detail=f"source has {row_count(rep.db_path)} rows after a {checkpoint_mode} checkpoint while down",
    )


def _fields(rep: Replica) -> dict[str, Any]:
    return {f.name: getattr(rep, f.name) for f in dataclasses.fields(Replica)}


def make_growth_hole_shape(tmp: str | os.PathLike[str], page_size: int = 4096) -> DamagedReplica:
    """#1199/#1323: an L0 increment raises ``commit`` but lacks one of the new pages.

    Built from a real ``-once`` L0 chain (no L1+/L9, so nothing else covers the file): in the
    second increment (TXID 3), a page above the previous commit that no later file rewrites is
    dropped and the file re-encoded.  Restoring the latest state (or any TXID >= 3) fails with
    ``nonsequential page numbers in snapshot transaction: a,b``; restoring TXID 2 still works.
    """
    tmp = Path(tmp)
    rep, stack = _once_chain(tmp, "growth", page_size, increments=4, rows_per_increment=18)
    stack.close()
    files = list_ltx(rep.replica_dir, 0)
    prev = _read_ltx(files[1].path)
    target = files[2]
    later = {p for n in files[3:] for p, _ in _read_ltx(n.path).pages}
    cur = _read_ltx(target.path)
    cands = [p for p, _ in cur.pages if prev.commit < p < cur.commit and p not in later]
    if not cands:
        raise RuntimeError(f"no droppable new page in {target.path.name}: prev commit {prev.commit}, {cur}")
    victim = cands[0]
    _rewrite_ltx(target.path, lambda f: f.pages.__setitem__(slice(None), [x for x in f.pages if x[0] != victim]))
    return DamagedReplica(
        **_fields(rep),
        shape="growth-hole",
        damaged_file=target.path,
        natural=False,
        detail=f"dropped page {victim} from {target.path.name}: commit {prev.commit}->{cur.commit}",
    )


def make_txid_gap_shape(tmp: str | os.PathLike[str], page_size: int = 4096) -> DamagedReplica:
    """#753/#847/#1084/#1458: one middle L0 file is missing (TXID 3 of 1..6).

    Real ``-once`` chain, so no L1+/L9 file covers the gap.  ``litestream restore`` (latest)
    fails with ``cannot calc restore plan: non-contiguous ltx files: have up to
    0000000000000002 but next file starts at 0000000000000004``; ``-txid 2`` still restores.
    ``damaged_file`` is the path that no longer exists.
    """
    tmp = Path(tmp)
    rep, stack = _once_chain(tmp, "gap", page_size, increments=5, rows_per_increment=6)
    stack.close()
    victim = next(n for n in list_ltx(rep.replica_dir, 0) if n.min_txid == 3)
    victim.path.unlink()
    return DamagedReplica(
        **_fields(rep),
        shape="txid-gap",
        damaged_file=victim.path,
        natural=False,
        detail=f"deleted {victim.path.name}",
    )


def make_truncated_shape(tmp: str | os.PathLike[str], page_size: int = 4096) -> DamagedReplica:
    """#1077: a file cut off in the middle of its page block (interrupted upload/copy).

    The L0 file for TXID 3 of a real ``-once`` chain is truncated halfway through the payload
    of its second frame.
    """
    tmp = Path(tmp)
    rep, stack = _once_chain(tmp, "trunc", page_size, increments=4, rows_per_increment=6)
    stack.close()
    victim = next(n for n in list_ltx(rep.replica_dir, 0) if n.min_txid == 3)
    f = _read_ltx(victim.path)
    _pgno, _off, _flen, poff, plen = f.frames[min(1, len(f.frames) - 1)]
    cut = poff + plen // 2
    data = victim.path.read_bytes()[:cut]
    _write_preserving_mtime(victim.path, data)
    return DamagedReplica(
        **_fields(rep),
        shape="truncated",
        damaged_file=victim.path,
        natural=False,
        detail=f"truncated to {cut} bytes",
    )


def make_flipped_byte_shape(tmp: str | os.PathLike[str], page_size: int = 4096) -> DamagedReplica:
    """Bit rot: one byte inside a compressed page payload of the TXID 3 L0 file is inverted.

    Only the file checksum (over decompressed pages) can catch this; see the smoke test for
    what ``litestream restore`` makes of it.
    """
    tmp = Path(tmp)
    rep, stack = _once_chain(tmp, "flip", page_size, increments=4, rows_per_increment=6)
    stack.close()
    victim = next(n for n in list_ltx(rep.replica_dir, 0) if n.min_txid == 3)
    f = _read_ltx(victim.path)
    # the largest payload: random row data, so a flipped byte lands in a literal run
    _pgno, _off, _flen, poff, plen = max(f.frames, key=lambda fr: fr[4])
    pos = poff + plen // 2
    data = bytearray(victim.path.read_bytes())
    data[pos] ^= 0xFF
    _write_preserving_mtime(victim.path, bytes(data))
    return DamagedReplica(
        **_fields(rep),
        shape="flipped-byte",
        damaged_file=victim.path,
        natural=False,
        detail=f"inverted byte at offset {pos} (payload of page {_pgno})",
    )


def quick_check(db_path: str | os.PathLike[str]) -> str:
    """``PRAGMA quick_check`` joined into one string; ``"ok"`` when healthy."""
    conn = sqlite3.connect(f"file:{Path(db_path)}?mode=ro&immutable=1", uri=True)
    try:
        return "\n".join(str(r[0]) for r in conn.execute("PRAGMA quick_check").fetchall())
    except sqlite3.DatabaseError as exc:
        return str(exc)
    finally:
        conn.close()


def make_stale_page_shape(tmp: str | os.PathLike[str], page_size: int = 4096) -> DamagedReplica:
    """#752's invisible cousin: every file well-formed, every checksum valid, the restore corrupt.

    Built from a real ``-once`` L0 chain (TXIDs 1..6: inserts up to TXID 4, then two increments
    that only rewrite rows in place, so they touch leaf pages only): the increment at TXID 4 is
    re-encoded without one page that an earlier file had set differently and no later file
    rewrites, as if the replicator had missed a page an application checkpoint moved into the
    database. The stale copy from an older file wins, so the restores of TXID 4 onwards fail
    ``quick_check`` while TXID 3 and earlier restore clean; ``litestream restore`` "succeeds" on
    all of them. The page dropped is the first candidate whose stale copy ``quick_check`` catches.
    """
    tmp = Path(tmp)
    rep, stack = _once_chain(tmp, "stale", page_size, increments=3, rows_per_increment=24)
    with stack:
        for i in range(2):
            execute(rep.db_path, f"UPDATE {TABLE} SET v = zeroblob(length(v)) WHERE id % 5 = ?", (i,))
            replicate_once(rep.db_path, rep.replica_dir)
            rep.marks.append(_mark(rep.db_path, rep.replica_dir, max_txid(rep.replica_dir, 0)))
    rep.max_txid = max_txid(rep.replica_dir)
    files = list_ltx(rep.replica_dir, 0)
    target = next(n for n in files if n.min_txid == 4)
    earlier = {p for n in files if n.max_txid < 4 for p, _ in _read_ltx(n.path).pages}
    later = {p for n in files if n.min_txid > 4 for p, _ in _read_ltx(n.path).pages}
    original = target.path.read_bytes()
    st = target.path.stat()
    cur = _read_ltx(target.path)
    # a b-tree page first; page 1 (the header and schema) last
    for victim in sorted((p for p, _ in cur.pages if p in earlier and p not in later), key=lambda p: (p == 1, p)):

        def drop(f: _Ltx, v: int = victim) -> None:
            f.pages[:] = [x for x in f.pages if x[0] != v]

        _rewrite_ltx(target.path, drop)
        probe = tmp / f"stale-probe-{victim}.db"
        res = restore(rep.replica_dir, probe)
        said = quick_check(probe) if res.returncode == 0 else "restore failed"
        with contextlib.suppress(FileNotFoundError):
            probe.unlink()
        if res.returncode == 0 and said != "ok":
            return DamagedReplica(
                **_fields(rep),
                shape="stale-page",
                damaged_file=target.path,
                natural=False,
                detail=f"dropped page {victim} from {target.path.name}; quick_check says: {said.splitlines()[0]}",
            )
        target.path.write_bytes(original)
        os.utime(target.path, ns=(st.st_atime_ns, st.st_mtime_ns))
    raise RuntimeError(f"no page of {target.path.name} leaves a restore that quick_check refuses")
