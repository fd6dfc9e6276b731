"""A database that straddles the lock page (the page holding byte 2^30) restores correctly.

SQLite never stores the lock page, LTX files never carry it, and a restore must write zeros
there while every other page lands at its own offset. Any such database is at least 1 GiB, so
the pages here are mostly zeros (they compress to almost nothing) and the test is marked slow.
The real `litestream restore` of the same replica is the oracle: both outputs must be identical.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

import harness as H
from ltxkit.format import LTXWriter
from ltxkit.format.schema import FLAG_NO_CHECKSUM, Header, format_filename, lock_pgno
from ltxkit.replica.storage import LocalStorage
from ltxkit.restore import restore_to_path

pytestmark = [pytest.mark.slow, pytest.mark.litestream]


def page(pgno: int, version: int, page_size: int) -> bytes:
    """Mostly zeros, with a stamp at both ends so a page written at the wrong offset shows."""
    stamp = f"pgno {pgno} version {version};".encode()
    return stamp + bytes(page_size - 2 * len(stamp)) + stamp


def write_file(root: Path, min_txid: int, max_txid: int, commit: int, pages: Iterator[tuple[int, bytes]],
               page_size: int) -> Path:
    path = root / "ltx" / "0" / format_filename(min_txid, max_txid)
    path.parent.mkdir(parents=True, exist_ok=True)
    header = Header(flags=FLAG_NO_CHECKSUM, page_size=page_size, commit=commit, min_txid=min_txid,
                    max_txid=max_txid, timestamp=1_700_000_000_000 + max_txid)
    with path.open("wb") as fh:
        w = LTXWriter(fh, header)
        for pgno, data in pages:
            w.write_page(pgno, data)
        w.close()
    return path


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 22):
            h.update(chunk)
    return h.hexdigest()


@pytest.mark.parametrize("page_size", [65536, 4096])
def test_restore_straddling_the_lock_page(tmp_path: Path, page_size: int) -> None:
    lock = lock_pgno(page_size)
    assert (lock - 1) * page_size == 1 << 30
    commit = lock + 3
    replica = tmp_path / "replica"
    # TXID 1: a snapshot of every page 1..commit but the lock page
    write_file(replica, 1, 1, commit, ((p, page(p, 1, page_size)) for p in range(1, commit + 1) if p != lock),
               page_size)
    # TXID 2: rewrites the pages on both sides of the lock page and grows the database by two pages
    grown = commit + 2
    changed = [1, lock - 1, lock + 1, commit + 1, commit + 2]
    write_file(replica, 2, 2, grown, ((p, page(p, 2, page_size)) for p in changed), page_size)

    ours = tmp_path / "ours.db"
    result = restore_to_path(LocalStorage(replica), ours)
    assert (result.commit, result.page_size) == (grown, page_size)
    assert ours.stat().st_size == grown * page_size
    with ours.open("rb") as fh:

        def read(pgno: int) -> bytes:
            return os.pread(fh.fileno(), page_size, (pgno - 1) * page_size)

        assert read(lock) == bytes(page_size)  # zeros at the lock page
        for p in changed:
            assert read(p) == page(p, 2, page_size), p
        for p in (2, lock - 2, lock + 2, commit):
            assert read(p) == page(p, 1, page_size), p

    theirs = tmp_path / "theirs.db"
    r = H.restore(replica, theirs, timeout=600)
    assert r.returncode == 0, r.stderr
    assert sha256(ours) == sha256(theirs)

    # point in time: the snapshot alone
    ours1, theirs1 = tmp_path / "ours1.db", tmp_path / "theirs1.db"
    restore_to_path(LocalStorage(replica), ours1, txid=1)
    assert H.restore(replica, theirs1, txid=1, timeout=600).returncode == 0
    assert ours1.stat().st_size == commit * page_size
    assert sha256(ours1) == sha256(theirs1)
    for db in (ours, theirs, ours1, theirs1):  # pytest keeps tmp dirs of recent runs: drop the GiBs
        db.unlink()
