"""`FileSpec`: make any LTX file, good or broken, in one line.

    FileSpec(page_size=512, commit=3, pages=[1, 2, 3]).build()             # a valid snapshot
    FileSpec(commit=4, pages=[1, 2, 4]).build()                            # a snapshot with a hole
    FileSpec(min_txid=2, commit=9, pages=[3, 2]).build()                   # pages out of order
    FileSpec(commit=3, pages=[1, 2, 3], file_checksum=1).build()           # wrong file checksum

`build()` (the default, `valid=False`) lays the bytes out itself from the structs and helpers in
`ltxkit.format.schema`, bypassing every rule the encoder enforces, so it can write holes, lock
pages, pages beyond commit, bad flags, a wrong index or trailer... Checksums are computed over
whatever is written, exactly as a reader would, unless overridden, so a spec with one defect
shows exactly that defect. `build(valid=True)` goes through `ltxkit.format.encode_file` instead
(and so raises `EncodeError` for anything the encoder refuses); for a valid spec both give the
same bytes.

`pages` items are a page number (content from `page_bytes`), a `(pgno, bytes)` pair, or a `Frame`
for frame-level damage (flags, size prefix, raw LZ4 payload). `legacy_pages=True` writes every
plain page as Litestream <= 0.5.15 did (flags 0, an LZ4 frame, no size prefix); a `Frame` with
`flags=PAGE_FLAG_LZ4_FRAME` does so for one page, its `payload` then replacing the LZ4 frame.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import lz4.block
import lz4.frame

from ltxkit.format.checksum import CHECKSUM_FLAG, crc64, database_checksum
from ltxkit.format.encoder import encode_file
from ltxkit.format.schema import (
    FLAG_NO_CHECKSUM,
    FRAME_PREFIX_STRUCT,
    HEADER_FIELDS,
    HEADER_SIZE,
    HEADER_STRUCT,
    INDEX_SIZE_STRUCT,
    MAGIC,
    PAGE_FLAG_LZ4_FRAME,
    PAGE_FLAG_SIZE,
    PAGE_HEADER_STRUCT,
    TERMINATOR,
    TRAILER_STRUCT,
    Header,
    IndexEntry,
    append_uvarint,
    encode_page_index,
    lock_pgno,
)

__all__ = [
    "FileSpec",
    "Frame",
    "Layout",
    "corrupt_region",
    "flip_byte",
    "insert_bytes",
    "legacy_frame_payload",
    "page_bytes",
    "pages_of",
    "random_page",
]


def page_bytes(pgno: int, page_size: int, salt: int = 0) -> bytes:
    """Deterministic, compressible, distinct content for page `pgno` (what a b-tree page looks like
    to LZ4: a little text, a long run of zeros, a few bytes at the end)."""
    head = f"page {pgno} salt {salt} ".encode() * 3
    tail = (pgno * 2654435761 + salt).to_bytes(8, "big")
    return (head + bytes(page_size))[: page_size - len(tail)] + tail


def random_page(page_size: int, seed: int) -> bytes:
    """Incompressible content (LZ4 payload larger than the page), fixed by `seed`."""
    return random.Random(seed).randbytes(page_size)


def legacy_frame_payload(page: bytes) -> bytes:
    """An LZ4 frame as superfly/ltx v0.5.1 wrote each page (64 KiB blocks, content checksum)."""
    return lz4.frame.compress(
        page, block_size=lz4.frame.BLOCKSIZE_MAX64KB, content_checksum=True, block_linked=False, store_size=False
    )


@dataclass(frozen=True, slots=True)
class Frame:
    """One frame of the page block, with optional damage.

    `data` is the page (default `page_bytes(pgno, page_size)`); `payload` replaces the LZ4 block
    written for it; `size` replaces the size prefix (default: the payload's length).
    """

    pgno: int
    data: bytes | None = None
    flags: int = PAGE_FLAG_SIZE
    payload: bytes | None = None
    size: int | None = None

    @property
    def is_plain(self) -> bool:
        return self.flags == PAGE_FLAG_SIZE and self.payload is None and self.size is None


PageItem = int | tuple[int, bytes] | Frame
IndexOverride = Sequence[IndexEntry] | Callable[[list[IndexEntry]], Sequence[IndexEntry]]


@dataclass(frozen=True, slots=True)
class Layout:
    """Where everything landed in a built file (offsets from the start of the file)."""

    data: bytes
    frames: tuple[IndexEntry, ...]  # what was actually written: pgno, offset, frame length
    pages: tuple[tuple[int, bytes], ...]  # decompressed pages, in frame order
    terminator_offset: int
    index_offset: int
    index_size_offset: int
    trailer_offset: int
    post_apply_checksum: int
    file_checksum: int

    @property
    def file_checksum_offset(self) -> int:
        return self.trailer_offset + 8

    @property
    def end(self) -> int:
        return self.trailer_offset + TRAILER_STRUCT.size


@dataclass
class FileSpec:
    """Header fields, pages and trailer overrides of one LTX file (see the module docstring).

    Defaults make a valid no-checksum file (as Litestream 0.5.x writes): `max_txid` defaults to
    `min_txid`, `commit` to the highest page number, `pre_apply_checksum` to 0 (or, for an
    increment with checksum tracking, to a well-formed placeholder), `post_apply_checksum` to 0
    (or, with tracking, to the database checksum of the pages) and `file_checksum` to the real one.
    """

    page_size: int = 512
    min_txid: int = 1
    max_txid: int | None = None
    commit: int | None = None
    pages: Sequence[PageItem] = field(default_factory=list)
    flags: int = FLAG_NO_CHECKSUM
    timestamp: int = 0
    pre_apply_checksum: int | None = None
    wal_offset: int = 0
    wal_size: int = 0
    wal_salt1: int = 0
    wal_salt2: int = 0
    node_id: int = 0
    magic: bytes = MAGIC
    reserved: bytes = bytes(20)
    # ---- damage below the header ----
    salt: int = 0  # varies generated page content
    index: IndexOverride | None = None  # replace (or transform) the index entries written
    index_size: int | None = None  # replace the u64 index-size field
    index_raw: bytes | None = None  # replace the varints (entries + 0 terminator) verbatim
    post_apply_checksum: int | None = None
    file_checksum: int | None = None
    trailing: bytes = b""  # appended after the trailer
    legacy_pages: bool = False  # plain pages as LZ4 frames (flags 0), as Litestream <= 0.5.15 wrote

    # ---- derived values -----------------------------------------------------------------------

    def frames(self) -> list[Frame]:
        out = []
        for item in self.pages:
            if isinstance(item, Frame):
                frame = item
            else:
                pgno, data = (item, None) if isinstance(item, int) else item
                frame = Frame(pgno, data, PAGE_FLAG_LZ4_FRAME if self.legacy_pages else PAGE_FLAG_SIZE)
            if frame.data is None:
                frame = Frame(
                    frame.pgno,
                    page_bytes(frame.pgno, self.page_size, self.salt),
                    frame.flags,
                    frame.payload,
                    frame.size,
                )
            out.append(frame)
        return out

    def page_list(self) -> list[tuple[int, bytes]]:
        """The (pgno, page) pairs this spec stores, in frame order."""
        return [(f.pgno, f.data) for f in self.frames()]  # type: ignore[misc]

    def header_values(self) -> dict[str, object]:
        is_snapshot = self.min_txid == 1
        tracked = not self.flags & FLAG_NO_CHECKSUM
        pre = self.pre_apply_checksum
        if pre is None:
            pre = CHECKSUM_FLAG if tracked and not is_snapshot else 0
        commit = self.commit
        if commit is None:
            commit = max((f.pgno for f in self.frames()), default=0)
        return {
            "magic": self.magic,
            "flags": self.flags,
            "page_size": self.page_size,
            "commit": commit,
            "min_txid": self.min_txid,
            "max_txid": self.min_txid if self.max_txid is None else self.max_txid,
            "timestamp": self.timestamp,
            "pre_apply_checksum": pre,
            "wal_offset": self.wal_offset,
            "wal_size": self.wal_size,
            "wal_salt1": self.wal_salt1,
            "wal_salt2": self.wal_salt2,
            "node_id": self.node_id,
            "reserved": self.reserved,
        }

    def header(self) -> Header:
        return Header(**self.header_values())  # type: ignore[arg-type]

    def default_post_apply(self) -> int:
        if self.flags & FLAG_NO_CHECKSUM:
            return 0
        return database_checksum(self.page_list(), lock_pgno(self.page_size) if self.page_size else 0)

    # ---- building -------------------------------------------------------------------------

    def build(self, valid: bool = False) -> bytes:
        """The file's bytes: laid out raw (default), or through the real encoder (`valid=True`)."""
        return self.encode() if valid else self.layout().data

    def encode(self) -> bytes:
        """Through `encode_file`, which validates; raw-only overrides are refused here."""
        raw_only = [
            name for name in ("index", "index_size", "index_raw", "file_checksum") if getattr(self, name) is not None
        ]
        if self.trailing:
            raw_only.append("trailing")
        if not all(f.is_plain for f in self.frames()):
            raw_only.append("pages (damaged or LZ4-frame Frame)")
        if raw_only:
            raise ValueError(f"the encoder cannot write {', '.join(raw_only)}; use build(valid=False)")
        header = self.header()
        post = self.post_apply_checksum
        if post is None and not header.no_checksum and not header.is_snapshot:
            post = self.default_post_apply()
        return encode_file(header, self.page_list(), post)

    def layout(self) -> Layout:
        """Lay the file out byte by byte, returning the bytes and where each part sits."""
        values = self.header_values()
        out = bytearray(HEADER_STRUCT.pack(*(values[name] for name in HEADER_FIELDS)))
        assert len(out) == HEADER_SIZE
        crc = crc64(bytes(out))
        written: list[IndexEntry] = []
        pages: list[tuple[int, bytes]] = []
        for frame in self.frames():
            data = frame.data
            assert data is not None
            if frame.flags == PAGE_FLAG_LZ4_FRAME and frame.pgno != 0:
                payload = frame.payload if frame.payload is not None else legacy_frame_payload(data)
                prefix = PAGE_HEADER_STRUCT.pack(frame.pgno, frame.flags)
                if frame.payload is not None:
                    data = _try_decompress_frame(frame.payload, data)
            else:
                payload = frame.payload if frame.payload is not None else lz4.block.compress(data, store_size=False)
                size = len(payload) if frame.size is None else frame.size
                prefix = FRAME_PREFIX_STRUCT.pack(frame.pgno, frame.flags, size)
                if frame.payload is not None:
                    data = _try_decompress(frame.payload, self.page_size, data)
            crc = crc64(data, crc64(prefix, crc))
            written.append(IndexEntry(frame.pgno, len(out), len(prefix) + len(payload)))
            pages.append((frame.pgno, data))
            out += prefix
            out += payload
        terminator_offset = len(out)
        out += TERMINATOR
        index_offset = len(out)
        out += self._index_bytes(written)
        index_size_offset = len(out) - INDEX_SIZE_STRUCT.size
        post = self.default_post_apply() if self.post_apply_checksum is None else self.post_apply_checksum
        post_bytes = TRAILER_STRUCT.pack(post, 0)[:8]
        out += post_bytes
        crc = crc64(bytes(out[terminator_offset:]), crc)
        file_sum = CHECKSUM_FLAG | crc if self.file_checksum is None else self.file_checksum
        trailer_offset = len(out) - len(post_bytes)
        out[trailer_offset:] = TRAILER_STRUCT.pack(post, file_sum)
        out += self.trailing
        return Layout(
            bytes(out),
            tuple(written),
            tuple(pages),
            terminator_offset,
            index_offset,
            index_size_offset,
            trailer_offset,
            post,
            file_sum,
        )

    def _index_bytes(self, written: list[IndexEntry]) -> bytes:
        entries: Sequence[IndexEntry] = written
        if callable(self.index):
            entries = self.index(list(written))
        elif self.index is not None:
            entries = self.index
        if self.index_raw is None and self.index_size is None:
            return encode_page_index(list(entries))
        if self.index_raw is not None:
            body = bytearray(self.index_raw)
        else:
            body = bytearray()
            for e in entries:
                append_uvarint(body, e.pgno)
                append_uvarint(body, e.offset)
                append_uvarint(body, e.size)
            body.append(0)
        size = len(body) if self.index_size is None else self.index_size
        return bytes(body) + INDEX_SIZE_STRUCT.pack(size)


def _try_decompress_frame(payload: bytes, fallback: bytes) -> bytes:
    try:
        return lz4.frame.decompress(payload)
    except RuntimeError:
        return fallback


def _try_decompress(payload: bytes, page_size: int, fallback: bytes) -> bytes:
    try:
        return lz4.block.decompress(payload, uncompressed_size=page_size)
    except lz4.block.LZ4BlockError:
        return fallback


# ---- byte-level damage ---------------------------------------------------------------------------


def flip_byte(data: bytes, offset: int, mask: int = 0xFF) -> bytes:
    """`data` with the byte at `offset` XOR-ed with `mask` (negative offsets count from the end)."""
    if not 0 < mask <= 0xFF:
        raise ValueError("mask must change the byte")
    buf = bytearray(data)
    buf[offset] ^= mask
    return bytes(buf)


def corrupt_region(data: bytes, start: int, end: int | None = None, *, fill: int | None = None, seed: int = 0) -> bytes:
    """`data` with every byte in [start, end) changed: set to `fill`, or (default) XOR-ed with
    seeded non-zero noise so each byte is guaranteed to differ. `end` defaults to the end of data."""
    end = len(data) if end is None else end
    if not 0 <= start <= end <= len(data):
        raise ValueError(f"bad region [{start}, {end}) of {len(data)} bytes")
    buf = bytearray(data)
    if fill is not None:
        buf[start:end] = bytes([fill]) * (end - start)
    else:
        rng = random.Random(seed)
        for i in range(start, end):
            buf[i] ^= rng.randrange(1, 256)
    return bytes(buf)


def insert_bytes(data: bytes, offset: int, extra: bytes) -> bytes:
    """`data` with `extra` inserted before position `offset`."""
    return data[:offset] + extra + data[offset:]


def pages_of(pgnos: Iterable[int], page_size: int, salt: int = 0) -> list[tuple[int, bytes]]:
    """(pgno, page_bytes(...)) for each page number, for feeding the encoder directly."""
    return [(p, page_bytes(p, page_size, salt)) for p in pgnos]
