"""CRC-64/GO-ISO and the three LTX checksums (page, database, file).

fastcrc's `go_iso(data, previous)` continues a finished CRC, which is exactly the running CRC the
file checksum needs, without holding a hasher object per file.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable

from fastcrc import crc64 as _fastcrc64

from ltxkit.format.errors import Code, LTXError

#: Bit 63 is OR-ed into every stored checksum so that a real checksum is never zero.
CHECKSUM_FLAG = 1 << 63

#: CRC-64/GO-ISO: poly 0x1B reflected, init and xorout all ones.
crc64 = _fastcrc64.go_iso

_PGNO = struct.Struct(">I")

#: SQLite's pending byte: the page holding it (the lock page) is never stored and never counts.
PENDING_BYTE = 0x40000000


def lock_pgno(page_size: int) -> int:
    """The page holding byte 2^30 (SQLite's pending byte); never stored, restored as zeros.

    Defined here, not in `schema`, so that reading a database's checksum (`ltxkit checksum`)
    needs only this module and fastcrc: no LTX structs, no decoder, at every start-up."""
    return PENDING_BYTE // page_size + 1


def page_checksum(pgno: int, data: bytes) -> int:
    """CRC of the big-endian page number followed by the page, with the flag bit set."""
    return CHECKSUM_FLAG | crc64(data, crc64(_PGNO.pack(pgno)))


def fold_page_checksums(sums: Iterable[int]) -> int:
    """The database checksum from page checksums already computed (0 stands for no page)."""
    total = 0
    for value in sums:
        total ^= value
    return CHECKSUM_FLAG | (total & ~CHECKSUM_FLAG)


def database_checksum(pages: Iterable[tuple[int, bytes]], lock_page: int) -> int:
    """Fold page checksums with XOR; the lock page never counts. An empty database gives the flag."""
    total = CHECKSUM_FLAG
    for pgno, data in pages:
        if pgno != lock_page:
            total = CHECKSUM_FLAG | (total ^ page_checksum(pgno, data))
    return total


# ---- combining CRCs of adjacent pieces ----------------------------------------------------------
# crc(A + B) from crc(A), crc(B) and len(B), without reading A again: what lets two processes
# checksum the two halves of one file. The method is zlib's crc32_combine, carried over to the
# 64-bit reflected ISO polynomial: multiply crc(A) by x^(8*len(B)) modulo the polynomial, then XOR
# crc(B). Init and xorout (all ones) cancel out, exactly as they do for CRC-32.

_POLY_REFLECTED = 0xD800000000000000  # x^64 + x^4 + x^3 + x + 1, bit-reversed
_X0 = 1 << 63  # the polynomial "1" in the reflected representation


def _multmodp(a: int, b: int) -> int:
    """a * b modulo the polynomial (both reflected)."""
    m = _X0
    p = 0
    while True:
        if a & m:
            p ^= b
            if a & (m - 1) == 0:
                return p
        m >>= 1
        b = (b >> 1) ^ _POLY_REFLECTED if b & 1 else b >> 1


def _x2n_table() -> list[int]:
    table = [_X0 >> 1]  # x^1
    for _ in range(63):
        table.append(_multmodp(table[-1], table[-1]))  # x^(2^k)
    return table


_X2N = _x2n_table()


def _x2nmodp(n: int, k: int) -> int:
    """x^(n * 2^k) modulo the polynomial."""
    p = _X0
    while n:
        if n & 1:
            p = _multmodp(_X2N[k & 63], p)
        n >>= 1
        k += 1
    return p


def crc64_combine(crc_a: int, crc_b: int, len_b: int) -> int:
    """The CRC of A followed by B, given crc(A), crc(B) and the byte length of B."""
    return _multmodp(_x2nmodp(len_b, 3), crc_a) ^ crc_b


# ---- verdicts: one wording for every reader (the streaming decoder and the span joiner) --------


def file_checksum_mismatch(stored: int, crc: int, offset: int) -> LTXError | None:
    """The defect when the file's running CRC (`crc`, flag not yet set) is not what it stores."""
    actual = CHECKSUM_FLAG | crc
    if actual == stored:
        return None
    return LTXError(
        Code.FILE_CHECKSUM_MISMATCH, f"file checksum {stored:016x} stored, {actual:016x} computed", offset=offset
    )


def post_apply_mismatch(stored: int, from_pages: int, offset: int) -> LTXError | None:
    """The defect when a tracked snapshot's pages give another database checksum than it stores."""
    if from_pages == stored:
        return None
    return LTXError(
        Code.POST_APPLY_CHECKSUM_MISMATCH,
        f"post-apply checksum {stored:016x} stored, pages give {from_pages:016x}",
        offset=offset,
    )
