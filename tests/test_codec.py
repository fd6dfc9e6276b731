"""Unit tests of the LTX encoder and decoder: round trips, the encoder's refusals, and one test per
defect code the decoder can report, with the byte offset it must report it at."""

from __future__ import annotations

import io

import lz4.block
import pytest

from ltxkit.format import (
    CHECKSUM_FLAG,
    FLAG_NO_CHECKSUM,
    Code,
    Header,
    IndexEntry,
    LTXError,
    LTXReader,
    LTXWriter,
    database_checksum,
    decode_file,
    encode_file,
    lock_pgno,
    read_page_index,
)
from ltxkit.format.decoder import page_number_defects, parse_header, read_page
from ltxkit.format.encoder import EncodeError
from ltxkit.format.schema import HEADER_SIZE, TERMINATOR
from tests.filespec import FileSpec, Frame, corrupt_region, flip_byte, insert_bytes, page_bytes, pages_of, random_page

PAGE_SIZES = [512 << i for i in range(8)]  # 512 .. 65536


def collect(data: bytes, **kw) -> tuple[list[LTXError], LTXError | None]:
    """Decode in collection mode: (semantic defects reported, the fatal error raised or None)."""
    found: list[LTXError] = []
    try:
        LTXReader(io.BytesIO(data), on_defect=found.append, **kw).read_all()
    except LTXError as exc:
        return found, exc
    return found, None


def codes(data: bytes) -> list[Code]:
    found, fatal = collect(data)
    return [e.code for e in found] + ([fatal.code] if fatal else [])


def strict_error(data: bytes) -> LTXError:
    with pytest.raises(LTXError) as info:
        decode_file(data)
    return info.value


def assert_defect(data: bytes, code: Code, offset: int | None, **context) -> LTXError:
    """Strict decoding raises `code` at `offset`, and collection mode reports exactly that defect."""
    err = strict_error(data)
    assert (err.code, err.offset) == (code, offset), str(err)
    for key, value in context.items():
        assert err.context[key] == value
    found, fatal = collect(data)
    assert [(e.code, e.offset) for e in [*found, *([fatal] if fatal else [])]] == [(code, offset)]
    assert str(err).startswith(f"{code}: ")
    return err


# ---- round trips ------------------------------------------------------------------------------

ROUND_TRIP_SPECS = {
    "snapshot": FileSpec(commit=5, pages=[1, 2, 3, 4, 5], timestamp=1_700_000_000_000),
    "empty-increment": FileSpec(min_txid=7, max_txid=9, commit=3),
    "increment": FileSpec(min_txid=2, max_txid=4, commit=40, pages=[2, 17, 40], node_id=7),
    "tracked-snapshot": FileSpec(flags=0, commit=3, pages=[1, 2, 3]),
    "tracked-empty-snapshot": FileSpec(flags=0, commit=0),
    "tracked-increment": FileSpec(
        flags=0,
        min_txid=5,
        commit=9,
        pages=[9],
        pre_apply_checksum=CHECKSUM_FLAG | 5,
        post_apply_checksum=CHECKSUM_FLAG | 6,
    ),
    "wal-fields": FileSpec(min_txid=3, commit=2, pages=[2], wal_offset=32, wal_size=4152, wal_salt1=1, wal_salt2=2),
    "incompressible": FileSpec(page_size=4096, commit=2, pages=[(1, random_page(4096, 1)), 2]),
    "big-pages": FileSpec(page_size=65536, commit=2, pages=[1, (2, random_page(65536, 2))]),
}


@pytest.mark.parametrize("name", ROUND_TRIP_SPECS)
def test_round_trip(name):
    spec = ROUND_TRIP_SPECS[name]
    data = spec.build(valid=True)
    layout = spec.layout()
    assert layout.data == data, "FileSpec's raw layout and the encoder disagree"
    decoded = decode_file(data)
    assert decoded.header == spec.header()
    assert decoded.pages == spec.page_list()
    assert decoded.trailer.post_apply_checksum == layout.post_apply_checksum
    assert decoded.trailer.file_checksum == layout.file_checksum
    assert decoded.index == list(layout.frames)
    if decoded.header.is_snapshot and not decoded.header.no_checksum:
        assert decoded.trailer.post_apply_checksum == database_checksum(decoded.pages, spec.header().lock_pgno)
    reader = LTXReader(io.BytesIO(data))
    info = reader.read_all()
    assert (info.size, info.page_count, info.defects) == (len(data), len(spec.pages), [])


@pytest.mark.parametrize("chunk_size", [1, 3, 10, 64, 1000])
def test_small_read_chunks_decode_the_same(chunk_size):
    spec = FileSpec(page_size=1024, commit=6, pages=[1, 2, (3, random_page(1024, 3)), 4, 5, 6])
    data = spec.build()
    reader = LTXReader(io.BytesIO(data), chunk_size=chunk_size)
    assert list(reader.pages()) == spec.page_list()
    assert reader.info is not None and reader.info.index == list(spec.layout().frames)
    for cut in (len(data) - 1, len(data) // 2, 105):
        _, fatal = collect(data[:cut], chunk_size=chunk_size)
        assert fatal is not None and (fatal.code, fatal.offset) == (Code.TRUNCATED, cut)


class _Trickle(io.RawIOBase):
    """A stream that hands out at most `most` bytes per read, as sockets and S3 bodies may."""

    def __init__(self, data: bytes, most: int) -> None:
        self._data, self._pos, self._most = data, 0, most

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:  # type: ignore[no-untyped-def]
        n = min(len(b), self._most, len(self._data) - self._pos)
        b[:n] = self._data[self._pos : self._pos + n]
        self._pos += n
        return n


@pytest.mark.parametrize(("chunk_size", "most"), [(64, 5), (4096, 1000), (4 << 20, 333), (4 << 20, 1 << 30)])
def test_a_reused_read_buffer_never_shows_through_pages_kept(chunk_size, most):
    # every page kept until the end: a page that aliased the read buffer would change under us
    pages = [(n, random_page(1024, n)) for n in range(1, 300)]
    data = FileSpec(page_size=1024, commit=299, pages=pages).build()
    reader = LTXReader(_Trickle(data, most), chunk_size=chunk_size)
    assert list(reader.pages()) == pages
    assert reader.info is not None and reader.info.size == len(data)
    _, fatal = collect(data[: len(data) - 20], chunk_size=chunk_size)
    assert fatal is not None and fatal.code == Code.TRUNCATED


def test_writer_streams_and_reports_its_size():
    out = io.BytesIO()
    writer = LTXWriter(out, FileSpec(commit=2).header())
    writer.write_page(1, page_bytes(1, 512))
    writer.write_page(2, page_bytes(2, 512))
    trailer = writer.close()
    assert writer.close() is trailer  # idempotent
    assert writer.bytes_written == len(out.getvalue())
    assert decode_file(out.getvalue()).trailer == trailer
    with pytest.raises(EncodeError):
        writer.write_page(3, page_bytes(3, 512))


def test_verify_checksums_off_skips_checksums_but_not_structure():
    data = FileSpec(commit=2, pages=[1, 2], file_checksum=CHECKSUM_FLAG | 1).build()
    assert strict_error(data).code == Code.FILE_CHECKSUM_MISMATCH
    info = LTXReader(io.BytesIO(data), verify_checksums=False).read_all()
    assert info.page_count == 2


# ---- the encoder refuses what the reference refuses -------------------------------------------


@pytest.mark.parametrize(
    ("spec", "why"),
    [
        (FileSpec(min_txid=2, commit=lock_pgno(512), pages=[lock_pgno(512)]), "lock page"),
        (FileSpec(page_size=65536, min_txid=2, commit=16386, pages=[16385]), "lock page"),
        (FileSpec(min_txid=2, commit=9, pages=[3, 2]), "out-of-order"),
        (FileSpec(min_txid=2, commit=9, pages=[3, 3]), "out-of-order"),
        (FileSpec(min_txid=2, commit=2, pages=[1, 3]), "beyond commit"),
        (FileSpec(commit=2, pages=[1, 2, 3]), "beyond commit"),
        (FileSpec(commit=3, pages=[1, 3]), "nonsequential"),
        (FileSpec(commit=3, pages=[2, 3]), "nonsequential"),
        (FileSpec(commit=3, pages=[1, 2]), "snapshot holds pages 1..2"),
        (FileSpec(commit=3, pages=[]), "snapshot holds pages 1..0"),
        (FileSpec(min_txid=2, commit=3, pages=[(1, bytes(511))]), "page size"),
        (FileSpec(min_txid=2, commit=3, pages=[(1, bytes(1024))]), "page size"),
        (FileSpec(min_txid=2, commit=3, pages=[0]), "page number 0"),
        (FileSpec(flags=0, min_txid=2, commit=3, pages=[1], post_apply_checksum=5), "post-apply"),
        (FileSpec(flags=0, commit=1, pages=[1], post_apply_checksum=CHECKSUM_FLAG | 5), "does not match"),
    ],
)
def test_encoder_refuses(spec, why):
    with pytest.raises(EncodeError, match=why):
        spec.build(valid=True)


def test_tracked_increment_needs_its_post_apply_checksum():
    header = FileSpec(flags=0, min_txid=2, commit=1).header()
    with pytest.raises(EncodeError, match="post-apply"):
        encode_file(header, [(1, page_bytes(1, 512))])


BAD_HEADERS = {
    "flags": {"flags": 0x4},
    "high-flags": {"flags": 0x80000002},
    "page-size-not-power-of-two": {"page_size": 1000},
    "page-size-too-small": {"page_size": 256},
    "page-size-too-big": {"page_size": 131072},
    "page-size-zero": {"page_size": 0},
    "min-txid-zero": {"min_txid": 0, "max_txid": 1},
    "max-txid-zero": {"min_txid": 1, "max_txid": 0},
    "txids-reversed": {"min_txid": 5, "max_txid": 4},
    "negative-wal-offset": {"wal_offset": -1},
    "negative-wal-size": {"wal_offset": 32, "wal_size": -1},
    "salt-without-offset": {"wal_salt1": 7},
    "salt2-without-offset": {"wal_salt2": 7},
    "wal-size-without-offset": {"wal_size": 4096},
    "pre-apply-on-snapshot": {"pre_apply_checksum": CHECKSUM_FLAG | 1},
    "pre-apply-without-tracking": {"min_txid": 2, "pre_apply_checksum": CHECKSUM_FLAG | 1},
    "pre-apply-missing": {"flags": 0, "min_txid": 2, "pre_apply_checksum": 0},
    "pre-apply-without-flag-bit": {"flags": 0, "min_txid": 2, "pre_apply_checksum": 1},
    "reserved-not-zero": {"reserved": b"\x01" + bytes(19)},
}


@pytest.mark.parametrize("name", BAD_HEADERS)
def test_encoder_refuses_bad_header(name):
    spec = FileSpec(**{"page_size": 1024, "commit": 1, **BAD_HEADERS[name]})
    header = spec.header()
    assert header.problems()
    with pytest.raises(EncodeError, match="invalid header"):
        LTXWriter(io.BytesIO(), header)


def test_encoder_refuses_a_foreign_magic():
    with pytest.raises(EncodeError, match="magic"):
        LTXWriter(io.BytesIO(), FileSpec(magic=b"LTX2", commit=0).header())


def test_encoder_refuses_an_empty_database_without_the_empty_checksum():
    # the reference: "post-apply checksum must be empty for zero-length database"
    with pytest.raises(EncodeError, match="zero-length"):
        FileSpec(min_txid=1, commit=0).build(valid=True)
    with pytest.raises(EncodeError, match="zero-length"):
        FileSpec(flags=0, min_txid=2, commit=0, post_apply_checksum=CHECKSUM_FLAG | 3).build(valid=True)
    FileSpec(flags=0, commit=0).build(valid=True)  # tracked: the empty database checksum, accepted
    FileSpec(flags=0, min_txid=2, commit=0, post_apply_checksum=CHECKSUM_FLAG).build(valid=True)


# ---- the decoder: one code at a time, at the right offset -------------------------------------

GOOD = FileSpec(commit=4, pages=[1, 2, 3, 4], timestamp=1_700_000_000_000)
GOOD_BYTES = GOOD.build()
GOOD_LAYOUT = GOOD.layout()


@pytest.mark.parametrize(
    "data", [b"LTX2" + GOOD_BYTES[4:], b"SQLite format 3\x00" + bytes(100), b"x", b"\x00" * 200, b"LTX"[:2] + b"Z"]
)
def test_bad_magic(data):
    assert_defect(data, Code.BAD_MAGIC, 0)


@pytest.mark.parametrize("name", BAD_HEADERS)
def test_bad_header(name):
    data = FileSpec(**{"page_size": 1024, "commit": 1, **BAD_HEADERS[name]}).build()
    err = assert_defect(data, Code.BAD_HEADER, 0)
    with pytest.raises(LTXError) as again:
        parse_header(data[:HEADER_SIZE])
    assert again.value.code == Code.BAD_HEADER
    assert err.message


@pytest.mark.parametrize("flags", [0x1, 0x3])  # LiteFS writes v1 files compressed, tracked or not
def test_an_ltx_v1_file_is_named_unsupported_not_bad(flags):
    data = FileSpec(page_size=1024, commit=1, pages=[1], flags=flags).build()
    err = assert_defect(data, Code.UNSUPPORTED_VERSION, 4)
    assert err.message.startswith("LTX v1 (LiteFS) is not supported")


def test_truncated_at_every_cut_point():
    for data in (GOOD_BYTES, FileSpec(page_size=1024, min_txid=3, commit=9, pages=[2, 9]).build()):
        for cut in range(len(data)):
            found, fatal = collect(data[:cut])
            assert found == []
            assert fatal is not None, cut
            assert (fatal.code, fatal.offset) == (Code.TRUNCATED, cut), (cut, str(fatal))


def test_trailing_bytes():
    for extra in (b"\x00", b"junk" * 10, GOOD_BYTES):
        assert_defect(GOOD_BYTES + extra, Code.TRAILING_BYTES, len(GOOD_BYTES))


@pytest.mark.parametrize(
    ("frame", "position"),
    [
        (Frame(0), 0),  # page number 0 with the size flag
        (Frame(2, flags=0x3), 1),  # an unknown flag next to the known one
        (Frame(2, flags=0x8001), 1),
        (Frame(2, flags=0x2), 1),  # the size flag missing, another one set
        (Frame(0, flags=0x0), 0),  # page number 0 without flags is the terminator only at the end
    ],
)
def test_bad_page_header(frame, position):
    pages: list = [1, 2, 3]
    pages[position] = frame
    spec = FileSpec(min_txid=2, commit=3, pages=pages)
    layout = spec.layout()
    if frame.pgno == 0 and frame.flags == 0:  # the reader sees a terminator, then a page index that is not one
        assert codes(layout.data)[-1] in (Code.INDEX_MISMATCH, Code.TRUNCATED)
        return
    assert_defect(layout.data, Code.BAD_PAGE_HEADER, layout.frames[position].offset, pgno=frame.pgno)


# ---- legacy pages: an LZ4 frame per page (Litestream 0.5.0-0.5.15, superfly/ltx v0.5.1) -------


@pytest.mark.parametrize("page_size", [512, 4096, 65536])
def test_legacy_pages_round_trip_stream_bytes_spans_and_random_access(page_size):
    pages = [(1, page_bytes(1, page_size)), (2, random_page(page_size, 2)), (3, bytes(page_size))]
    spec = FileSpec(page_size=page_size, commit=3, pages=pages, legacy_pages=True)
    data = spec.build()
    block_sizes = [10 + len(lz4.block.compress(p, store_size=False)) for _, p in pages]
    assert [f.size for f in spec.layout().frames] != block_sizes
    assert decode_file(data).pages == pages
    for chunk in (1, 7, 4096):
        assert list(LTXReader(io.BytesIO(data), chunk_size=chunk).pages()) == pages
    stream = io.BytesIO(data)
    index, _ = read_page_index(stream, len(data))
    assert [(e.pgno, read_page(stream, e, page_size)) for e in index] == pages


def test_legacy_and_block_pages_in_one_file_and_tracked_snapshot():
    import lz4.frame

    with_size_and_block_sums = lz4.frame.compress(page_bytes(4, 512), block_checksum=True, store_size=True)
    spec = FileSpec(
        flags=0, commit=4, pages=[1, Frame(2, flags=0), 3, Frame(4, page_bytes(4, 512), 0, with_size_and_block_sums)]
    )
    decoded = decode_file(spec.build())
    assert decoded.pages == spec.page_list()
    assert decoded.trailer.post_apply_checksum == database_checksum(spec.page_list(), lock_pgno(512))


def _legacy(payload: bytes | None = None, data: bytes | None = None) -> Frame:
    return Frame(2, data=data, flags=0, payload=payload)


def _frame_of(page: bytes, **kw) -> bytes:
    """An LZ4 frame of `page`; without a stored size its descriptor checksum is byte 6."""
    import lz4.frame

    return lz4.frame.compress(page, **{"store_size": False, **kw})


@pytest.mark.parametrize(
    ("payload", "why"),
    [
        (b"\xff" * 20, "bad magic"),
        (_frame_of(page_bytes(2, 256)), "decodes to 256 bytes"),  # half a page
        (_frame_of(page_bytes(2, 1024)), "decodes to 1024 bytes"),  # two pages
        (_frame_of(page_bytes(2, 512), content_checksum=True)[:-4] + b"\0\0\0\0", "does not decode"),
        (_frame_of(page_bytes(2, 512), block_checksum=True)[:-9] + b"\1" + b"\0" * 8, "does not decode"),
        (_frame_of(page_bytes(2, 512))[:6] + b"\0" + _frame_of(page_bytes(2, 512))[7:], "does not decode"),
        (b"\x04\x22\x4d\x18\x40\x40\xc0" + (0x7FFF0000).to_bytes(4, "little") + bytes(8), "larger than any page"),
        (b"\x04\x22\x4d\x18\x00\x40\xc0" + bytes(8), "descriptor is invalid"),  # version 00
        (b"\x04\x22\x4d\x18\x41\x40\xc0" + bytes(12), "needs a dictionary"),
    ],
)
def test_legacy_page_that_is_not_exactly_one_page_is_decompress_failed(payload, why):
    spec = FileSpec(min_txid=2, commit=3, pages=[1, _legacy(payload), 3], legacy_pages=True)
    layout = spec.layout()
    err = assert_defect(layout.data, Code.PAGE_DECOMPRESS_FAILED, layout.frames[1].offset, pgno=2)
    assert why in err.message


def test_legacy_frame_cut_short_is_truncated_wherever_the_file_ends():
    data = FileSpec(min_txid=2, commit=3, pages=[1, 2, 3], legacy_pages=True).build()
    for cut in range(HEADER_SIZE, len(data)):
        found, fatal = collect(data[:cut])
        assert found == [] and fatal is not None
        assert (fatal.code, fatal.offset) == (Code.TRUNCATED, cut), (cut, str(fatal))


def test_legacy_page_content_checksum_is_checked():
    page = page_bytes(2, 512)
    payload = bytearray(_frame_of(page, content_checksum=True, store_size=False))
    payload[-1] ^= 0x01  # the frame's own xxhash of the page
    spec = FileSpec(min_txid=2, commit=3, pages=[1, _legacy(bytes(payload), page), 3], legacy_pages=True)
    err = assert_defect(spec.build(), Code.PAGE_DECOMPRESS_FAILED, spec.layout().frames[1].offset, pgno=2)
    assert "contentChecksum" in err.message


def test_legacy_random_access_refuses_an_entry_that_does_not_end_with_its_frame():
    spec = FileSpec(min_txid=2, commit=3, pages=[1, 2, 3], legacy_pages=True)
    data = spec.build()
    entry = spec.layout().frames[1]
    with pytest.raises(LTXError) as info:
        read_page(io.BytesIO(data), IndexEntry(entry.pgno, entry.offset, entry.size - 1), 512)
    assert info.value.code == Code.INDEX_MISMATCH
    with pytest.raises(LTXError) as info:
        read_page(io.BytesIO(data), IndexEntry(entry.pgno, entry.offset, entry.size + 3), 512)
    assert info.value.code == Code.INDEX_MISMATCH


@pytest.mark.parametrize(
    "payload",
    [
        b"\xff" * 20,  # garbage
        lz4.block.compress(bytes(256), store_size=False),  # decodes to half a page
        lz4.block.compress(bytes(1024), store_size=False),  # decodes to two pages
        lz4.block.compress(page_bytes(2, 512), store_size=False)[:-1],  # cut short
        lz4.block.compress(page_bytes(2, 512), store_size=False) + b"\x00",  # one byte too many
        b"",
    ],
)
def test_page_decompress_failed(payload):
    spec = FileSpec(min_txid=2, commit=3, pages=[1, Frame(2, payload=payload), 3])
    layout = spec.layout()
    assert_defect(layout.data, Code.PAGE_DECOMPRESS_FAILED, layout.frames[1].offset, pgno=2)


def test_size_prefix_beyond_the_file_is_truncation():
    spec = FileSpec(min_txid=2, commit=3, pages=[1, Frame(2, size=10_000)])
    assert_defect(spec.build(), Code.TRUNCATED, len(spec.build()))


@pytest.mark.parametrize("pages", [[3, 2], [2, 2], [1, 5, 4]])
def test_page_order(pages):
    layout = FileSpec(min_txid=2, commit=9, pages=pages).layout()
    assert_defect(layout.data, Code.PAGE_ORDER, layout.frames[-1].offset, pgno=pages[-1])


def test_page_beyond_commit():
    layout = FileSpec(min_txid=2, commit=3, pages=[2, 5]).layout()
    assert_defect(layout.data, Code.PAGE_BEYOND_COMMIT, layout.frames[1].offset, pgno=5)


@pytest.mark.parametrize("page_size", PAGE_SIZES)
def test_lock_page_present_in_increment(page_size):
    lock = lock_pgno(page_size)
    assert lock == 0x40000000 // page_size + 1
    layout = FileSpec(page_size=page_size, min_txid=2, commit=lock + 1, pages=[lock - 1, lock, lock + 1]).layout()
    assert_defect(layout.data, Code.LOCK_PAGE_PRESENT, layout.frames[1].offset, pgno=lock)
    with pytest.raises(EncodeError, match="lock page"):
        FileSpec(page_size=page_size, min_txid=2, commit=lock + 1, pages=[lock]).build(valid=True)
    # and without it, the same increment is fine
    FileSpec(page_size=page_size, min_txid=2, commit=lock + 1, pages=[lock - 1, lock + 1]).build(valid=True)


def test_snapshot_nonsequential_pages():
    layout = FileSpec(commit=5, pages=[1, 2, 4, 5]).layout()
    err = assert_defect(layout.data, Code.SNAPSHOT_NONSEQUENTIAL_PAGES, layout.frames[2].offset, pgno=4, prev_pgno=2)
    assert "2,4" in err.message
    layout = FileSpec(commit=3, pages=[2, 3]).layout()  # does not start at page 1
    assert_defect(layout.data, Code.SNAPSHOT_NONSEQUENTIAL_PAGES, layout.frames[0].offset, pgno=2, prev_pgno=0)


@pytest.mark.parametrize(("pages", "first_missing"), [([1, 2], 3), ([], 1), ([1, 2, 3], 4)])
def test_snapshot_missing_pages(pages, first_missing):
    layout = FileSpec(commit=5, pages=pages).layout()
    # reported where the page block ends (the terminator): where the missing frames should have been
    assert_defect(layout.data, Code.SNAPSHOT_MISSING_PAGES, layout.terminator_offset, pgno=first_missing)


def _shift_offset(entries: list[IndexEntry]) -> list[IndexEntry]:
    e = entries[1]
    entries[1] = IndexEntry(e.pgno, e.offset + 1, e.size)
    return entries


@pytest.mark.parametrize(
    "override",
    [
        {"index": _shift_offset},
        {"index": lambda es: es[:-1]},  # an entry missing
        {"index": lambda es: [*es, IndexEntry(9, 1000, 20)]},  # an entry too many
        {"index": lambda es: list(reversed(es))},
        {"index": lambda es: [IndexEntry(e.pgno + 1, e.offset, e.size) for e in es]},
        {"index": lambda es: [IndexEntry(e.pgno, e.offset, e.size + 1) for e in es]},
    ],
)
def test_index_mismatch_entries(override):
    layout = FileSpec(commit=4, pages=[1, 2, 3, 4], **override).layout()
    assert_defect(layout.data, Code.INDEX_MISMATCH, layout.index_offset)


@pytest.mark.parametrize("delta", [-1, 1, 1000])
def test_index_mismatch_size_field(delta):
    spec = GOOD
    true_size = GOOD_LAYOUT.index_size_offset - GOOD_LAYOUT.index_offset
    layout = FileSpec(**{**spec.__dict__, "index_size": true_size + delta}).layout()
    assert_defect(layout.data, Code.INDEX_MISMATCH, layout.index_size_offset)


def test_index_mismatch_oversized_varint():
    raw = b"\x01" + b"\xff" * 9 + b"\x7f" + b"\x00"  # pgno 1, then an offset wider than 64 bits
    layout = FileSpec(commit=1, pages=[1], index_raw=raw).layout()
    assert_defect(layout.data, Code.INDEX_MISMATCH, layout.index_offset + 1)


def test_file_checksum_mismatch():
    layout = FileSpec(commit=2, pages=[1, 2], file_checksum=CHECKSUM_FLAG | 12345).layout()
    assert_defect(layout.data, Code.FILE_CHECKSUM_MISMATCH, layout.file_checksum_offset)
    # a file checksum without the flag bit can never match what the reader computes
    good = GOOD_LAYOUT
    data = FileSpec(**{**GOOD.__dict__, "file_checksum": good.file_checksum & ~CHECKSUM_FLAG}).build()
    assert_defect(data, Code.FILE_CHECKSUM_MISMATCH, good.file_checksum_offset)
    # anything the structure does not pin down is still covered: timestamp, node id, page bytes
    for offset in (32, 39, 72, good.frames[0].offset + 12):
        assert_defect(flip_byte(GOOD_BYTES, offset, 0x01), Code.FILE_CHECKSUM_MISMATCH, good.file_checksum_offset)


def test_post_apply_checksum_mismatch():
    spec = FileSpec(flags=0, commit=3, pages=[1, 2, 3], post_apply_checksum=CHECKSUM_FLAG | 99)
    layout = spec.layout()
    assert_defect(layout.data, Code.POST_APPLY_CHECKSUM_MISMATCH, layout.trailer_offset)
    found, fatal = collect(layout.data)  # semantic: the file still decodes in collection mode
    assert fatal is None and [e.code for e in found] == [Code.POST_APPLY_CHECKSUM_MISMATCH]


@pytest.mark.parametrize(
    "spec",
    [
        FileSpec(commit=1, pages=[1], post_apply_checksum=CHECKSUM_FLAG | 1),  # set without tracking
        FileSpec(flags=0, min_txid=2, commit=1, pages=[1], post_apply_checksum=0),  # missing
        FileSpec(flags=0, min_txid=2, commit=1, pages=[1], post_apply_checksum=1),  # lacks bit 63
        FileSpec(flags=0, commit=1, pages=[1], post_apply_checksum=5),  # snapshot, lacks bit 63
    ],
)
def test_bad_trailer(spec):
    layout = spec.layout()
    assert_defect(layout.data, Code.BAD_TRAILER, layout.trailer_offset)


# ---- collection mode --------------------------------------------------------------------------


def test_collection_mode_names_every_semantic_defect_and_keeps_going():
    lock = lock_pgno(512)
    spec = FileSpec(commit=8, pages=[1, 3, 3, 2, 6, 9])
    layout = spec.layout()
    found, fatal = collect(layout.data)
    assert fatal is None
    off = [f.offset for f in layout.frames]
    assert [(e.code, e.offset) for e in found] == [
        (Code.SNAPSHOT_NONSEQUENTIAL_PAGES, off[1]),  # 1 -> 3
        (Code.PAGE_ORDER, off[2]),  # 3 again
        (Code.PAGE_ORDER, off[3]),  # 2 after 3
        (Code.SNAPSHOT_NONSEQUENTIAL_PAGES, off[4]),  # 3 -> 6
        (Code.PAGE_BEYOND_COMMIT, off[5]),  # 9 > 8
        (Code.SNAPSHOT_NONSEQUENTIAL_PAGES, off[5]),  # 6 -> 9
    ]
    reader = LTXReader(io.BytesIO(layout.data), on_defect=lambda e: None)
    assert [p for p, _ in reader.pages()] == [1, 3, 3, 2, 6, 9]
    assert reader.info is not None and len(reader.info.defects) == 6 and reader.defects == reader.info.defects
    # strict mode stops at the first
    assert strict_error(layout.data).offset == off[1]
    # a fatal defect later still raises, after the semantic ones were reported
    broken = FileSpec(**{**spec.__dict__, "file_checksum": CHECKSUM_FLAG}).build()
    found, fatal = collect(broken)
    assert len(found) == 6 and fatal is not None and fatal.code == Code.FILE_CHECKSUM_MISMATCH
    # a lock page inside an increment, and pages beyond commit, are reported page by page
    layout = FileSpec(min_txid=2, commit=lock - 1, pages=[2, lock, lock + 1]).layout()
    assert codes(layout.data) == [Code.PAGE_BEYOND_COMMIT, Code.LOCK_PAGE_PRESENT, Code.PAGE_BEYOND_COMMIT]


def test_snapshot_missing_pages_after_a_hole_counts_from_the_last_page():
    found, fatal = collect(FileSpec(commit=6, pages=[1, 3]).build())
    assert fatal is None
    assert [e.code for e in found] == [Code.SNAPSHOT_NONSEQUENTIAL_PAGES, Code.SNAPSHOT_MISSING_PAGES]
    assert found[1].context["pgno"] == 4


# ---- random access ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ROUND_TRIP_SPECS)
def test_random_access_agrees_with_streaming(name):
    data = ROUND_TRIP_SPECS[name].build()
    reader = LTXReader(io.BytesIO(data))
    pages = list(reader.pages())
    assert reader.info is not None
    stream = io.BytesIO(data)
    index, trailer = read_page_index(stream, len(data))
    assert index == reader.info.index
    assert trailer == reader.info.trailer
    page_size = reader.header.page_size
    assert [(e.pgno, read_page(stream, e, page_size)) for e in index] == pages
    # in any order
    assert [read_page(stream, e, page_size) for e in reversed(index)] == [p for _, p in reversed(pages)]


def test_random_access_errors():
    data, layout = GOOD_BYTES, GOOD_LAYOUT
    size_field = layout.index_size_offset
    with pytest.raises(LTXError) as err:
        read_page_index(io.BytesIO(data[:50]), 50)
    assert err.value.code == Code.TRUNCATED
    for extra in (10, 50):  # a size larger than the stream
        with pytest.raises(LTXError) as err:
            read_page_index(io.BytesIO(data), len(data) + extra)
        assert err.value.code == Code.TRUNCATED
    for bad_size in (0, 10**6, (size_field - layout.index_offset) - 1):
        broken = data[:size_field] + bad_size.to_bytes(8, "big") + data[size_field + 8 :]
        with pytest.raises(LTXError) as err:
            read_page_index(io.BytesIO(broken), len(broken))
        # reading from a start one byte late runs off the end of the varints: seen as a short index
        assert err.value.code in ((Code.INDEX_MISMATCH, Code.TRUNCATED) if bad_size else (Code.INDEX_MISMATCH,))
    entry = layout.frames[1]
    for wrong in (
        IndexEntry(entry.pgno, entry.offset + 1, entry.size),
        IndexEntry(3, entry.offset, entry.size),
        IndexEntry(entry.pgno, entry.offset, entry.size + 1),
    ):
        with pytest.raises(LTXError) as err:
            read_page(io.BytesIO(data), wrong, 512)
        assert err.value.code in (Code.INDEX_MISMATCH, Code.TRUNCATED)
    with pytest.raises(LTXError) as err:
        read_page(io.BytesIO(data), IndexEntry(1, len(data) - 5, 50), 512)
    assert err.value.code == Code.TRUNCATED
    garbage = corrupt_region(data, entry.offset + 10, entry.offset + entry.size, fill=0xFF)
    with pytest.raises(LTXError) as err:
        read_page(io.BytesIO(garbage), entry, 512)
    assert (err.value.code, err.value.offset) == (Code.PAGE_DECOMPRESS_FAILED, entry.offset)


# ---- the lock page ----------------------------------------------------------------------------


def _snapshot_around_lock(commit: int) -> tuple[Header, bytes]:
    """A page_size 65536 snapshot of `commit` pages (lock page 16385), written page by page."""
    header = Header(flags=FLAG_NO_CHECKSUM, page_size=65536, commit=commit, min_txid=1, max_txid=1, timestamp=0)
    zeros = bytes(65536)
    out = io.BytesIO()
    writer = LTXWriter(out, header)
    for pgno in range(1, commit + 1):
        if pgno != header.lock_pgno:
            writer.write_page(pgno, page_bytes(pgno, 65536) if pgno % 4096 == 0 else zeros)
    writer.close()
    return header, out.getvalue()


@pytest.mark.parametrize("commit", [16386, 16385])
def test_snapshot_spanning_the_lock_page(commit):
    lock = lock_pgno(65536)
    assert lock == 16385
    header, data = _snapshot_around_lock(commit)
    reader = LTXReader(io.BytesIO(data))
    pgnos = [pgno for pgno, _ in reader.pages()]
    assert reader.defects == []
    assert pgnos == [p for p in range(1, commit + 1) if p != lock]
    assert reader.info is not None and reader.info.header == header
    # writing the lock page into it is refused (checked before page order, so even as a first page)
    if commit >= lock:
        with pytest.raises(EncodeError, match="lock page"):
            LTXWriter(io.BytesIO(), header).write_page(lock, bytes(65536))


def _frames(pgnos) -> list[IndexEntry]:
    return [IndexEntry(p, HEADER_SIZE + 20 * i, 20) for i, p in enumerate(pgnos)]


@pytest.mark.parametrize("page_size", [32768, 65536])
def test_page_number_rules_around_the_lock_page(page_size):
    """The page-number rules alone (what the decoder and `verify --quick` share), on synthetic frames."""
    lock = lock_pgno(page_size)

    def defects(commit, pgnos, min_txid=1):
        header = FileSpec(page_size=page_size, min_txid=min_txid, commit=commit).header()
        return [(e.code, e.context.get("pgno")) for e in page_number_defects(header, _frames(pgnos))]

    below, above = list(range(1, lock)), [lock + 1, lock + 2]
    assert defects(lock + 2, below + above) == []
    assert defects(lock, below) == []  # commit on the lock page: it is never stored
    assert defects(lock - 1, below) == []
    assert defects(lock + 2, [*below, lock, *above]) == [(Code.LOCK_PAGE_PRESENT, lock)]
    assert defects(lock + 2, [*below, lock + 2]) == [(Code.SNAPSHOT_NONSEQUENTIAL_PAGES, lock + 2)]
    assert defects(lock + 2, [*below[:-1], lock, *above]) == [
        (Code.LOCK_PAGE_PRESENT, lock),
        (Code.SNAPSHOT_NONSEQUENTIAL_PAGES, lock),
    ]  # page lock-1 missing too
    assert defects(lock + 2, [*below[:-1], *above]) == [(Code.SNAPSHOT_NONSEQUENTIAL_PAGES, lock + 1)]
    assert defects(lock + 2, below) == [(Code.SNAPSHOT_MISSING_PAGES, lock + 1)]
    assert defects(lock + 1, [*below, lock + 1], min_txid=2) == []
    assert defects(lock, [lock - 1, lock], min_txid=2) == [(Code.LOCK_PAGE_PRESENT, lock)]


# ---- helpers themselves -----------------------------------------------------------------------


def test_filespec_helpers():
    data = GOOD_BYTES
    assert flip_byte(data, 5)[5] == data[5] ^ 0xFF
    assert flip_byte(data, -1, 0x80)[-1] == data[-1] ^ 0x80
    region = corrupt_region(data, 10, 20)
    assert all(region[i] != data[i] for i in range(10, 20)) and region[20:] == data[20:]
    assert corrupt_region(data, 0, 4, fill=0)[:4] == bytes(4)
    assert insert_bytes(data, 3, b"xy")[:5] == data[:3] + b"xy"
    assert pages_of([1, 2], 512) == [(1, page_bytes(1, 512)), (2, page_bytes(2, 512))]
    assert len({page_bytes(p, 512) for p in range(1, 50)}) == 49
    assert GOOD_LAYOUT.terminator_offset + len(TERMINATOR) == GOOD_LAYOUT.index_offset
    assert GOOD_LAYOUT.end == len(data)
    with pytest.raises(ValueError, match="use build"):
        FileSpec(commit=1, pages=[1], trailing=b"x").build(valid=True)
