"""The proof a file must pass before the replicator publishes it: sans-I/O, a stream in, a state out.

The replicator says what it meant to publish (`Intent`: TXID, size, and the checksum of every page
as it read it from the *source*, plus the source state's database checksum). `prove` then decodes
the built file strictly, as any reader would, and checks that it is exactly that transition:

* the file is well-formed (every check of the strict decoder, file checksum included);
* its header says what was meant (TXIDs, page size, commit, the no-checksum flag Litestream needs);
* it holds exactly the intended pages, each equal to the source page (page checksums);
* a full file holds every page 1..commit; a file that raises commit holds every new page;
* the previous published state (`PageMap`) with this file's pages applied has the source state's
  database checksum.

The state it returns is computed from the file's decoded pages, so what the replicator records is
what a restore of the replica will produce.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import BinaryIO

from ltxkit.errors import LtxkitError
from ltxkit.format.checksum import page_checksum
from ltxkit.format.decoder import LTXReader
from ltxkit.format.errors import LTXError
from ltxkit.format.schema import FLAG_NO_CHECKSUM, Header
from ltxkit.replicate.pagemap import PageMap


class ProofError(LtxkitError):
    """A built file is not the transition it was meant to be; it must not be published."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason  # a stable word for logs and tests: proof-page-mismatch, or the LTX code

    def __str__(self) -> str:
        return f"{self.reason}: {self.message}"


@dataclass(frozen=True, slots=True)
class Intent:
    """What a file must do, from the source alone (never from the file)."""

    txid: int
    page_size: int
    commit: int
    full: bool  # holds every page 1..commit (the first file of a replica is then a snapshot)
    page_sums: dict[int, int]  # pgno -> checksum of the source page, for every page the file holds
    source_checksum: int  # database checksum of the source state the file leads to
    first_txid: int = 0  # the file's min TXID when it spans several (a compaction); 0: `txid`

    @property
    def min_txid(self) -> int:
        return self.first_txid or self.txid

    def header(self, *, timestamp: int, wal: tuple[int, int, int, int] = (32, 0, 0, 0)) -> Header:
        """The header that carries this intent (`wal`: offset, size, salt1, salt2 of its WAL range)."""
        offset, size, salt1, salt2 = wal
        return Header(
            flags=FLAG_NO_CHECKSUM,
            page_size=self.page_size,
            commit=self.commit,
            min_txid=self.min_txid,
            max_txid=self.txid,
            timestamp=timestamp,
            wal_offset=offset,
            wal_size=size,
            wal_salt1=salt1,
            wal_salt2=salt2,
        )


def prove(stream: BinaryIO, intent: Intent, previous: PageMap | None) -> PageMap:
    """Decode `stream` and prove it is `intent` applied to `previous`; return the state it reaches.

    `previous` is None only for a full file. Raises `ProofError` (a decoding defect's reason is
    its LTX code) on the first thing that does not hold.
    """
    found = prove_pages(stream, intent)
    if intent.full or previous is None:
        if not intent.full:
            raise ProofError("proof-no-previous-state", "an increment needs the previous state to be proven")
        base = PageMap.empty(intent.page_size)
    else:
        if previous.page_size != intent.page_size:
            raise ProofError(
                "proof-page-size", f"page size {intent.page_size} differs from the replica's {previous.page_size}"
            )
        base = previous
    after = base.after(intent.commit, found.items())
    missing = after.missing()
    if missing:
        code = "proof-snapshot-hole" if intent.full else "proof-growth-missing"
        raise ProofError(code, f"{len(missing)} page(s) of 1..{intent.commit} would be missing, first {missing[0]}")
    if after.checksum() != intent.source_checksum:
        raise ProofError(
            "proof-state-mismatch",
            f"the replica would reach database checksum {after.checksum():016x}, "
            f"the source state is {intent.source_checksum:016x}",
        )
    return after


def prove_pages(stream: BinaryIO, intent: Intent) -> dict[int, int]:
    """The part of the proof that needs no previous state: the file decodes strictly, its header
    says what was meant, and it holds exactly the intended pages with the intended bytes. Returns
    each page's checksum (what a compaction, whose previous state is not at hand, stops at)."""
    try:
        reader = LTXReader(stream)
        header = reader.header
        _check_header(header, intent)
        found: dict[int, int] = {}
        sums = intent.page_sums
        for pgno, data in reader.pages():
            value = page_checksum(pgno, data)
            expected = sums.get(pgno)
            if expected is None:
                raise ProofError("proof-unexpected-page", f"page {pgno} was not meant to be in the file")
            if value != expected:
                raise ProofError("proof-page-mismatch", f"page {pgno} differs from the source page")
            found[pgno] = value
    except LTXError as exc:
        raise ProofError(str(exc.code), f"the built file does not decode: {exc}") from exc
    if len(found) != len(sums):
        lost = sorted(set(sums) - set(found))
        raise ProofError("proof-page-missing", f"{len(lost)} page(s) missing from the file, first {lost[0]}")
    return found


def _check_header(header: Header, intent: Intent) -> None:
    wrong = []
    if header.flags != FLAG_NO_CHECKSUM:
        wrong.append(f"flags 0x{header.flags:x} (wanted the no-checksum flag only)")
    if header.page_size != intent.page_size:
        wrong.append(f"page size {header.page_size}")
    if header.commit != intent.commit:
        wrong.append(f"commit {header.commit} (wanted {intent.commit})")
    if (header.min_txid, header.max_txid) != (intent.min_txid, intent.txid):
        wrong.append(
            f"TXIDs {header.min_txid:016x}-{header.max_txid:016x} (wanted {intent.min_txid:016x}-{intent.txid:016x})"
        )
    if wrong:
        raise ProofError("proof-header", "header says " + ", ".join(wrong))
