"""The checksum ledger: for each LTX file ltxkit publishes, a small record of the database state
the replica reaches with it, kept beside the LTX files where Litestream never looks.

Litestream 0.5.x cannot restore a checksum-tracked file at the end of a restore plan, so files
meant for it carry no database checksums; the proof that a restore point is the state the
replicator read lives here instead. One object per LTX file (`ledger/<level>/<min>-<max>.json`),
written create-only after the file, so it works the same in a directory and in a bucket. A
record names the file's own checksum, so a record cannot vouch for another file, and carries a
CRC of itself.

`verify` replays the latest restore plan from page checksums (no database is written) and checks
each file's resulting database checksum against its record: a replica whose plan is fully
recorded has its latest restore point *proven*.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass

from ltxkit.format.checksum import crc64
from ltxkit.format.schema import format_filename
from ltxkit.replica.storage import Storage

LEDGER_DIR = "ledger"  # beside ltx/ (never `ltx` or `generations`: Litestream reads those)
VERSION = 1


class LedgerError(ValueError):
    """A record that does not parse or whose CRC does not match."""


@dataclass(frozen=True, slots=True)
class Record:
    level: int
    min_txid: int
    max_txid: int
    page_size: int
    commit: int
    pages: int
    file_checksum: int  # the LTX file's trailer checksum: which file this record is about
    before: int | None  # database checksum of the state before the file (None: it is a full file)
    after: int  # database checksum of the state the replica reaches with it


def put(storage: Storage, record: Record) -> None:
    """Write `record` beside its file, create-only."""
    storage.put_bytes(key(record.level, record.min_txid, record.max_txid), encode(record))


def key(level: int, min_txid: int, max_txid: int) -> str:
    return f"{LEDGER_DIR}/{level}/{format_filename(min_txid, max_txid).removesuffix('.ltx')}.json"


_KEY = re.compile(r"^" + re.escape(LEDGER_DIR) + r"/\d+/[0-9a-f]{16}-([0-9a-f]{16})\.json\Z")


def max_txid_of(record_key: str) -> int | None:
    """The last TXID of the file a record key (`key`) names; None for a key that is not one."""
    found = _KEY.match(record_key)
    return int(found.group(1), 16) if found else None


def _body(record: Record) -> dict[str, object]:
    d: dict[str, object] = {"version": VERSION, **asdict(record)}
    for name in ("min_txid", "max_txid", "file_checksum", "before", "after"):
        value = d[name]
        d[name] = f"{value:016x}" if isinstance(value, int) else None
    return d


def encode(record: Record) -> bytes:
    body = _body(record)
    text = json.dumps(body, sort_keys=True, separators=(",", ":"))
    body["crc"] = f"{crc64(text.encode()):016x}"
    return (json.dumps(body, sort_keys=True, indent=1) + "\n").encode()


def decode(data: bytes) -> Record:
    try:
        body = json.loads(data)
        crc = body.pop("crc")
        text = json.dumps(body, sort_keys=True, separators=(",", ":"))
        if f"{crc64(text.encode()):016x}" != crc:
            raise LedgerError("its CRC does not match")
        if body.pop("version") != VERSION:
            raise LedgerError("unknown version")

        def hexint(name: str) -> int | None:
            v = body[name]
            return None if v is None else int(v, 16)

        after = hexint("after")
        if after is None:
            raise LedgerError("no after-state checksum")
        return Record(
            level=int(body["level"]),
            min_txid=hexint("min_txid") or 0,
            max_txid=hexint("max_txid") or 0,
            page_size=int(body["page_size"]),
            commit=int(body["commit"]),
            pages=int(body["pages"]),
            file_checksum=hexint("file_checksum") or 0,
            before=hexint("before"),
            after=after,
        )
    except LedgerError:
        raise
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise LedgerError(f"does not parse ({exc})") from exc
