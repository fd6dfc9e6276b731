"""Build small, valid replicas in Litestream's layout with ltxkit's own encoder (unit tests only).

Interop is proven elsewhere against the real Litestream; these replicas exercise plan and
verify logic where exact TXID layouts matter.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from unittest import mock

from ltxkit import restore as restore_mod
from ltxkit.format import LTXWriter
from ltxkit.format.schema import FLAG_NO_CHECKSUM, Header, format_filename, lock_pgno
from tests.sqlite_pages import sound_page

PAGE = 512


def page_bytes(pgno: int, version: int, page_size: int = PAGE) -> bytes:
    """A recognisable page: its number and version repeated."""
    stamp = f"p{pgno}v{version};".encode()
    return (stamp * (page_size // len(stamp) + 1))[:page_size]


@dataclass
class Db:
    """A model database: pgno -> bytes; each commit bumps the version of the pages it writes."""

    page_size: int = PAGE
    pages: dict[int, bytes] = field(default_factory=dict)
    commit: int = 0
    txid: int = 0
    sound: bool = False  # every state a database SQLite accepts (`tests.sqlite_pages`)

    def write(self, pgnos: list[int], commit: int | None = None) -> dict[int, bytes]:
        self.txid += 1
        new_commit = max(self.commit, max(pgnos, default=0)) if commit is None else commit
        touched = set(pgnos)
        if self.sound and new_commit != self.commit:  # SQLite rewrites its header and freelist
            touched |= {1, 2} & set(range(1, new_commit + 1))
        changed = {
            p: sound_page(p, self.page_size, new_commit, self.txid, page_bytes(p, self.txid, self.page_size))
            if self.sound
            else page_bytes(p, self.txid, self.page_size)
            for p in sorted(touched)
        }
        self.pages.update(changed)
        self.commit = new_commit
        for p in [p for p in self.pages if p > self.commit]:
            del self.pages[p]
        return changed

    def image(self) -> bytes:
        lock = lock_pgno(self.page_size)
        return b"".join(
            bytes(self.page_size) if p == lock else self.pages[p] for p in range(1, self.commit + 1)
        )


def write_ltx(
    root: Path,
    level: int,
    min_txid: int,
    max_txid: int,
    pages: dict[int, bytes],
    commit: int,
    *,
    page_size: int = PAGE,
    timestamp: int = 1_700_000_000_000,
    flags: int = FLAG_NO_CHECKSUM,
) -> Path:
    path = root / "ltx" / str(level) / format_filename(min_txid, max_txid)
    path.parent.mkdir(parents=True, exist_ok=True)
    header = Header(flags=flags, page_size=page_size, commit=commit, min_txid=min_txid, max_txid=max_txid,
                    timestamp=timestamp + max_txid)
    with path.open("wb") as fh:
        w = LTXWriter(fh, header)
        for pgno in sorted(pages):
            if pgno <= commit and pgno != lock_pgno(page_size):
                w.write_page(pgno, pages[pgno])
        w.close()
    ts_ns = header.timestamp * 1_000_000
    os.utime(path, ns=(ts_ns, ts_ns))
    return path


def simple_chain(root: Path, n: int = 5, page_size: int = PAGE) -> Db:
    """Snapshot at TXID 1 (8 pages), then n-1 single-TXID increments at level 0; every state is a
    database SQLite accepts, so `ltxkit verify`'s content check passes on it."""
    db = Db(page_size=page_size, sound=True)
    db.write(list(range(1, 9)))
    write_ltx(root, 0, 1, 1, dict(db.pages), db.commit, page_size=page_size)
    for i in range(2, n + 1):
        changed = db.write([1, (i % 8) + 1, 7 + i])
        write_ltx(root, 0, i, i, changed, db.commit, page_size=page_size)
    return db


@contextmanager
def split_spy(threshold: int) -> Iterator[list[str]]:
    """Lower restore's span threshold; yield the keys of the files that really were decoded in spans."""
    split: list[str] = []
    real = restore_mod._restore_file_in_spans

    def spy(storage, f, *args):  # type: ignore[no-untyped-def]
        done = real(storage, f, *args)
        if done is not None:
            split.append(f.key)
        return done

    with mock.patch.object(restore_mod, "SPLIT_MIN_BYTES", threshold), mock.patch.object(
        restore_mod, "_restore_file_in_spans", spy
    ):
        yield split
