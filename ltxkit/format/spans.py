"""Decoding one LTX file as several spans of frames at once.

`LTXReader` reads a file front to back, so one large snapshot keeps one core busy. Here the file
is cut into spans at frame boundaries, each span is decoded on its own (`LTXReader.span`, the same
hot path, in another process), and `join_spans` then proves the whole file as strictly as the
streaming decoder does:

- the spans' CRCs are joined with `crc64_combine` into the file checksum and compared;
- the frames the spans read, taken together, must be exactly what the stored page index lists
  (compared by encoding them, byte for byte), ending where the terminator begins;
- the page-number rules (order, commit, lock page, snapshot holes) hold over all the frames;
- a checksum-tracked snapshot's pages must give its post-apply checksum.

Where to cut is read from the page index without parsing all of it (`find_cuts`). A cut in the
wrong place can only make a span fail; a caller then falls back to the ordinary streaming decode
(restore starts over in one process, since a span may already have written pages), so a cut is an
optimisation, never a source of verdicts.
"""

from __future__ import annotations

import itertools
from array import array
from collections.abc import Sequence

from ltxkit.format.checksum import CHECKSUM_FLAG, crc64, crc64_combine, file_checksum_mismatch, post_apply_mismatch
from ltxkit.format.decoder import FileEnds, SpanResult, page_numbers_sound
from ltxkit.format.errors import Code, LTXError
from ltxkit.format.schema import (
    HEADER_SIZE,
    TRAILER_SIZE,
    read_uvarint,
)


def find_cuts(ends: FileEnds, parts: int) -> list[int]:
    """Frame offsets that cut the page block into about `parts` equal spans ([] when none is found).

    LEB128 varints end at bytes below 0x80, so any byte position in the index can be moved to the
    start of a varint. Which of the three fields of an entry that varint is follows from the
    entries themselves: only the right alignment makes each entry's offset + size the next
    entry's offset, four entries in a row.
    """
    data = ends.index_varints
    cuts: list[int] = []
    for k in range(1, parts):
        pos = len(data) * k // parts
        while 0 < pos < len(data) and data[pos - 1] >= 0x80:
            pos += 1
        cut = _entry_offset_at(data, pos, ends.frames_end)
        if cut is not None and (not cuts or cut > cuts[-1]):
            cuts.append(cut)
    return cuts


def _entry_offset_at(data: bytes, pos: int, frames_end: int) -> int | None:
    for skip in range(3):
        try:
            p = pos
            for _ in range(skip):
                _, p = read_uvarint(data, p)
            triples = []
            for _ in range(4):
                pgno, p = read_uvarint(data, p)
                offset, p = read_uvarint(data, p)
                size, p = read_uvarint(data, p)
                triples.append((pgno, offset, size))
        except (IndexError, OverflowError):
            continue
        chained = all(a[1] + a[2] == b[1] and a[0] < b[0] for a, b in itertools.pairwise(triples))
        if chained and HEADER_SIZE < triples[0][1] < frames_end:
            return triples[0][1]
    return None


def join_spans(ends: FileEnds, spans: Sequence[SpanResult]) -> list[int]:
    """Prove the file from its spans (in file order); return its page numbers. Raises LTXError."""
    bounds = [HEADER_SIZE] + [b for span in spans for b in (span.start, span.end)] + [ends.frames_end]
    if any(a != b for a, b in zip(bounds[::2], bounds[1::2], strict=True)):
        raise LTXError(Code.INDEX_MISMATCH, "the spans do not cover the page block", offset=ends.frames_end)
    if b"".join(span.index_varints for span in spans) != ends.index_varints:
        raise LTXError(Code.INDEX_MISMATCH, "page index does not match the page block", offset=ends.frames_end)
    crc = crc64(ends.header_bytes)
    page_sum = 0
    for span in spans:
        crc = crc64_combine(crc, span.crc, span.length)
        page_sum ^= span.page_sum
    wrong = file_checksum_mismatch(ends.trailer.file_checksum, crc64(ends.checksummed_tail, crc), ends.size - 8)
    if wrong is not None:
        raise wrong
    pgnos = array("L")
    for span in spans:
        pgnos += span.pgnos
    if not page_numbers_sound(ends.header, pgnos):
        # which rule and where is the one-process decode's to say: the caller falls back to it
        raise LTXError(Code.PAGE_ORDER, "the spans' page numbers break a page-number rule", offset=spans[0].start)
    header = ends.header
    if header.is_snapshot and not header.no_checksum:
        wrong = post_apply_mismatch(
            ends.trailer.post_apply_checksum, CHECKSUM_FLAG | page_sum, ends.size - TRAILER_SIZE
        )
        if wrong is not None:
            raise wrong
    return pgnos.tolist()
