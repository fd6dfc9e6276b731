"""Hold every file of a replica to its ledger record, so every restore point is proven.

A restore plan is a full file followed by files that each start where the one before ended. So
if every file, applied to the database state just before its first TXID, reaches the database
checksum the replicator recorded when it published that file, then every plan — and so every
restore point, at any level — reaches a recorded state. That is what this check shows, from page
checksums alone, without writing a database:

- Files are taken in order of their first TXID. The state each file reaches (a `PageMap`: page
  checksums and their XOR) is kept while a later file may start from it, so every file is applied
  to the state before it, whichever level led there (or, as Litestream's plans allow, to a state
  inside its own range); only a few states are alive at once.
- The database checksum each file reaches is compared with its record. A file that starts where
  no file ends is proven from nothing if it holds every page (a snapshot, a full resync); else no
  restore plan can read it, so it is no restore point (the TXID rules name any gap).
- `PageMap` keeps its XOR as pages change: applying a file costs its own pages plus one copy of
  the array, not a fold over the whole database.

A replica without a ledger (Litestream's) is not touched by this check. Files without a record
are one `ledger-gap` warning (a replicator killed between a file and its record, or files
Litestream wrote after a hand-over); a record that disagrees is `ledger-mismatch`; a record that
does not parse is `ledger-damaged`; records of files newer than the replica's newest file are
`ledger-ahead`: a file is published before its record, and no retention deletes the newest TXID,
so files the replica had are gone (deleted by hand, or by a bucket's lifecycle rule).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from ltxkit.format.checksum import page_checksum
from ltxkit.format.decoder import LTXReader
from ltxkit.format.errors import Code, LTXError
from ltxkit.format.schema import lock_pgno
from ltxkit.replica import ledger
from ltxkit.replica.layout import ReplicaFile
from ltxkit.replica.storage import Storage
from ltxkit.replicate.pagemap import PageMap
from ltxkit.verify.findings import FileCheck, Finding, ReplicaSummary

WHOLE_READ_MAX_BYTES = 8 << 20  # larger files are streamed, not read into memory


@dataclass(slots=True)
class _Decoded:
    commit: int
    page_size: int
    pages: list[tuple[int, int]]  # (pgno, page checksum)
    file_checksum: int

    @property
    def full(self) -> bool:
        """Holds every page 1..commit (the lock page excepted): needs no earlier state."""
        lock = lock_pgno(self.page_size)
        return len(self.pages) == self.commit - (1 if self.commit >= lock else 0)


def _decode(storage: Storage, f: ReplicaFile, fc: FileCheck) -> _Decoded | None:
    """The file's pages as page checksums: those its file check kept, else decoded here."""
    if fc.page_sums is not None and fc.header is not None and fc.trailer is not None:
        pages = list(zip(fc.pgnos, fc.page_sums, strict=True))
        return _Decoded(fc.header.commit, fc.header.page_size, pages, fc.trailer.file_checksum)
    try:
        if f.size <= WHOLE_READ_MAX_BYTES:
            reader = LTXReader.from_bytes(storage.read_bytes(f.key))
            pages = [(pgno, page_checksum(pgno, page)) for pgno, page in reader.pages()]
        else:
            with storage.open(f.key) as stream:
                reader = LTXReader(stream)
                pages = [(pgno, page_checksum(pgno, page)) for pgno, page in reader.pages()]
    except (LTXError, OSError):
        return None  # the file checks name it
    hdr = reader.header
    trailer = reader.info.trailer if reader.info else None
    return _Decoded(hdr.commit, hdr.page_size, pages, trailer.file_checksum if trailer else 0)


def _by_first_txid(files: list[ReplicaFile]) -> Iterator[tuple[int, list[ReplicaFile]]]:
    groups: dict[int, list[ReplicaFile]] = {}
    for f in files:
        groups.setdefault(f.min_txid, []).append(f)
    for min_txid in sorted(groups):
        yield min_txid, sorted(groups[min_txid], key=lambda f: (f.max_txid, f.level))


def _start(reached: dict[int, PageMap], f: ReplicaFile, decoded: _Decoded) -> PageMap | None:
    """The state `f` applies to: the one just before it, else (as Litestream's plans allow) one
    inside its range, since `f` holds every page its TXIDs changed; a full file needs none."""
    if f.min_txid == 1:
        return PageMap.empty(decoded.page_size)
    exact = reached.get(f.min_txid - 1)
    if exact is not None:
        return exact
    inside = [t for t in reached if f.min_txid - 1 <= t < f.max_txid]
    if inside:
        return reached[max(inside)]
    return PageMap.empty(decoded.page_size) if decoded.full else None


def ledger_keys(storage: Storage, *, top: frozenset[str] | None = None) -> set[str]:
    """The keys of the replica's ledger records (none: the replica keeps no ledger). `top`: the
    replica's top names, when the caller has them (`Storage.top_names`): no ledger, no listing."""
    if top is not None and ledger.LEDGER_DIR not in top:
        return set()
    return {e.key for e in storage.list(ledger.LEDGER_DIR + "/")}


def check_ledger(
    storage: Storage,
    files: list[ReplicaFile],
    checks: dict[str, FileCheck],
    summary: ReplicaSummary,
    label: str,
    recorded: set[str],
) -> None:
    """Prove every file (and so every restore point) against the ledger records `recorded` (from
    `ledger_keys`); see the module docstring."""
    if not recorded:
        return
    add = summary.findings.append
    _ahead(files, recorded, add, label)
    usable = [f for f in files if not checks[f.key].broken and checks[f.key].header is not None]
    reached: dict[int, PageMap] = {}  # TXID -> the state there, while still of use
    trusted: set[int] = set()  # TXIDs whose kept state a record confirmed
    unrecorded: list[str] = []
    proven_points: set[int] = set()
    disproven: set[int] = set()  # restore points a file reaches against its record
    unproven = len(usable) != len(files)
    for min_txid, group in _by_first_txid(usable):
        for stale in [t for t in reached if t < min_txid - 1]:
            del reached[stale]  # every file still to come starts later
        for f in group:
            decoded = _decode(storage, f, checks[f.key])
            if decoded is None:
                unproven = True
                continue
            start = _start(reached, f, decoded)
            if start is None:
                continue  # no restore plan can read it: nothing ends where it could start
            state = start.after(decoded.commit, decoded.pages)
            rkey = ledger.key(f.level, f.min_txid, f.max_txid)
            holds = False
            if rkey not in recorded:
                unrecorded.append(f.key)
            elif _holds(storage, f, rkey, decoded, state, add, label):
                holds = True
                proven_points.add(f.max_txid)
            else:
                unproven = True
                disproven.add(f.max_txid)
            if holds and f.max_txid not in trusted:  # a proven state replaces an unproven one
                reached[f.max_txid] = state
                trusted.add(f.max_txid)
            else:
                reached.setdefault(f.max_txid, state)
    if unrecorded:
        more = f" and {len(unrecorded) - 1} more" if len(unrecorded) > 1 else ""
        add(
            Finding(
                Code.LEDGER_GAP,
                label,
                f"{unrecorded[0]}{more} have no ledger record: their restore points are not proven",
                {"key": unrecorded[0], "count": len(unrecorded)},
            )
        )
    summary.proven = not unproven and not unrecorded and bool(proven_points)
    summary.proven_points = len(proven_points - disproven)


def _ahead(files: list[ReplicaFile], recorded: set[str], add: Callable[[Finding], None], label: str) -> None:
    """Records of files newer than every file listed. The ledger is listed before the files, so a
    replicator publishing meanwhile cannot put a record here whose file the listing missed."""
    newest = max((f.max_txid for f in files), default=0)
    ahead = sorted(
        (txid, rkey) for rkey in recorded if (txid := ledger.max_txid_of(rkey)) is not None and txid > newest
    )
    if not ahead:
        return
    top, first = ahead[-1][0], ahead[0][1]
    more = f" and {len(ahead) - 1} more" if len(ahead) > 1 else ""
    add(
        Finding(
            Code.LEDGER_AHEAD,
            label,
            f"{first}{more}: the ledger records files published up to TXID {top:016x}, and the replica ends "
            f"at {newest:016x}: files it published are gone (their commits are in no restore point)",
            {"record": first, "records": [rkey for _txid, rkey in ahead], "txid": top},
        )
    )


def _holds(
    storage: Storage,
    f: ReplicaFile,
    rkey: str,
    decoded: _Decoded,
    state: PageMap,
    add: Callable[[Finding], None],
    label: str,
) -> bool:
    # "record": a record that is itself wrong (it does not parse, or it is about another file),
    # which repair may set aside: ltxkit's own proof, never the replica's data
    try:
        record = ledger.decode(storage.read_bytes(rkey))
    except ledger.LedgerError as exc:
        add(Finding(Code.LEDGER_DAMAGED, label, f"{rkey}: {exc}", {"key": rkey, "record": rkey}))
        return False
    except FileNotFoundError:  # listed, then deleted: retention (with its file) while verify read
        why = f"{rkey} was deleted while verify read the ledger (retention at work beside verify?)"
        add(Finding(Code.CHANGED_DURING_CHECK, label, why, {"key": rkey}))
        return False
    except OSError as exc:
        add(Finding(Code.LEDGER_DAMAGED, label, f"{rkey}: {exc}", {"key": rkey}))
        return False
    if record.file_checksum != decoded.file_checksum:
        why = f"{rkey} is about another file than {f.key}"
        add(Finding(Code.LEDGER_MISMATCH, label, why, {"key": f.key, "record": rkey}))
        return False
    if state.checksum() != record.after:
        add(
            Finding(
                Code.LEDGER_MISMATCH,
                label,
                f"{f.key} leads to database checksum {state.checksum():016x}, "
                f"the ledger recorded {record.after:016x} when it was published",
                {"key": f.key, "txid": f.max_txid},
            )
        )
        return False
    return True
