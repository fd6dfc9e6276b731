"""Legacy page payloads: one LZ4 *frame* per page, as superfly/ltx v0.5.1 wrote them.

Litestream 0.5.0–0.5.15 are built on that release: a page frame there is the 6-byte page header
with flags 0, followed directly by an LZ4 frame (magic, descriptor, data blocks, end mark, and
usually a content checksum) and no size prefix. Since 0.5.16 pages are LZ4 *blocks* behind a
size prefix (flag 0x1), the form ltxkit writes unless a replica already holds the old one
(`compress_page`: 0.5.15 and older read nothing else). Litestream 0.5.17 still restores the old
form, so a replica upgraded in place holds both, and ltxkit must read both as strictly.

An LZ4 frame does not say its length up front: `frame_length` walks its block headers to find
where it ends, without decompressing, so the decoder knows how many bytes to buffer and where the
next page header starts. `decompress_page` then decodes it, checking the frame's own block and
content checksums, and insists on exactly one page of output.

Nothing here does I/O; errors are `ValueError` with a message the decoder turns into a
`page-decompress-failed` finding at the frame's offset.
"""

from __future__ import annotations

import lz4.frame

MAGIC = b"\x04\x22\x4d\x18"  # 0x184D2204, little-endian
_FLG_VERSION_MASK = 0xC0
_FLG_VERSION_01 = 0x40
_FLG_BLOCK_CHECKSUM = 0x10
_FLG_CONTENT_SIZE = 0x08
_FLG_CONTENT_CHECKSUM = 0x04
_FLG_RESERVED = 0x02
_FLG_DICT_ID = 0x01
_BD_RESERVED = 0x8F
_BLOCK_UNCOMPRESSED = 0x80000000
#: the smallest frame: magic, FLG, BD, header checksum, end mark
MIN_FRAME_SIZE = 4 + 3 + 4


class NeedMore(Exception):
    """The frame's length cannot be known from the bytes given: at least `total` bytes are needed."""

    def __init__(self, total: int) -> None:
        super().__init__(total)
        self.total = total


def frame_length(buf: bytes | bytearray | memoryview, start: int, page_size: int) -> int:
    """Length of the LZ4 frame that begins at `buf[start]`, found from its block headers.

    Raises `NeedMore` when `buf` ends before the length is known (the caller reads more and asks
    again) and `ValueError` when the bytes are not an LZ4 frame that could hold one page: the
    payload a page can need is bounded, so damaged block sizes are refused before anything large
    is buffered.
    """
    end = len(buf)
    if end - start < 7:
        raise NeedMore(7)
    if bytes(buf[start : start + 4]) != MAGIC:
        raise ValueError("payload is not an LZ4 frame (bad magic)")
    flg, bd = buf[start + 4], buf[start + 5]
    if flg & _FLG_VERSION_MASK != _FLG_VERSION_01 or flg & _FLG_RESERVED or bd & _BD_RESERVED:
        raise ValueError(f"LZ4 frame descriptor is invalid (FLG 0x{flg:02x}, BD 0x{bd:02x})")
    if flg & _FLG_DICT_ID:
        raise ValueError("LZ4 frame needs a dictionary")
    pos = 6 + (8 if flg & _FLG_CONTENT_SIZE else 0) + 1  # descriptor's optional content size, then its checksum
    block_extra = 4 if flg & _FLG_BLOCK_CHECKSUM else 0
    # LZ4's worst case is about n/255 + 16 bytes over the input; a page needs no more than this
    budget = page_size + page_size // 255 + 64
    while True:
        if end - start < pos + 4:
            raise NeedMore(pos + 4)
        word = int.from_bytes(buf[start + pos : start + pos + 4], "little")
        pos += 4
        if word == 0:  # end mark
            return pos + (4 if flg & _FLG_CONTENT_CHECKSUM else 0)
        size = word & ~_BLOCK_UNCOMPRESSED
        budget -= size
        if budget < 0:
            raise ValueError("LZ4 frame is larger than any page it could hold")
        pos += size + block_extra


def decompress_page(frame: bytes | bytearray | memoryview, page_size: int) -> bytes:
    """Decode one LZ4 frame that must hold exactly one page; checks the frame's own checksums."""
    try:
        page = lz4.frame.decompress(bytes(frame))
    except RuntimeError as exc:  # python-lz4 reports every frame error this way
        raise ValueError(f"LZ4 frame does not decode ({exc})") from exc
    if len(page) != page_size:
        raise ValueError(f"LZ4 frame decodes to {len(page)} bytes, not {page_size}")
    return page


def compress_page(page: bytes) -> bytes:
    """One page as the LZ4 frame superfly/ltx v0.5.1 writes: 64 KiB blocks, no content size
    (its writer stores none); the content checksum, which its reader checks when present, is on."""
    return lz4.frame.compress(
        page, block_size=lz4.frame.BLOCKSIZE_MAX64KB, content_checksum=True, store_size=False, block_linked=False
    )
