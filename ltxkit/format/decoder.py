"""The strict LTX decoder: bytes in, header / pages / index / trailer out, every defect typed.

`LTXReader` streams a file once, front to back, holding one read chunk at a time (so a 300 MB
snapshot costs a few MB of memory) and verifies everything the format lets it verify: header
rules, frame headers, page order, LZ4 payloads, the page index against the frames actually read,
the trailer, the file checksum and, for snapshots with checksum tracking, the post-apply checksum.

Structural defects (after which nothing further can be located or trusted) always raise
`LTXError`. Semantic defects (page order, lock page, holes in a snapshot...) are passed to
`on_defect` when one is given, so `verify` can name every one of them, and raise otherwise.
No `struct`, `lz4` or I/O exception escapes: each is turned into an `LTXError` with a code.
"""

from __future__ import annotations

import bisect
import itertools
import operator
from array import array
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import BinaryIO, Protocol

import lz4.block

from ltxkit.format import lz4frame
from ltxkit.format.checksum import CHECKSUM_FLAG, crc64, file_checksum_mismatch, page_checksum, post_apply_mismatch
from ltxkit.format.errors import Code, LTXError
from ltxkit.format.schema import (
    FLAG_V1_COMPRESS_LZ4,
    FRAME_PREFIX_SIZE,
    FRAME_PREFIX_STRUCT,
    HEADER_SIZE,
    INDEX_SIZE_FIELD_SIZE,
    INDEX_SIZE_STRUCT,
    MAGIC,
    PAGE_FLAG_LZ4_FRAME,
    PAGE_FLAG_SIZE,
    PAGE_HEADER_SIZE,
    SIZE_PREFIX_SIZE,
    TERMINATOR,
    TRAILER_SIZE,
    Header,
    IndexEntry,
    Trailer,
    encode_index_varints,
    encode_page_index,
    last_snapshot_pgno,
    next_snapshot_pgno,
    read_uvarint,
)

DefectHandler = Callable[[LTXError], None]
DEFAULT_CHUNK = 4 << 20
_decompress = lz4.block.decompress
_LZ4Error = lz4.block.LZ4BlockError


def _raise(err: LTXError) -> None:
    raise err


def parse_header(data: bytes | memoryview) -> Header:
    """Parse and validate the first 100 bytes of a file."""
    magic = bytes(data[:4])
    if magic != MAGIC[: len(magic)]:
        raise LTXError(Code.BAD_MAGIC, f"not an LTX file (magic {magic!r})", offset=0)
    if len(data) < HEADER_SIZE:
        raise LTXError(
            Code.TRUNCATED, f"file ends inside the header ({len(data)} of {HEADER_SIZE} bytes)", offset=len(data)
        )
    header = Header.unpack(data)
    if header.flags & FLAG_V1_COMPRESS_LZ4:
        raise LTXError(
            Code.UNSUPPORTED_VERSION,
            f"LTX v1 (LiteFS) is not supported: header flags 0x{header.flags:08x} mark a version-1 file "
            "(the whole page block one LZ4 frame); ltxkit reads LTX v3, as Litestream 0.5.x writes it",
            offset=4,
        )
    problems = header.problems()
    if problems:
        raise LTXError(Code.BAD_HEADER, "; ".join(problems), offset=0)
    return header


@dataclass(frozen=True, slots=True)
class SpanResult:
    """What one span of frames held, and the CRC of the span alone.

    Compact on purpose: a span decoded in a child comes back pickled, and an array of page
    numbers crosses the pipe as one block of bytes where a list of tuples took ~40 ms a file.
    """

    pgnos: array[int]  # the frames' page numbers, in order
    start: int  # file offset of the span's first frame
    end: int  # file offset just past its last frame
    crc: int  # CRC of the frames' prefixes and decompressed pages, in order, starting from nothing
    length: int  # bytes that CRC covers
    page_sum: int  # checksum-tracked snapshots: the database checksum of the span's pages; else 0
    index_varints: bytes  # these frames' part of the page index, encoded (built where the span is read)


class _Readable(Protocol):
    """What the reader needs of its input (a file, a window on one, or nothing at all)."""

    def read(self, n: int = -1, /) -> bytes: ...


class _Window:
    """Bytes [start, end) of a seekable stream, as a stream of their own."""

    def __init__(self, stream: BinaryIO, start: int, end: int) -> None:
        try:
            stream.seek(start)
        except OSError as exc:
            raise LTXError(Code.UNREADABLE, f"seek failed: {exc}", offset=start) from exc
        self._stream = stream
        self._left = end - start

    def readinto(self, view: memoryview) -> int:
        n = min(len(view), self._left)
        if n <= 0:
            return 0
        got = self._stream.readinto(view[:n]) or 0  # type: ignore[attr-defined]  # BinaryIO omits readinto
        self._left -= got
        return got

    def read(self, n: int = -1) -> bytes:
        n = self._left if n < 0 else min(n, self._left)
        data = self._stream.read(n) if n > 0 else b""
        self._left -= len(data)
        return data


class _Exhausted:
    """A stream with nothing left to read: behind a reader whose bytes are all in memory already."""

    def read(self, n: int = -1) -> bytes:
        return b""

    def readinto(self, view: memoryview) -> int:
        return 0


_EXHAUSTED = _Exhausted()


@dataclass(slots=True)
class FileInfo:
    """What a fully decoded file holds, without its pages."""

    header: Header
    trailer: Trailer
    frames: list[tuple[int, int, int]]  # (pgno, offset, size) of each frame, as read
    size: int
    page_count: int
    defects: list[LTXError] = field(default_factory=list)

    @property
    def index(self) -> list[IndexEntry]:
        return [IndexEntry._make(f) for f in self.frames]


class LTXReader:
    """Decode one LTX file from a readable binary stream, strictly and in one pass.

    Iterate `pages()` to get `(pgno, page_bytes)`; once it is exhausted, `info` holds the header,
    trailer and index, and every check has run. `name` only labels errors.
    """

    def __init__(
        self,
        stream: BinaryIO,
        *,
        on_defect: DefectHandler | None = None,
        chunk_size: int = DEFAULT_CHUNK,
        verify_checksums: bool = True,
    ) -> None:
        self._init_state(stream, on_defect or _raise, chunk_size, verify_checksums, base=0, span=False)
        self._next_chunk = min(64 << 10, chunk_size)  # small files stay cheap
        head = self._take(HEADER_SIZE, allow_short=True)
        self.header = parse_header(head)
        self._crc = crc64(head)

    @classmethod
    def from_bytes(
        cls, data: bytes, *, on_defect: DefectHandler | None = None, verify_checksums: bool = True
    ) -> LTXReader:
        """A reader over a whole file already in memory: no stream and no copy into a buffer.

        For small files read in one call (`Storage.read_bytes`); same checks, same errors.
        """
        reader = cls.__new__(cls)
        reader._init_state(_EXHAUSTED, on_defect or _raise, DEFAULT_CHUNK, verify_checksums, base=0, span=False)
        reader._buf = data
        head = reader._take(HEADER_SIZE, allow_short=True)
        reader.header = parse_header(head)
        reader._crc = crc64(head)
        return reader

    def _init_state(
        self, stream: _Readable, on_defect: DefectHandler, chunk_size: int, verify: bool, *, base: int, span: bool
    ) -> None:
        self._stream = stream
        self._on_defect = on_defect
        self._chunk = chunk_size
        self._next_chunk = chunk_size
        self._verify = verify
        self._buf: bytes | bytearray = b""
        self._pos = 0
        self._base = base  # file offset of _buf[0]
        self._span = span
        self.defects: list[LTXError] = []
        self.info: FileInfo | None = None
        self.span_result: SpanResult | None = None

    @classmethod
    def span(cls, stream: BinaryIO, header: Header, start: int, end: int) -> LTXReader:
        """A reader for just the frames in bytes [start, end) of a file whose header is known.

        For decoding one file in several processes: `pages()` yields the span's pages and stops
        cleanly where the span ends (a frame that crosses `end` is an error); afterwards
        `span_result` holds the CRC of the span alone and what it held, for `spans.join_spans`.
        No index, trailer or page-number checks run here: they need the whole file.
        """
        reader = cls.__new__(cls)
        reader._init_state(_Window(stream, start, end), _raise, DEFAULT_CHUNK, True, base=start, span=True)
        reader.header = header
        reader._crc = 0  # the span's own CRC, joined to the others by crc64_combine
        return reader

    @property
    def position(self) -> int:
        """Bytes read from the stream so far (for progress reports)."""
        return self._base + len(self._buf)

    # ---- buffered input ---------------------------------------------------------------------

    def _read(self, n: int) -> bytes:
        try:
            return self._stream.read(n) or b""
        except OSError as exc:
            raise LTXError(Code.UNREADABLE, f"read failed: {exc}", offset=self._base + len(self._buf)) from exc

    def _readinto(self, view: memoryview) -> int:
        try:
            readinto = getattr(self._stream, "readinto", None)
            if readinto is None:
                data = self._stream.read(len(view)) or b""
                view[: len(data)] = data
                return len(data)
            return readinto(view) or 0
        except OSError as exc:
            raise LTXError(Code.UNREADABLE, f"read failed: {exc}", offset=self._base + len(self._buf)) from exc

    def _fill(self, need: int) -> bool:
        """Make `need` bytes available at _pos; False when the stream ends first.

        Reads straight into the buffer behind the few bytes left over, so a chunk is copied once
        (kernel to buffer), and the hot path slices it through a memoryview without copying.
        Once the buffer has grown to a full chunk it is reused in place: the leftover moves to its
        front and the read lands behind it. A fresh buffer per chunk cost the kernel a page fault
        for every 4 KiB read (a fifth of a large file's decode time). Nothing handed out aliases
        the buffer (pages are decompressed copies), so overwriting it is safe.
        """
        old = self._buf
        have = len(old) - self._pos
        if have >= need:
            return True
        if isinstance(old, bytearray) and len(old) >= max(need, have + self._chunk // 2):
            new = old
            new[:have] = old[self._pos :]  # same length: allowed while the hot loop's view exists
        else:
            new = bytearray(max(need, have + self._next_chunk))
            self._next_chunk = min(self._next_chunk * 4, self._chunk)
            new[:have] = old[self._pos :]
        self._base += self._pos
        self._pos = 0
        with memoryview(new) as view:
            while have < len(new):  # a stream may return less per read (S3): fill the buffer
                n = self._readinto(view[have:])
                if not n:
                    break
                have += n
        if have < len(new):  # the stream ended: the buffer holds less than it could
            if new is old:
                new = new[:have]  # a view of the old buffer may still exist: it cannot shrink
            else:
                del new[have:]
        self._buf = new
        return have >= need

    def _take(self, n: int, *, allow_short: bool = False) -> bytes:
        if not self._fill(n) and not allow_short:
            raise LTXError(
                Code.TRUNCATED,
                f"file ends {n - (len(self._buf) - self._pos)} bytes early",
                offset=self._base + len(self._buf),
            )
        out = bytes(self._buf[self._pos : self._pos + n])
        self._pos += len(out)
        return out

    def _report(self, err: LTXError) -> None:
        """A semantic defect: kept, and handed to `on_defect` (which raises in strict mode)."""
        self.defects.append(err)
        self._on_defect(err)

    # ---- page block -------------------------------------------------------------------------

    def pages(self) -> Iterator[tuple[int, bytes]]:
        """Yield each page as (pgno, decompressed bytes); run the end-of-file checks after the last.

        This is the per-page hot path: locals only, one struct call per frame header, the buffer
        refilled only when a frame does not fit in what is already read.
        """
        hdr = self.header
        page_size = hdr.page_size
        lock = hdr.lock_pgno
        track = hdr.is_snapshot and not hdr.no_checksum and self._verify
        verify = self._verify
        db_sum = CHECKSUM_FLAG
        crc = self._crc
        unpack_prefix = FRAME_PREFIX_STRUCT.unpack_from
        decompress = _decompress
        crc64_ = crc64
        prefix_size = FRAME_PREFIX_SIZE
        max_block = page_size + page_size // 255 + 16  # LZ4's worst case for incompressible input
        frames: list[tuple[int, int, int]] = []
        append = frames.append
        legacy = 0  # LZ4-frame pages read: their CRC input has no size prefix
        buf, pos, base = self._buf, self._pos, self._base
        buf_len = len(buf)
        view = memoryview(buf)
        while True:
            if buf_len - pos < prefix_size:
                self._pos = pos
                if not self._fill(prefix_size):
                    if self._span and self._pos == len(self._buf):  # the span ends on a frame boundary
                        self.span_result = SpanResult(
                            array("L", [frame[0] for frame in frames]),
                            frames[0][1] if frames else self._base,
                            self._base + self._pos,
                            crc,
                            len(frames) * (prefix_size + page_size) - legacy * SIZE_PREFIX_SIZE,
                            db_sum if track else 0,
                            encode_index_varints(frames),
                        )
                        return
                    raise LTXError(
                        Code.TRUNCATED, "file ends inside the page block", offset=self._base + len(self._buf)
                    )
                buf, pos, base = self._buf, self._pos, self._base
                buf_len = len(buf)
                view = memoryview(buf)
            pgno, flags, size = unpack_prefix(buf, pos)
            if flags != PAGE_FLAG_SIZE or pgno == 0:
                frame_off = self._base + pos
                if pgno == 0 and flags == 0:
                    if self._span:
                        raise LTXError(Code.INDEX_MISMATCH, "the page block ends inside a span", offset=frame_off)
                    crc = crc64_(buf[pos : pos + PAGE_HEADER_SIZE], crc)
                    self._pos = pos + PAGE_HEADER_SIZE
                    break
                if flags != PAGE_FLAG_LZ4_FRAME or pgno == 0:
                    why = "page number 0" if pgno == 0 else f"flags 0x{flags:04x}"
                    raise LTXError(Code.BAD_PAGE_HEADER, f"bad page frame header: {why}", offset=frame_off, pgno=pgno)
                # Litestream <= 0.5.15: an LZ4 frame, no size prefix (the slow path, off the hot loop)
                self._pos = pos
                page, frame_len = self._legacy_page(pgno, page_size)
                buf, pos, base = self._buf, self._pos, self._base
                buf_len = len(buf)
                view = memoryview(buf)
                if verify:
                    crc = crc64_(page, crc64_(view[pos : pos + PAGE_HEADER_SIZE], crc))
                if track and pgno != lock:
                    db_sum = CHECKSUM_FLAG | (db_sum ^ page_checksum(pgno, page))
                append((pgno, base + pos, frame_len))
                legacy += 1
                pos += frame_len
                yield pgno, page
                continue
            end = pos + prefix_size + size
            if end > buf_len:
                self._pos = pos
                # never more than one page's worst case: a damaged prefix must not size a buffer
                if not self._fill(prefix_size + min(size, max_block + 1)):
                    raise LTXError(
                        Code.TRUNCATED, f"file ends inside page {pgno}", offset=self._base + len(self._buf), pgno=pgno
                    )
                if size > max_block:
                    raise LTXError(
                        Code.PAGE_DECOMPRESS_FAILED,
                        f"page {pgno}: an LZ4 block of {size} bytes cannot hold one {page_size}-byte page",
                        offset=self._base + self._pos,
                        pgno=pgno,
                    )
                buf, pos, base = self._buf, self._pos, self._base
                buf_len = len(buf)
                view = memoryview(buf)
                end = pos + prefix_size + size
            try:
                page = decompress(view[pos + prefix_size : end], page_size)  # positional: a keyword costs ~10% here
            except _LZ4Error as exc:
                raise LTXError(
                    Code.PAGE_DECOMPRESS_FAILED,
                    f"page {pgno}: LZ4 block does not decode",
                    offset=self._base + pos,
                    pgno=pgno,
                ) from exc
            if len(page) != page_size:
                raise LTXError(
                    Code.PAGE_DECOMPRESS_FAILED,
                    f"page {pgno}: decodes to {len(page)} bytes, not {page_size}",
                    offset=self._base + pos,
                    pgno=pgno,
                )
            if verify:
                crc = crc64_(page, crc64_(view[pos : pos + prefix_size], crc))
            if track and pgno != lock:
                db_sum = CHECKSUM_FLAG | (db_sum ^ page_checksum(pgno, page))
            append((pgno, base + pos, end - pos))
            pos = end
            yield pgno, page

        for err in page_number_defects(hdr, frames):
            self._report(err)
        self._finish(frames, crc, db_sum if track else None)

    def _legacy_page(self, pgno: int, page_size: int) -> tuple[bytes, int]:
        """Decode the legacy frame at `_pos` (page header, then an LZ4 frame); return the page and
        the frame's whole length. Reads more of the stream as the LZ4 block headers ask for it;
        `_pos` still points at the frame afterwards (the buffer may have moved)."""
        need = PAGE_HEADER_SIZE + lz4frame.MIN_FRAME_SIZE
        while True:
            if not self._fill(need):
                raise LTXError(
                    Code.TRUNCATED, f"file ends inside page {pgno}", offset=self._base + len(self._buf), pgno=pgno
                )
            start = self._pos + PAGE_HEADER_SIZE
            try:
                length = lz4frame.frame_length(self._buf, start, page_size)
                if not self._fill(PAGE_HEADER_SIZE + length):
                    need = PAGE_HEADER_SIZE + length
                    continue
                start = self._pos + PAGE_HEADER_SIZE
                page = lz4frame.decompress_page(memoryview(self._buf)[start : start + length], page_size)
            except lz4frame.NeedMore as more:
                need = PAGE_HEADER_SIZE + more.total
                continue
            except ValueError as exc:
                raise LTXError(
                    Code.PAGE_DECOMPRESS_FAILED, f"page {pgno}: {exc}", offset=self._base + self._pos, pgno=pgno
                ) from exc
            return page, PAGE_HEADER_SIZE + length

    # ---- index, trailer, checksums ----------------------------------------------------------

    def _finish(self, frames: list[tuple[int, int, int]], crc: int, db_sum: int | None) -> None:
        index_off = self._base + self._pos
        rest = bytes(self._buf[self._pos :]) + self._read_all()
        self._buf, self._pos, self._base = b"", 0, index_off + len(rest)
        expected = encode_page_index(frames)
        stored: Sequence[tuple[int, int, int]]
        if rest[: len(expected)] == expected:  # the common case: no varint parsing needed
            stored, used = frames, len(expected)
        else:
            stored, used = _parse_index(rest, index_off)
        if used + TRAILER_SIZE > len(rest):
            raise LTXError(Code.TRUNCATED, "file ends before its trailer", offset=index_off + len(rest))
        if used + TRAILER_SIZE < len(rest):
            extra = len(rest) - used - TRAILER_SIZE
            raise LTXError(
                Code.TRAILING_BYTES, f"{extra} bytes follow the trailer", offset=index_off + used + TRAILER_SIZE
            )
        trailer = Trailer.unpack(rest[used:])
        if stored != frames:
            raise LTXError(Code.INDEX_MISMATCH, _index_difference(stored, frames), offset=index_off)
        if self._verify:
            wrong = file_checksum_mismatch(trailer.file_checksum, crc64(rest[: used + 8], crc), index_off + used + 8)
            if wrong is not None:
                raise wrong
        problems = trailer.problems(self.header)
        if problems:
            raise LTXError(Code.BAD_TRAILER, "; ".join(problems), offset=index_off + used)
        wrong = None if db_sum is None else post_apply_mismatch(trailer.post_apply_checksum, db_sum, index_off + used)
        if wrong is not None:
            self._report(wrong)
        self.info = FileInfo(self.header, trailer, frames, index_off + len(rest), len(frames), self.defects)

    def _read_all(self) -> bytes:
        """The rest of the stream: the page index and trailer. One read to the end, sized by the
        file object itself (a fixed large read size would allocate that much per small file)."""
        parts: list[bytes] = []
        while True:
            data = self._read(-1)
            if not data:
                return b"".join(parts)
            parts.append(data)

    def read_all(self) -> FileInfo:
        """Decode and verify the whole file, discarding page contents."""
        for _ in self.pages():
            pass
        assert self.info is not None
        return self.info


def page_numbers_sound(header: Header, pgnos: Sequence[int]) -> bool:
    """True when the page numbers break none of the rules `page_number_defects` names.

    The common case, checked in a few whole-sequence operations instead of a Python step per
    page (a 78,000-page snapshot: about 3 ms instead of 20). False says only "look closer":
    `page_number_defects` then says what is wrong and where.
    """
    if not pgnos:
        return not (header.is_snapshot and last_snapshot_pgno(header.commit, header.lock_pgno) > 0)
    lock = header.lock_pgno
    if header.is_snapshot:  # exactly 1..last, without the lock page
        last = last_snapshot_pgno(header.commit, lock)
        if len(pgnos) != last - (1 if lock <= last else 0):  # checked first: `commit` sizes nothing
            return False
        expected = array("L", range(1, min(lock, last + 1)))
        expected.extend(range(lock + 1, last + 1))
        return expected == (pgnos if isinstance(pgnos, array) else array("L", pgnos))
    if pgnos[-1] > header.commit or not all(map(operator.lt, pgnos, itertools.islice(pgnos, 1, None))):
        return False
    at = bisect.bisect_left(pgnos, lock)
    return at == len(pgnos) or pgnos[at] != lock


def page_number_defects(header: Header, frames: Sequence[tuple[int, int, int]]) -> list[LTXError]:
    """Page-number rules, from the frames' (pgno, offset) alone: order, commit, lock page, holes.

    Shared by the full decoder and by `verify --quick`, which sees only the page index.
    """
    if page_numbers_sound(header, [frame[0] for frame in frames]):
        return []
    return page_number_rules(header, frames)


def page_number_rules(header: Header, frames: Sequence[tuple[int, int, int]]) -> list[LTXError]:
    """Every page-number defect, frame by frame (`page_number_defects` without its fast path)."""
    out: list[LTXError] = []
    commit = header.commit
    lock = header.lock_pgno
    snapshot = header.is_snapshot
    prev = 0
    expect_next = 1  # next pgno a snapshot must hold
    for pgno, offset, _size in frames:
        if pgno <= prev:
            out.append(LTXError(Code.PAGE_ORDER, f"page {pgno} follows page {prev}", offset=offset, pgno=pgno))
        if pgno > commit:
            out.append(
                LTXError(Code.PAGE_BEYOND_COMMIT, f"page {pgno} is beyond commit {commit}", offset=offset, pgno=pgno)
            )
        if pgno == lock:
            out.append(LTXError(Code.LOCK_PAGE_PRESENT, f"lock page {pgno} is stored", offset=offset, pgno=pgno))
        # a lock page stored in its place is reported above, not as a hole
        if snapshot and pgno != expect_next and pgno > prev and not (pgno == lock and prev + 1 == lock):
            out.append(
                LTXError(
                    Code.SNAPSHOT_NONSEQUENTIAL_PAGES,
                    f"nonsequential page numbers in snapshot: {prev},{pgno} (pages {expect_next}..{pgno - 1} missing)",
                    offset=offset,
                    pgno=pgno,
                    prev_pgno=prev,
                )
            )
        if pgno > prev:
            expect_next = next_snapshot_pgno(pgno, lock)
            prev = pgno
    if snapshot:
        last_needed = last_snapshot_pgno(commit, lock)
        if prev < last_needed:
            end = frames[-1][1] + frames[-1][2] if frames else HEADER_SIZE
            out.append(
                LTXError(
                    Code.SNAPSHOT_MISSING_PAGES,
                    f"snapshot ends at page {prev} but commit is {commit} (pages {expect_next}..{last_needed} missing)",
                    offset=end,
                    pgno=expect_next,
                )
            )
    return out


def _parse_index(data: bytes, base: int) -> tuple[list[IndexEntry], int]:
    """Parse the page index at the start of `data`; return entries and bytes used incl. size field."""
    entries: list[IndexEntry] = []
    pos = 0
    try:
        while True:
            pgno, pos = read_uvarint(data, pos)
            if pgno == 0:
                break
            offset, pos = read_uvarint(data, pos)
            size, pos = read_uvarint(data, pos)
            entries.append(IndexEntry(pgno, offset, size))
    except IndexError:
        raise LTXError(Code.TRUNCATED, "file ends inside the page index", offset=base + len(data)) from None
    except OverflowError:
        raise LTXError(Code.INDEX_MISMATCH, "page index holds an oversized varint", offset=base + pos) from None
    if pos + INDEX_SIZE_FIELD_SIZE > len(data):
        raise LTXError(Code.TRUNCATED, "file ends inside the page index", offset=base + len(data))
    (declared,) = INDEX_SIZE_STRUCT.unpack_from(data, pos)
    if declared != pos:
        raise LTXError(
            Code.INDEX_MISMATCH, f"page index size field says {declared} bytes, index has {pos}", offset=base + pos
        )
    return entries, pos + INDEX_SIZE_FIELD_SIZE


def _index_difference(stored: Sequence[tuple[int, int, int]], frames: Sequence[tuple[int, int, int]]) -> str:
    if len(stored) != len(frames):
        return f"page index lists {len(stored)} pages, page block holds {len(frames)}"
    for s, f in zip(stored, frames, strict=True):
        if tuple(s) != tuple(f):
            return (
                f"page index entry (pgno {s[0]}, offset {s[1]}, size {s[2]}) does not match "
                f"frame (pgno {f[0]}, offset {f[1]}, size {f[2]})"
            )
    return "page index does not match page block"


# ---- convenience and random access ------------------------------------------------------------


@dataclass(slots=True)
class DecodedFile:
    header: Header
    trailer: Trailer
    index: list[IndexEntry]
    pages: list[tuple[int, bytes]]


def decode_file(data: bytes) -> DecodedFile:
    """Decode a whole in-memory file strictly (any defect raises)."""
    reader = LTXReader.from_bytes(data)
    pages = list(reader.pages())
    assert reader.info is not None
    return DecodedFile(reader.header, reader.info.trailer, reader.info.index, pages)


def read_header(stream: BinaryIO) -> Header:
    """Parse just the header (for listing replicas quickly)."""
    try:
        data = stream.read(HEADER_SIZE) or b""
    except OSError as exc:
        raise LTXError(Code.UNREADABLE, f"read failed: {exc}", offset=0) from exc
    return parse_header(data)


# ---- a file's ends, read with ranged reads: quick verify, spans and random access share them --


@dataclass(frozen=True, slots=True)
class FileEnds:
    """A file's header and everything after its page block, read without touching the frames."""

    header: Header
    header_bytes: bytes
    frames_end: int  # offset of the terminator: where the page block's frames stop
    index_varints: bytes  # the stored page index, without its closing 0 and size field
    checksummed_tail: bytes  # terminator, index, size field, post-apply checksum (the CRC's last input)
    trailer: Trailer
    size: int


def _read_exactly(stream: BinaryIO, offset: int, n: int) -> bytes:
    try:
        stream.seek(offset)
        data = stream.read(n) or b""
    except OSError as exc:
        raise LTXError(Code.UNREADABLE, f"read failed: {exc}", offset=offset) from exc
    if len(data) != n:
        raise LTXError(Code.TRUNCATED, f"file ends {n - len(data)} bytes early", offset=offset + len(data))
    return data


def read_ends(stream: BinaryIO, size: int) -> FileEnds:
    """Header and tail of a seekable file of `size` bytes."""
    least = HEADER_SIZE + PAGE_HEADER_SIZE + 1 + INDEX_SIZE_FIELD_SIZE + TRAILER_SIZE
    if size < least:
        raise LTXError(Code.TRUNCATED, f"file is only {size} bytes", offset=size)
    head = _read_exactly(stream, 0, HEADER_SIZE)
    header = parse_header(head)
    size_field_at = size - TRAILER_SIZE - INDEX_SIZE_FIELD_SIZE
    (index_len,) = INDEX_SIZE_STRUCT.unpack(_read_exactly(stream, size_field_at, INDEX_SIZE_FIELD_SIZE))
    frames_end = size_field_at - index_len - PAGE_HEADER_SIZE
    if index_len == 0 or frames_end < HEADER_SIZE:
        if index_len > size:  # what the last bytes of a cut-off file read as, almost always
            raise LTXError(
                Code.TRUNCATED,
                f"the last bytes are not a page index and trailer ({size} bytes cannot hold the "
                f"{index_len:,}-byte index they claim): the file is cut short, or bytes follow its trailer",
                offset=size,
            )
        raise LTXError(Code.INDEX_MISMATCH, f"page index size field {index_len} is impossible", offset=size_field_at)
    tail = _read_exactly(stream, frames_end, size - frames_end)
    varints_end = PAGE_HEADER_SIZE + index_len - 1
    if tail[:PAGE_HEADER_SIZE] != TERMINATOR or tail[varints_end] != 0:
        raise LTXError(Code.INDEX_MISMATCH, "the page index is not where its size field says", offset=frames_end)
    trailer = Trailer.unpack(tail[-TRAILER_SIZE:])
    problems = trailer.problems(header)
    if problems:
        raise LTXError(Code.BAD_TRAILER, "; ".join(problems), offset=size - TRAILER_SIZE)
    return FileEnds(header, head, frames_end, tail[PAGE_HEADER_SIZE:varints_end], tail[: len(tail) - 8], trailer, size)


def read_page_index(stream: BinaryIO, size: int) -> tuple[list[IndexEntry], Trailer]:
    """Random access: the page index and trailer of a seekable stream of `size` bytes, from its
    ends alone (`read_ends`); the page block is not read (use `LTXReader` for that)."""
    ends = read_ends(stream, size)
    varints_at = ends.frames_end + PAGE_HEADER_SIZE
    data = ends.checksummed_tail[PAGE_HEADER_SIZE:-8]  # varints, their 0, the size field
    entries, used = _parse_index(data, varints_at)
    if used != len(data):
        raise LTXError(Code.INDEX_MISMATCH, "page index does not end where its size field says", offset=varints_at)
    return entries, ends.trailer


def read_page(stream: BinaryIO, entry: IndexEntry, page_size: int) -> bytes:
    """Random access: decode the one frame `entry` points at (frame header checked, no file checksum)."""
    try:
        stream.seek(entry.offset)
        frame = stream.read(entry.size)
    except OSError as exc:
        raise LTXError(Code.UNREADABLE, f"read failed: {exc}", offset=entry.offset) from exc
    if len(frame) != entry.size or entry.size < FRAME_PREFIX_SIZE:
        raise LTXError(Code.TRUNCATED, f"page {entry.pgno}: frame is cut short", offset=entry.offset)
    pgno, flags, size = FRAME_PREFIX_STRUCT.unpack_from(frame)
    legacy = flags == PAGE_FLAG_LZ4_FRAME
    if pgno != entry.pgno or not (legacy or (flags == PAGE_FLAG_SIZE and FRAME_PREFIX_SIZE + size == entry.size)):
        raise LTXError(
            Code.INDEX_MISMATCH,
            f"index entry for page {entry.pgno} does not point at its frame",
            offset=entry.offset,
            pgno=entry.pgno,
        )
    if legacy:
        try:
            length = PAGE_HEADER_SIZE + lz4frame.frame_length(frame, PAGE_HEADER_SIZE, page_size)
        except lz4frame.NeedMore:
            length = None
        except ValueError as exc:
            raise LTXError(Code.PAGE_DECOMPRESS_FAILED, f"page {pgno}: {exc}", offset=entry.offset, pgno=pgno) from exc
        if length != entry.size:
            raise LTXError(
                Code.INDEX_MISMATCH,
                f"page {pgno}: LZ4 frame does not end where its index entry says",
                offset=entry.offset,
                pgno=pgno,
            )
        try:
            return lz4frame.decompress_page(frame[PAGE_HEADER_SIZE:], page_size)
        except ValueError as exc:
            raise LTXError(Code.PAGE_DECOMPRESS_FAILED, f"page {pgno}: {exc}", offset=entry.offset, pgno=pgno) from exc
    try:
        page = _decompress(frame[FRAME_PREFIX_SIZE:], uncompressed_size=page_size)
    except _LZ4Error as exc:
        raise LTXError(
            Code.PAGE_DECOMPRESS_FAILED, f"page {pgno}: LZ4 block does not decode", offset=entry.offset, pgno=pgno
        ) from exc
    if len(page) != page_size:
        raise LTXError(
            Code.PAGE_DECOMPRESS_FAILED, f"page {pgno}: decodes to {len(page)} bytes", offset=entry.offset, pgno=pgno
        )
    return page
