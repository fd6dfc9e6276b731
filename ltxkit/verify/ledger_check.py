"""Replay the latest restore plan from page checksums and hold each file to its ledger record.

No database is written: each file of the plan is decoded, its pages' checksums applied to a
`PageMap`, and the database checksum after it compared with what the replicator recorded when it
published the file (`ltxkit.replica.ledger`). A replica without a ledger (Litestream's) is not
touched by this check.
"""

from __future__ import annotations

from ltxkit.format.checksum import page_checksum
from ltxkit.format.decoder import LTXReader
from ltxkit.format.errors import Code, LTXError
from ltxkit.replica import ledger
from ltxkit.replica.layout import ReplicaFile
from ltxkit.replica.storage import Storage
from ltxkit.replicate.pagemap import PageMap
from ltxkit.verify.findings import Finding, ReplicaSummary


def check_ledger(storage: Storage, plan: list[ReplicaFile], summary: ReplicaSummary, label: str) -> None:
    recorded = {e.key for e in storage.list(ledger.LEDGER_DIR + "/")}
    if not recorded:
        return
    add = summary.findings.append
    state: PageMap | None = None
    proven = True
    for f in plan:
        try:
            reader = LTXReader.from_bytes(storage.read_bytes(f.key))
            hdr = reader.header
            base = state if state is not None and f.min_txid != 1 else PageMap.empty(hdr.page_size)
            sums = [(pgno, page_checksum(pgno, page)) for pgno, page in reader.pages()]
        except (LTXError, OSError):
            return  # the file checks name it; nothing to replay
        state = base.after(hdr.commit, sums)
        rkey = ledger.key(f.level, f.min_txid, f.max_txid)
        if rkey not in recorded:
            proven = False
            add(Finding(Code.LEDGER_GAP, label, f"{f.key} has no ledger record ({rkey})", {"key": f.key}))
            continue
        try:
            record = ledger.decode(storage.read_bytes(rkey))
        except (ledger.LedgerError, OSError) as exc:
            proven = False
            add(Finding(Code.LEDGER_DAMAGED, label, f"{rkey}: {exc}", {"key": rkey}))
            continue
        trailer = reader.info.trailer if reader.info else None
        if trailer is None or record.file_checksum != trailer.file_checksum:
            proven = False
            add(Finding(Code.LEDGER_MISMATCH, label, f"{rkey} is about another file than {f.key}", {"key": f.key}))
            continue
        if state.checksum() != record.after:
            proven = False
            add(
                Finding(
                    Code.LEDGER_MISMATCH,
                    label,
                    f"{f.key} leads to database checksum {state.checksum():016x}, "
                    f"the ledger recorded {record.after:016x} when it was published",
                    {"key": f.key, "txid": f.max_txid},
                )
            )
    summary.proven = proven and state is not None
