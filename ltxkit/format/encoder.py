"""The LTX encoder: pages in, bytes out, streaming, validating as the reference encoder does.

`LTXWriter` refuses anything the reference would refuse (a bad header, the lock page, a page out
of order or beyond commit, a snapshot with a hole, a page of the wrong size), so ltxkit can never
publish a file that Litestream cannot decode.
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from typing import BinaryIO

import lz4.block

from ltxkit.format.checksum import CHECKSUM_FLAG, crc64, page_checksum
from ltxkit.format.lz4frame import compress_page
from ltxkit.format.schema import (
    FRAME_PREFIX_STRUCT,
    PAGE_FLAG_LZ4_FRAME,
    PAGE_FLAG_SIZE,
    PAGE_HEADER_SIZE,
    PAGE_HEADER_STRUCT,
    TERMINATOR,
    Header,
    IndexEntry,
    Trailer,
    encode_page_index,
    last_snapshot_pgno,
    next_snapshot_pgno,
)

_compress = lz4.block.compress


class EncodeError(ValueError):
    """The caller asked for a file the format does not allow (a programming error, not bad data)."""


class LTXWriter:
    """Write one LTX file to `stream`: `write_page()` for each page, then `close()`.

    With checksum tracking on (no FLAG_NO_CHECKSUM), a snapshot's post-apply checksum is computed
    from its pages; an increment's must be passed to `close()` (it depends on the whole database).

    Pages are LZ4 blocks behind a size prefix (Litestream 0.5.16 and later), or with `lz4_frames`
    LZ4 frames with no prefix: the only form Litestream 0.5.15 and older read, for a replica that
    holds it already (`page_form`). The file checksum covers the same bytes either way: each page
    header (and size prefix) and the page uncompressed.
    """

    def __init__(self, stream: BinaryIO, header: Header, *, lz4_frames: bool = False) -> None:
        problems = header.problems()
        if problems:
            raise EncodeError("invalid header: " + "; ".join(problems))
        self._out = stream
        self.header = header
        self._lock = header.lock_pgno
        self._prev = 0
        self._index: list[IndexEntry] = []
        self._track = header.is_snapshot and not header.no_checksum
        self._db_sum = CHECKSUM_FLAG
        raw = header.pack()
        self._crc = crc64(raw)
        self._out.write(raw)
        self._n = len(raw)
        self._frames = lz4_frames
        self.trailer: Trailer | None = None

    @property
    def bytes_written(self) -> int:
        return self._n

    def write_page(self, pgno: int, data: bytes) -> None:
        hdr = self.header
        if self.trailer is not None:
            raise EncodeError("writer is closed")
        if len(data) != hdr.page_size:
            raise EncodeError(f"page {pgno} is {len(data)} bytes, page size is {hdr.page_size}")
        if pgno < 1:
            raise EncodeError(f"page number {pgno} is invalid")
        if pgno > hdr.commit:
            raise EncodeError(f"page {pgno} is beyond commit {hdr.commit}")
        if pgno == self._lock:
            raise EncodeError(f"page {pgno} is the lock page and is never stored")
        prev = self._prev
        if hdr.is_snapshot:
            if pgno != next_snapshot_pgno(prev, self._lock):
                raise EncodeError(f"nonsequential page numbers in snapshot: {prev},{pgno}")
        elif pgno <= prev:
            raise EncodeError(f"out-of-order page numbers: {prev},{pgno}")
        if self._frames:
            payload = compress_page(data)
            prefix = PAGE_HEADER_STRUCT.pack(pgno, PAGE_FLAG_LZ4_FRAME)
        else:
            payload = _compress(data, store_size=False)
            prefix = FRAME_PREFIX_STRUCT.pack(pgno, PAGE_FLAG_SIZE, len(payload))
        self._crc = crc64(data, crc64(prefix, self._crc))
        self._out.write(prefix)
        self._out.write(payload)
        size = len(prefix) + len(payload)
        self._index.append(IndexEntry(pgno, self._n, size))
        self._n += size
        self._prev = pgno
        if self._track:
            self._db_sum = CHECKSUM_FLAG | (self._db_sum ^ page_checksum(pgno, data))

    def close(self, post_apply_checksum: int | None = None) -> Trailer:
        """Finish the file; return its trailer. Idempotent."""
        if self.trailer is not None:
            return self.trailer
        hdr = self.header
        if hdr.is_snapshot and self._prev != last_snapshot_pgno(hdr.commit, self._lock):
            raise EncodeError(f"snapshot holds pages 1..{self._prev} but commit is {hdr.commit}")
        if hdr.no_checksum:
            post = 0
        elif self._track:
            post = self._db_sum
            if post_apply_checksum is not None and post_apply_checksum != post:
                raise EncodeError("given post-apply checksum does not match the snapshot's pages")
        else:
            if post_apply_checksum is None or not post_apply_checksum & CHECKSUM_FLAG:
                raise EncodeError("an increment with checksum tracking needs its post-apply checksum")
            post = post_apply_checksum
        if hdr.commit == 0 and post != CHECKSUM_FLAG:  # as the reference: only tracked files may empty a db
            raise EncodeError("post-apply checksum must be empty for zero-length database")
        tail = TERMINATOR + encode_page_index(self._index) + post.to_bytes(8, "big")
        file_checksum = CHECKSUM_FLAG | crc64(tail, self._crc)
        self._out.write(tail)
        self._out.write(file_checksum.to_bytes(8, "big"))
        self._n += len(tail) + 8
        self.trailer = Trailer(post, file_checksum)
        return self.trailer


assert len(TERMINATOR) == PAGE_HEADER_SIZE


def encode_file(
    header: Header,
    pages: Iterable[tuple[int, bytes]],
    post_apply_checksum: int | None = None,
    *,
    lz4_frames: bool = False,
) -> bytes:
    """Encode a whole file in memory (tests, small files)."""
    out = io.BytesIO()
    writer = LTXWriter(out, header, lz4_frames=lz4_frames)
    for pgno, data in pages:
        writer.write_page(pgno, data)
    writer.close(post_apply_checksum)
    return out.getvalue()
