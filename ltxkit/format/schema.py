"""The LTX v3 layout as the codec uses it: structs, sizes, flags, varints, names and page rules.

Every fixed field comes from the `construct` declarations in `ltxkit.format.declaration`, the one
description of the format: the `struct.Struct` forms here are built from the formats derived from
them (`layout.py`, generated), and tests prove both forms agree byte for byte. Nothing here
imports construct, so no command pays for it at start-up.
"""

from __future__ import annotations

import operator
import re
import struct
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from typing import NamedTuple

from ltxkit.format import layout
from ltxkit.format.checksum import PENDING_BYTE as PENDING_BYTE  # defined with the checksum they shape
from ltxkit.format.checksum import lock_pgno as lock_pgno

MAGIC = b"LTX1"
FLAG_NO_CHECKSUM = 0x2
VALID_HEADER_FLAGS = FLAG_NO_CHECKSUM
#: LTX format version 1 (superfly/ltx v0.3.x): the whole page block is one LZ4
#: frame. The flag is invalid in version 3, so it is how a v1 file is told apart.
FLAG_V1_COMPRESS_LZ4 = 0x1
PAGE_FLAG_SIZE = 0x1  # a u32 size prefix and an LZ4 *block* follow the frame header
PAGE_FLAG_LZ4_FRAME = 0x0  # read only: an LZ4 *frame*, no size prefix (Litestream <= 0.5.15)
MIN_PAGE_SIZE = 512
MAX_PAGE_SIZE = 65536
INT64_MAX = (1 << 63) - 1

HEADER_STRUCT = struct.Struct(layout.HEADER_FORMAT)
PAGE_HEADER_STRUCT = struct.Struct(layout.PAGE_HEADER_FORMAT)
SIZE_PREFIX_STRUCT = struct.Struct(layout.SIZE_PREFIX_FORMAT)
#: frame header and size prefix read in one call on the hot path
FRAME_PREFIX_STRUCT = struct.Struct(PAGE_HEADER_STRUCT.format + SIZE_PREFIX_STRUCT.format[1:])
INDEX_SIZE_STRUCT = struct.Struct(layout.INDEX_SIZE_FIELD_FORMAT)
TRAILER_STRUCT = struct.Struct(layout.TRAILER_FORMAT)

HEADER_SIZE = HEADER_STRUCT.size
PAGE_HEADER_SIZE = PAGE_HEADER_STRUCT.size
SIZE_PREFIX_SIZE = SIZE_PREFIX_STRUCT.size
FRAME_PREFIX_SIZE = PAGE_HEADER_SIZE + SIZE_PREFIX_SIZE
TRAILER_SIZE = TRAILER_STRUCT.size
INDEX_SIZE_FIELD_SIZE = INDEX_SIZE_STRUCT.size
TERMINATOR = bytes(PAGE_HEADER_SIZE)
HEADER_FIELDS = layout.HEADER_FIELDS

assert HEADER_SIZE == HEADER_STRUCT.size == 100
assert TRAILER_SIZE == TRAILER_STRUCT.size == 16


@dataclass(frozen=True, slots=True)
class Header:
    """The 100-byte file header. `reserved` must be zero in a valid file."""

    flags: int
    page_size: int
    commit: int
    min_txid: int
    max_txid: int
    timestamp: int
    pre_apply_checksum: int = 0
    wal_offset: int = 0
    wal_size: int = 0
    wal_salt1: int = 0
    wal_salt2: int = 0
    node_id: int = 0
    magic: bytes = MAGIC
    reserved: bytes = bytes(20)

    @classmethod
    def snapshot(cls, page_size: int, commit: int, max_txid: int, timestamp: int, *, checksums: bool) -> Header:
        """The header of a full snapshot (TXIDs 1..max_txid). Without `checksums` it carries the
        no-checksum flag, as every file Litestream 0.5.x can end a restore with must."""
        return cls(
            flags=0 if checksums else FLAG_NO_CHECKSUM,
            page_size=page_size,
            commit=commit,
            min_txid=1,
            max_txid=max_txid,
            timestamp=timestamp,
        )

    @property
    def is_snapshot(self) -> bool:
        """A file that starts at TXID 1 must hold the whole database."""
        return self.min_txid == 1

    @property
    def no_checksum(self) -> bool:
        return bool(self.flags & FLAG_NO_CHECKSUM)

    @property
    def lock_pgno(self) -> int:
        return lock_pgno(self.page_size)

    def pack(self) -> bytes:
        return HEADER_STRUCT.pack(*(getattr(self, name) for name in HEADER_FIELDS))

    @classmethod
    def unpack(cls, data: bytes | memoryview) -> Header:
        return cls(*_HEADER_ARGS(HEADER_STRUCT.unpack_from(data)))

    def problems(self) -> list[str]:
        """Every reason the reference implementation would refuse this header (empty when valid)."""
        out: list[str] = []
        if self.magic != MAGIC:
            out.append(f"magic {self.magic!r} is not {MAGIC!r}")
        if self.flags & ~VALID_HEADER_FLAGS:
            out.append(f"invalid flags 0x{self.flags:08x}")
        if not is_valid_page_size(self.page_size):
            out.append(f"invalid page size {self.page_size}")
        if self.min_txid == 0:
            out.append("min_txid is 0")
        if self.max_txid == 0:
            out.append("max_txid is 0")
        if self.min_txid > self.max_txid:
            out.append(f"TXIDs out of order ({self.min_txid:016x} > {self.max_txid:016x})")
        if self.wal_offset < 0:
            out.append(f"negative wal_offset {self.wal_offset}")
        if self.wal_size < 0:
            out.append(f"negative wal_size {self.wal_size}")
        if (self.wal_salt1 or self.wal_salt2) and self.wal_offset == 0:
            out.append("WAL salt set without a wal_offset")
        if self.wal_offset == 0 and self.wal_size != 0:
            out.append("wal_size set without a wal_offset")
        if self.is_snapshot:
            if self.pre_apply_checksum != 0:
                out.append("pre-apply checksum must be zero on a snapshot")
        elif self.no_checksum:
            if self.pre_apply_checksum != 0:
                out.append("pre-apply checksum set although the no-checksum flag is on")
        elif self.pre_apply_checksum == 0:
            out.append("pre-apply checksum missing on an increment with checksum tracking")
        elif not self.pre_apply_checksum & (1 << 63):
            out.append("pre-apply checksum lacks bit 63")
        if any(self.reserved):
            out.append("reserved bytes are not zero")
        return out

    def to_json(self) -> dict[str, object]:
        d = asdict(self)
        d.pop("magic")
        d.pop("reserved")
        for key in ("min_txid", "max_txid", "pre_apply_checksum", "node_id"):
            d[key] = f"{d[key]:016x}"
        return d


#: the header's values, from the file's field order to the constructor's (one call per file read)
_HEADER_ARGS = operator.itemgetter(*(HEADER_FIELDS.index(f.name) for f in fields(Header)))


@dataclass(frozen=True, slots=True)
class Trailer:
    post_apply_checksum: int
    file_checksum: int

    def pack(self) -> bytes:
        return TRAILER_STRUCT.pack(self.post_apply_checksum, self.file_checksum)

    @classmethod
    def unpack(cls, data: bytes | memoryview) -> Trailer:
        return cls(*TRAILER_STRUCT.unpack_from(data))

    def problems(self, header: Header) -> list[str]:
        out: list[str] = []
        if header.no_checksum:
            if self.post_apply_checksum != 0:
                out.append("post-apply checksum set although the no-checksum flag is on")
        elif self.post_apply_checksum == 0:
            out.append("post-apply checksum missing")
        elif not self.post_apply_checksum & (1 << 63):
            out.append("post-apply checksum lacks bit 63")
        if self.file_checksum == 0:
            out.append("file checksum missing")
        elif not self.file_checksum & (1 << 63):
            out.append("file checksum lacks bit 63")
        return out

    def to_json(self) -> dict[str, str]:
        return {
            "post_apply_checksum": f"{self.post_apply_checksum:016x}",
            "file_checksum": f"{self.file_checksum:016x}",
        }


class IndexEntry(NamedTuple):
    """Where a page's frame sits: offset from the start of the file and frame length in bytes.

    A NamedTuple so the decoder's hot path can collect plain tuples that compare equal to it.
    """

    pgno: int
    offset: int
    size: int


def is_valid_page_size(size: int) -> bool:
    return MIN_PAGE_SIZE <= size <= MAX_PAGE_SIZE and size & (size - 1) == 0


# ---- which pages a file or a database must hold: the rules every reader and writer shares ------


def next_snapshot_pgno(prev: int, lock: int) -> int:
    """The page a snapshot holds after `prev` (0: none yet): the next one, skipping the lock page."""
    return prev + 2 if prev + 1 == lock else prev + 1


def last_snapshot_pgno(commit: int, lock: int) -> int:
    """The last page a snapshot of `commit` pages holds (the lock page is never stored)."""
    return commit - 1 if commit == lock else commit


def missing_pages(covered: bytes | bytearray, commit: int, lock: int) -> tuple[int, int]:
    """(how many, the first) of pages 1..commit, except the lock page, whose flag in `covered`
    (indexed by pgno; pages past its end count as 0) is 0: what a database of `commit` pages
    lacks when those are all it has. (0, 0) when none is missing. Allocates nothing per page:
    a file may claim a commit of billions of pages."""
    end = min(len(covered), commit + 1)
    count = covered.count(0, 1, end) if end > 1 else 0
    first = covered.find(0, 1, end) if end > 1 else -1
    if 1 <= lock < end and not covered[lock]:
        count -= 1
        if first == lock:
            first = covered.find(0, lock + 1, end)
    beyond = max(commit - max(end, 1) + 1, 0)  # pages end..commit: none is covered
    if beyond and max(end, 1) <= lock <= commit:
        beyond -= 1
    count += beyond
    if first < 0 and beyond:
        first = max(end, 1) if max(end, 1) != lock else max(end, 1) + 1
    return count, max(first, 0)


def missing_among(present: set[int], lo: int, hi: int, lock: int) -> tuple[int, int]:
    """(how many, the first) of pages lo..hi, except the lock page, not in `present`; (0, 0) when
    none is missing. Costs what `present` holds, not what the range spans."""
    inside = sorted(p for p in present if lo <= p <= hi and p != lock)
    count = hi - lo + 1 - (1 if lo <= lock <= hi else 0) - len(inside) if hi >= lo else 0
    if count <= 0:
        return 0, 0
    want = lo
    for p in inside:
        if want == lock:
            want += 1
        if p != want:
            break
        want += 1
    if want == lock:
        want += 1
    return count, want


# ---- varints (Go's binary.Uvarint), the hot-path form of construct's VarInt --------------------


def append_uvarint(out: bytearray, value: int) -> None:
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)


def read_uvarint(buf: bytes | memoryview, pos: int) -> tuple[int, int]:
    """Decode one unsigned LEB128 varint at `pos`; return (value, new_pos). IndexError when short."""
    b = buf[pos]
    if b < 0x80:
        return b, pos + 1
    value = b & 0x7F
    shift = 7
    pos += 1
    while True:
        b = buf[pos]
        pos += 1
        if shift >= 63 and b > 1:
            raise OverflowError("varint overflows 64 bits")
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, pos
        shift += 7


def encode_index_varints(entries: Sequence[tuple[int, int, int]]) -> bytes:
    """The varint triples of a page index, without its closing 0 and size field.

    Built from two lookup tables, with no call per value: a value below 2**14 is one entry of
    the first; a larger one below 2**28 is its low 14 bits from the second (both bytes marked
    "more follows") and then the rest from the first. Only values from 2**28 on (offsets past
    256 MiB) take the loop. This runs once per decoded file, over every frame, so for small
    files it was a quarter of a restore's decoding.
    """
    small, low = _varint_tables()
    out = bytearray()
    for pgno, offset, size in entries:
        if pgno < 16384:
            out += small[pgno]
        elif pgno < 268435456:
            out += low[pgno & 16383]
            out += small[pgno >> 14]
        else:
            out += _uvarint(pgno)
        if offset < 16384:
            out += small[offset]
        elif offset < 268435456:
            out += low[offset & 16383]
            out += small[offset >> 14]
        else:
            out += _uvarint(offset)
        if size < 16384:
            out += small[size]
        else:
            out += _uvarint(size)
    return bytes(out)


def encode_page_index(entries: Sequence[tuple[int, int, int]]) -> bytes:
    """The page index: varint triples (pgno, offset, size), a 0, then the u64 byte length of both.

    The one encoder: the writer uses it, and the decoder compares a file's stored index with it
    (no varint parsing in the common case). Tests hold it to the construct declaration.
    """
    out = encode_index_varints(entries) + b"\x00"
    return out + INDEX_SIZE_STRUCT.pack(len(out))


def _uvarint(v: int) -> bytes:
    out = bytearray()
    append_uvarint(out, v)
    return bytes(out)


_VARINT_TABLES: list[list[bytes]] = []


def _varint_tables() -> tuple[list[bytes], list[bytes]]:
    """(every varint below 2**14, the low 14 bits of any larger value as two "more" bytes), built
    on first use: 32,768 small objects cost ~10 ms that a command encoding no index never pays."""
    if not _VARINT_TABLES:
        small = [bytes((v,)) for v in range(0x80)]
        small += [bytes(((v & 0x7F) | 0x80, v >> 7)) for v in range(0x80, 16384)]
        low = [bytes(((v & 0x7F) | 0x80, ((v >> 7) & 0x7F) | 0x80)) for v in range(16384)]
        _VARINT_TABLES[:] = [small, low]
    return _VARINT_TABLES[0], _VARINT_TABLES[1]


# ---- file names -------------------------------------------------------------------------------

# `\Z`, not `$`: `$` also matches before a final newline, and Go's (Litestream's) does not
_NAME_RE = re.compile(r"^([0-9a-f]{16})-([0-9a-f]{16})\.ltx\Z")


def format_filename(min_txid: int, max_txid: int) -> str:
    return f"{min_txid:016x}-{max_txid:016x}.ltx"


def parse_filename(name: str) -> tuple[int, int] | None:
    """(min_txid, max_txid) for a well-formed LTX name, else None."""
    m = _NAME_RE.match(name)
    if m is None:
        return None
    return int(m.group(1), 16), int(m.group(2), 16)


def pages_are_lz4_frames(head: bytes) -> bool:
    """Does the file beginning with `head` (its header and first page header) store its pages as
    LZ4 frames (flags 0: Litestream 0.5.15 and older) rather than size-prefixed blocks? False for
    a file with no pages, or fewer bytes than that."""
    if len(head) < HEADER_SIZE + PAGE_HEADER_SIZE:
        return False
    pgno, flags = PAGE_HEADER_STRUCT.unpack_from(head, HEADER_SIZE)
    return pgno != 0 and flags == PAGE_FLAG_LZ4_FRAME
