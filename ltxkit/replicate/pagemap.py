"""The published state, as page checksums: what every proof of a new file starts from.

A `PageMap` holds the LTX page checksum of every page 1..commit of the database state the replica
reaches at its latest TXID (the lock page holds 0: it is never stored and never counts). Its XOR
fold is that state's database checksum. The replicator keeps one in memory and saves it with its
position, so a file can be proven against the previous state without reading the replica back.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable
from dataclasses import dataclass

from ltxkit.format.checksum import CHECKSUM_FLAG, fold_page_checksums
from ltxkit.format.schema import lock_pgno


@dataclass(slots=True)
class PageMap:
    """Page checksums of one database state; `sums[pgno]` for pgno 1..commit (`sums[0]` unused).

    `xor` is their XOR (the flag bit left out), kept as `after` changes pages, so the state's
    database checksum costs nothing however large the database: the replicator asks for it on
    every sync, and verify's ledger check for every file. Left out (-1), it is folded from `sums`.
    """

    page_size: int
    sums: array  # array('Q'), len == commit + 1
    xor: int = -1

    def __post_init__(self) -> None:
        if self.xor < 0:
            self.xor = fold_page_checksums(self.sums) & ~CHECKSUM_FLAG

    @classmethod
    def empty(cls, page_size: int) -> PageMap:
        return cls(page_size, array("Q", [0]), 0)

    @property
    def commit(self) -> int:
        return len(self.sums) - 1

    @property
    def lock_pgno(self) -> int:
        return lock_pgno(self.page_size)

    def checksum(self) -> int:
        """The database checksum of this state (flag bit set, as LTX stores it)."""
        return CHECKSUM_FLAG | self.xor

    def after(self, commit: int, pages: Iterable[tuple[int, int]]) -> PageMap:
        """The state after a transition to `commit` pages that rewrites `pages` ((pgno, checksum)).

        Pages above `commit` go; new pages below it start at 0 (a proof requires each to be
        rewritten: `missing`).
        """
        sums = self.sums[: commit + 1]
        xor = self.xor
        if len(self.sums) > commit + 1:  # a shrink: the pages above the new commit leave the sum
            xor ^= fold_page_checksums(self.sums[commit + 1 :])
        if commit + 1 > len(sums):
            sums.frombytes(bytes(8 * (commit + 1 - len(sums))))
        for pgno, value in pages:
            xor ^= sums[pgno] ^ value
            sums[pgno] = value
        return PageMap(self.page_size, sums, xor & ~CHECKSUM_FLAG)

    def missing(self) -> list[int]:
        """Pages 1..commit (not the lock page) with no checksum: a state that cannot be restored."""
        lock = self.lock_pgno
        return [p for p, v in enumerate(self.sums) if p and not v and p != lock]

    def to_bytes(self) -> bytes:
        out = array("Q", self.sums)
        if out.itemsize != 8:  # pragma: no cover - 'Q' is 8 bytes on every platform CPython runs on
            raise RuntimeError("unsigned long long is not 8 bytes")
        return out.tobytes()

    @classmethod
    def from_bytes(cls, page_size: int, data: bytes) -> PageMap:
        sums = array("Q")
        sums.frombytes(data)
        if not sums:
            sums.append(0)
        return cls(page_size, sums)
