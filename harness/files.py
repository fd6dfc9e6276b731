"""Replica directories as Litestream's file backend writes them: names, TXIDs, timestamps."""

from __future__ import annotations

import dataclasses
import datetime as _dt
import hashlib
import os
import struct
from pathlib import Path

from harness.common import LTX_NAME_RE


@dataclasses.dataclass(frozen=True, order=True)
class LtxName:
    """One ``ltx/<level>/<min>-<max>.ltx`` file of a file replica."""

    level: int
    min_txid: int
    max_txid: int
    path: Path = dataclasses.field(compare=False)


def list_ltx(replica_dir: str | os.PathLike[str], level: int | None = None) -> list[LtxName]:
    """All LTX files of a replica (or of one level), sorted by (level, min_txid, max_txid)."""
    root = Path(replica_dir) / "ltx"
    out: list[LtxName] = []
    if not root.is_dir():
        return out
    levels = [root / str(level)] if level is not None else [p for p in root.iterdir() if p.name.isdigit()]
    for d in levels:
        if not d.is_dir():
            continue
        for f in d.iterdir():
            m = LTX_NAME_RE.match(f.name)
            if m:
                out.append(LtxName(int(d.name), int(m.group(1), 16), int(m.group(2), 16), f))
    return sorted(out)


def max_txid(replica_dir: str | os.PathLike[str], level: int | None = None) -> int:
    """Highest max_txid in the replica (or one level); 0 when empty."""
    return max((n.max_txid for n in list_ltx(replica_dir, level)), default=0)


def local_max_txid(db_path: str | os.PathLike[str]) -> int:
    """Highest TXID in Litestream's local state (``.<name>-litestream/ltx/0``) beside the db."""
    p = Path(db_path)
    return max_txid(p.parent / f".{p.name}-litestream", 0)


def ltx_timestamp_ms(path: str | os.PathLike[str]) -> int:
    """Header timestamp (ms since epoch) of an LTX file."""
    with open(path, "rb") as f:
        return struct.unpack(">Q", f.read(40)[32:40])[0]


def rfc3339_ms(ms: int) -> str:
    """Millisecond epoch -> RFC 3339 with milliseconds, the form ``restore -timestamp`` takes."""
    d = _dt.datetime.fromtimestamp(ms / 1000, tz=_dt.UTC)
    return d.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def tree_digest(replica_dir: str | os.PathLike[str]) -> dict[str, str]:
    """sha256 of every LTX file, keyed by ``level/name`` (to assert a tool left a replica alone)."""
    return {f"{n.level}/{n.path.name}": hashlib.sha256(n.path.read_bytes()).hexdigest() for n in list_ltx(replica_dir)}
