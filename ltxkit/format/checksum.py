"""CRC-64/GO-ISO and the three LTX checksums (page, database, file).

fastcrc's `go_iso(data, previous)` continues a finished CRC, which is exactly the running CRC the
file checksum needs, without holding a hasher object per file.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable

from fastcrc import crc64 as _fastcrc64

#: Bit 63 is OR-ed into every stored checksum so that a real checksum is never zero.
CHECKSUM_FLAG = 1 << 63

#: CRC-64/GO-ISO: poly 0x1B reflected, init and xorout all ones.
crc64 = _fastcrc64.go_iso

_PGNO = struct.Struct(">I")


def page_checksum(pgno: int, data: bytes) -> int:
    """CRC of the big-endian page number followed by the page, with the flag bit set."""
    return CHECKSUM_FLAG | crc64(data, crc64(_PGNO.pack(pgno)))


def database_checksum(pages: Iterable[tuple[int, bytes]], lock_page: int) -> int:
    """Fold page checksums with XOR; the lock page never counts. An empty database gives the flag."""
    total = CHECKSUM_FLAG
    for pgno, data in pages:
        if pgno != lock_page:
            total = CHECKSUM_FLAG | (total ^ page_checksum(pgno, data))
    return total
