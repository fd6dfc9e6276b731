"""The fast forms in ltxkit.format.schema agree byte for byte with the construct declarations, and
the checksums agree with an independent, bitwise CRC-64/GO-ISO written here from the definition."""

from __future__ import annotations

import struct

import construct as cs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ltxkit.format import layout
from ltxkit.format.checksum import CHECKSUM_FLAG, crc64, database_checksum, page_checksum
from ltxkit.format.declaration import (
    HEADER,
    INDEX_SIZE_FIELD,
    LAYOUT_PATH,
    PAGE_HEADER,
    PAGE_INDEX,
    SIZE_PREFIX,
    TRAILER,
    derive_struct,
    render_layout,
)
from ltxkit.format.decoder import _parse_index
from ltxkit.format.schema import (
    FRAME_PREFIX_STRUCT,
    HEADER_FIELDS,
    HEADER_STRUCT,
    INDEX_SIZE_STRUCT,
    PAGE_HEADER_STRUCT,
    SIZE_PREFIX_STRUCT,
    TRAILER_STRUCT,
    Header,
    IndexEntry,
    Trailer,
    append_uvarint,
    encode_page_index,
    lock_pgno,
    read_uvarint,
)

U16 = st.integers(0, 2**16 - 1)
U32 = st.integers(0, 2**32 - 1)
U64 = st.integers(0, 2**64 - 1)
I64 = st.integers(-(2**63), 2**63 - 1)

HEADER_VALUES = st.fixed_dictionaries(
    {
        "magic": st.binary(min_size=4, max_size=4),
        "flags": U32,
        "page_size": U32,
        "commit": U32,
        "min_txid": U64,
        "max_txid": U64,
        "timestamp": I64,
        "pre_apply_checksum": U64,
        "wal_offset": I64,
        "wal_size": I64,
        "wal_salt1": U32,
        "wal_salt2": U32,
        "node_id": U64,
        "reserved": st.binary(min_size=20, max_size=20),
    }
)

SCHEMA = settings(max_examples=150, deadline=None)


def _plain(container: cs.Container) -> dict[str, object]:
    return {k: v for k, v in container.items() if not k.startswith("_")}


# ---- fixed-size structs -----------------------------------------------------------------------


def test_generated_layout_is_what_the_declarations_give():
    # layout.py is derived ahead of time so that no command imports construct at start-up
    assert LAYOUT_PATH.read_text() == render_layout(), "layout.py is stale: run `make layout`"
    assert HEADER_STRUCT.format == derive_struct(HEADER).format == layout.HEADER_FORMAT
    assert TRAILER_STRUCT.format == derive_struct(TRAILER).format
    assert INDEX_SIZE_STRUCT.format == derive_struct(INDEX_SIZE_FIELD).format
    prefix = derive_struct(PAGE_HEADER).format + derive_struct(SIZE_PREFIX).format[1:]
    assert FRAME_PREFIX_STRUCT.format == prefix


def test_no_command_imports_construct_at_start_up():
    import subprocess
    import sys

    code = "import sys, ltxkit.cli, ltxkit.verify.engine, ltxkit.restore; print('construct' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "False\n"


def test_layout_sizes_and_offsets_match_the_format_table():
    assert HEADER.sizeof() == HEADER_STRUCT.size == 100
    assert PAGE_HEADER.sizeof() == PAGE_HEADER_STRUCT.size == 6
    assert SIZE_PREFIX.sizeof() == SIZE_PREFIX_STRUCT.size == 4
    assert FRAME_PREFIX_STRUCT.size == 10
    assert TRAILER.sizeof() == TRAILER_STRUCT.size == 16
    assert INDEX_SIZE_FIELD.sizeof() == INDEX_SIZE_STRUCT.size == 8
    assert tuple(f.name for f in HEADER.subcons) == HEADER_FIELDS
    # the offsets of FORMAT.md's header table, derived from the declaration
    offsets, off = {}, 0
    for f in HEADER.subcons:
        offsets[f.name] = off
        off += f.sizeof()
    assert offsets == {
        "magic": 0,
        "flags": 4,
        "page_size": 8,
        "commit": 12,
        "min_txid": 16,
        "max_txid": 24,
        "timestamp": 32,
        "pre_apply_checksum": 40,
        "wal_offset": 48,
        "wal_size": 56,
        "wal_salt1": 64,
        "wal_salt2": 68,
        "node_id": 72,
        "reserved": 80,
    }


@SCHEMA
@given(HEADER_VALUES)
def test_header_struct_builds_like_construct(values):
    built = HEADER.build(values)
    assert HEADER_STRUCT.pack(*(values[n] for n in HEADER_FIELDS)) == built
    assert Header(**values).pack() == built


@SCHEMA
@given(st.binary(min_size=100, max_size=100))
def test_header_struct_parses_like_construct(raw):
    expected = _plain(HEADER.parse(raw))
    assert dict(zip(HEADER_FIELDS, HEADER_STRUCT.unpack(raw), strict=True)) == expected
    header = Header.unpack(raw)
    assert {n: getattr(header, n) for n in HEADER_FIELDS} == expected
    assert header.pack() == raw


@SCHEMA
@given(pgno=U32, flags=U16, size=U32)
def test_frame_prefix_struct_builds_like_construct(pgno, flags, size):
    built = PAGE_HEADER.build({"pgno": pgno, "flags": flags}) + SIZE_PREFIX.build({"size": size})
    assert FRAME_PREFIX_STRUCT.pack(pgno, flags, size) == built
    assert PAGE_HEADER_STRUCT.pack(pgno, flags) + SIZE_PREFIX_STRUCT.pack(size) == built


@SCHEMA
@given(st.binary(min_size=10, max_size=10))
def test_frame_prefix_struct_parses_like_construct(raw):
    head = PAGE_HEADER.parse(raw[:6])
    size = SIZE_PREFIX.parse(raw[6:])
    assert FRAME_PREFIX_STRUCT.unpack(raw) == (head.pgno, head.flags, size.size)
    assert PAGE_HEADER_STRUCT.unpack(raw[:6]) == (head.pgno, head.flags)


@SCHEMA
@given(post=U64, file=U64)
def test_trailer_struct_builds_like_construct(post, file):
    built = TRAILER.build({"post_apply_checksum": post, "file_checksum": file})
    assert TRAILER_STRUCT.pack(post, file) == built
    assert Trailer(post, file).pack() == built


@SCHEMA
@given(st.binary(min_size=16, max_size=16))
def test_trailer_struct_parses_like_construct(raw):
    parsed = TRAILER.parse(raw)
    assert TRAILER_STRUCT.unpack(raw) == (parsed.post_apply_checksum, parsed.file_checksum)
    assert Trailer.unpack(raw) == Trailer(parsed.post_apply_checksum, parsed.file_checksum)


@SCHEMA
@given(U64, st.binary(min_size=8, max_size=8))
def test_index_size_struct_agrees_with_construct(value, raw):
    assert INDEX_SIZE_STRUCT.pack(value) == INDEX_SIZE_FIELD.build({"index_size": value})
    assert INDEX_SIZE_STRUCT.unpack(raw) == (INDEX_SIZE_FIELD.parse(raw).index_size,)


def test_derive_struct_refuses_what_has_no_fixed_form():
    with pytest.raises(TypeError):
        derive_struct(PAGE_INDEX)
    with pytest.raises(TypeError):
        derive_struct(cs.Struct("x" / cs.Int32ul))
    assert derive_struct(cs.Struct("a" / cs.Int16ub, "b" / cs.Bytes(3))).format == ">H3s"


# ---- varints and the page index ---------------------------------------------------------------


def go_uvarint(buf: bytes, pos: int) -> tuple[int, int] | str:
    """Go's binary.Uvarint, transcribed: (value, new_pos), 'short' or 'overflow'."""
    x = 0
    s = 0
    for i, b in enumerate(buf[pos:]):
        if i == 10:
            return "overflow"
        if b < 0x80:
            if i == 9 and b > 1:
                return "overflow"
            return x | b << s, pos + i + 1
        x |= (b & 0x7F) << s
        s += 7
    return "short"


@SCHEMA
@given(U64)
def test_append_uvarint_builds_like_construct(value):
    out = bytearray(b"\xaa")
    append_uvarint(out, value)
    assert bytes(out[1:]) == cs.VarInt.build(value)
    assert read_uvarint(out, 1) == (value, len(out))
    assert go_uvarint(bytes(out), 1) == (value, len(out))


@SCHEMA
@given(prefix=st.binary(max_size=3), raw=st.binary(max_size=12))
def test_read_uvarint_parses_like_construct_and_go(prefix, raw):
    buf = prefix + raw
    expected = go_uvarint(buf, len(prefix))
    try:
        got: tuple[int, int] | str = read_uvarint(buf, len(prefix))
    except IndexError:
        got = "short"
    except OverflowError:
        got = "overflow"
    assert got == expected
    if isinstance(got, tuple):
        assert cs.VarInt.parse(raw) == got[0]
        # construct's length is the same too
        assert len(cs.VarInt.build(got[0])) <= got[1] - len(prefix)


ENTRIES = st.lists(
    st.builds(IndexEntry, pgno=st.integers(1, 2**32 - 1), offset=st.integers(0, 2**40), size=st.integers(0, 2**20)),
    max_size=20,
)


def _construct_index(entries: list[IndexEntry]) -> bytes:
    # Containers, not dicts: the RepeatUntil predicate reads `obj.pgno` while building too
    items = [cs.Container(pgno=e.pgno, offset=e.offset, size=e.size) for e in entries]
    items.append(cs.Container(pgno=0, offset=None, size=None))
    body = PAGE_INDEX.entries.build(items)
    return PAGE_INDEX.build({"entries": items, "index_size": len(body)})


@SCHEMA
@given(ENTRIES)
def test_encode_page_index_builds_like_construct(entries):
    encoded = encode_page_index(entries)
    assert encoded == _construct_index(entries)
    parsed = PAGE_INDEX.parse(encoded)
    assert [IndexEntry(e.pgno, e.offset, e.size) for e in parsed.entries[:-1]] == entries
    assert parsed.entries[-1].pgno == 0
    assert parsed.index_size == len(encoded) - 8
    # and the decoder's hot-path parser reads back the same entries
    assert _parse_index(encoded + b"trailer!", 0) == (entries, len(encoded))


BOUNDARY = st.sampled_from([0, 1, 127, 128, 16383, 16384, 2**21 - 1, 2**21, 2**28 - 1, 2**28, 2**35, 2**63])
TUPLES = st.lists(
    st.tuples(
        st.one_of(st.integers(1, 2**32 - 1), BOUNDARY.filter(bool)),
        st.one_of(U64, BOUNDARY),
        st.one_of(st.integers(0, 2**32 - 1), BOUNDARY),
    ),
    max_size=20,
)


@SCHEMA
@given(TUPLES)
def test_encode_page_index_of_plain_tuples_agrees(entries):
    """The table-driven encoder writes exactly what the construct declaration builds, from tuples too."""
    fast = encode_page_index(entries)
    assert fast == encode_page_index([IndexEntry(*e) for e in entries])
    assert fast == _construct_index([IndexEntry(*e) for e in entries])


def test_empty_page_index_is_a_zero_and_its_length():
    assert encode_page_index([]) == b"\x00" + struct.pack(">Q", 1)


# ---- CRC-64/GO-ISO and the LTX checksums, from the definition ---------------------------------

POLY_REFLECTED = 0xD800000000000000  # x^64 + x^4 + x^3 + x + 1 (0x1B), bit-reversed
ALL_ONES = (1 << 64) - 1


def ref_crc64(data: bytes, previous: int = 0) -> int:
    """Bitwise CRC-64/GO-ISO; `previous` continues a finished CRC as Go's crc64.Update does."""
    crc = previous ^ ALL_ONES
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ POLY_REFLECTED if crc & 1 else crc >> 1
    return crc ^ ALL_ONES


def ref_page_checksum(pgno: int, data: bytes) -> int:
    return (1 << 63) | ref_crc64(pgno.to_bytes(4, "big") + data)


def test_crc64_check_value():
    assert ref_crc64(b"123456789") == 0xB90956C775A41001
    assert crc64(b"123456789") == 0xB90956C775A41001
    assert crc64(b"") == ref_crc64(b"") == 0


@settings(max_examples=60, deadline=None)
@given(a=st.binary(max_size=300), b=st.binary(max_size=300))
def test_crc64_matches_bitwise_reference_and_continues(a, b):
    assert crc64(a) == ref_crc64(a)
    assert crc64(b, crc64(a)) == ref_crc64(b, ref_crc64(a)) == ref_crc64(a + b) == crc64(a + b)


def test_page_checksum_known_answers():
    zeros = bytes(512)
    ones = b"\xff" * 4096
    assert page_checksum(1, zeros) == ref_page_checksum(1, zeros)
    assert page_checksum(2**32 - 1, ones) == ref_page_checksum(2**32 - 1, ones)
    # a literal pinned from the reference above, so a change of either shows up
    assert ref_page_checksum(1, zeros) == PAGE1_ZEROS_512
    assert page_checksum(1, zeros) & CHECKSUM_FLAG


@settings(max_examples=40, deadline=None)
@given(pgno=U32, data=st.binary(max_size=600))
def test_page_checksum_matches_reference(pgno, data):
    assert page_checksum(pgno, data) == ref_page_checksum(pgno, data)


def test_database_checksum_known_answers():
    assert database_checksum([], 5) == 1 << 63
    pages = [(p, bytes([p]) * 512) for p in (1, 2, 3, 4)]
    expected = 1 << 63
    for p, d in pages:
        if p != 3:
            expected = (expected ^ ref_page_checksum(p, d)) | (1 << 63)
    # page 3 plays the lock page: it never counts
    assert database_checksum(pages, 3) == expected
    assert database_checksum([pg for pg in pages if pg[0] != 3], 3) == expected
    # order does not matter (XOR), and the flag bit is always set
    assert database_checksum(reversed(pages), 3) == expected
    assert expected & (1 << 63)


@pytest.mark.parametrize("page_size", [512 << i for i in range(8)])
def test_lock_page_number(page_size):
    assert lock_pgno(page_size) == 0x40000000 // page_size + 1
    # the lock page is the page holding byte offset 2^30
    first_byte = (lock_pgno(page_size) - 1) * page_size
    assert first_byte <= 2**30 < first_byte + page_size


PAGE1_ZEROS_512 = 0xEFB1F44FECD99000
