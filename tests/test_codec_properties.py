"""Properties of the codec over generated files.

1. Round trip: any page set the encoder accepts (snapshots and increments, page sizes 512..65536,
   checksum tracking on or off) decodes to exactly what was written, streaming in any chunk size
   and through random access.
2. Damage is never silent and never crashes: after any single-byte change, truncation, insertion
   or deletion, decoding either raises `LTXError` with a `Code`, or yields exactly the original
   header, pages, index and trailer. (The second happens: some edits of an LZ4 payload decode to
   the same page, and the format checksums decompressed content, so such a file *is* the same
   file.) No other exception type ever escapes, in strict mode, in collection mode, or through
   random access.
"""

from __future__ import annotations

import io
import os
import random
from collections.abc import Callable, Iterable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ltxkit.format import (
    CHECKSUM_FLAG,
    FLAG_NO_CHECKSUM,
    Code,
    Header,
    LTXError,
    LTXReader,
    decode_file,
    encode_file,
    lock_pgno,
    read_page_index,
)
from ltxkit.format.decoder import DecodedFile, page_number_rules, page_numbers_sound, read_ends, read_page
from ltxkit.format.lz4frame import MAGIC
from ltxkit.format.schema import HEADER_SIZE, PAGE_FLAG_LZ4_FRAME, PAGE_FLAG_SIZE
from ltxkit.format.spans import find_cuts, join_spans
from tests.conftest import examples
from tests.filespec import FileSpec, Frame, flip_byte, insert_bytes, page_bytes, random_page

ALL_PAGE_SIZES = [512 << i for i in range(8)]
U63 = st.integers(0, 2**63 - 1)


@st.composite
def page_content(draw, page_size: int) -> bytes:
    kind = draw(st.sampled_from(["zeros", "pattern", "pattern", "random", "text"]))
    if kind == "zeros":
        return bytes(page_size)
    if kind == "random":  # incompressible: the LZ4 block is larger than the page
        return random_page(page_size, draw(st.integers(0, 2**32)))
    if kind == "text":
        return page_bytes(draw(st.integers(1, 2**32 - 1)), page_size, draw(st.integers(0, 9)))
    fill = draw(st.integers(0, 255))
    chunk = draw(st.binary(min_size=1, max_size=48))
    at = draw(st.integers(0, page_size - 1))
    page = bytearray([fill]) * page_size
    page[at : at + len(chunk)] = chunk[: page_size - at]
    return bytes(page)


@st.composite
def ltx_files(
    draw, page_sizes=ALL_PAGE_SIZES, max_pages: int = 10
) -> tuple[Header, list[tuple[int, bytes]], int | None]:
    """(header, pages, post_apply_checksum for tracked increments) the encoder must accept."""
    page_size = draw(st.sampled_from(page_sizes))
    if page_size <= 4096 and draw(st.integers(0, 2)) == 0:
        max_pages *= 4  # some files well past a dozen pages (small pages only: the suite stays fast)
    lock = lock_pgno(page_size)
    tracked = draw(st.booleans())
    snapshot = draw(st.booleans())
    post = None
    if snapshot:
        min_txid = 1
        commit = draw(st.integers(0 if tracked else 1, max_pages))
        pgnos = list(range(1, commit + 1))
        pre = 0
    else:
        min_txid = draw(st.one_of(st.integers(2, 1000), st.integers(2, 2**64 - 1)))
        commit = draw(st.one_of(st.integers(1, 50), st.integers(lock - 2, lock + 2), st.integers(1, 2**32 - 1)))
        pgnos = sorted(draw(st.sets(st.integers(1, commit).filter(lambda p: p != lock), max_size=max_pages)))
        pre = CHECKSUM_FLAG | draw(U63) if tracked else 0
        post = CHECKSUM_FLAG | draw(U63) if tracked else None
    with_wal = draw(st.booleans())
    header = Header(
        flags=0 if tracked else FLAG_NO_CHECKSUM,
        page_size=page_size,
        commit=commit,
        min_txid=min_txid,
        max_txid=draw(st.integers(min_txid, 2**64 - 1)),
        timestamp=draw(st.integers(-(2**63), 2**63 - 1)),
        pre_apply_checksum=pre,
        wal_offset=draw(st.integers(1, 2**63 - 1)) if with_wal else 0,
        wal_size=draw(st.integers(0, 2**63 - 1)) if with_wal else 0,
        wal_salt1=draw(st.integers(0, 2**32 - 1)) if with_wal else 0,
        wal_salt2=draw(st.integers(0, 2**32 - 1)) if with_wal else 0,
        node_id=draw(st.integers(0, 2**64 - 1)),
    )
    assert header.problems() == []
    pages = [(p, draw(page_content(page_size))) for p in pgnos]
    return header, pages, post


Outcome = tuple[list[tuple[int, bytes]], list[tuple[str, int | None]], tuple[str, int | None] | None]


def _outcome(make_reader) -> Outcome:
    """(pages yielded, defects collected, the fatal error) of one collection-mode decode."""
    pages: list[tuple[int, bytes]] = []
    found: list[LTXError] = []
    try:
        pages.extend(make_reader(found.append).pages())
    except LTXError as exc:
        return pages, [(str(e.code), e.offset) for e in found], (str(exc.code), exc.offset)
    return pages, [(str(e.code), e.offset) for e in found], None


def _decode_everything(data: bytes, page_size: int) -> DecodedFile:
    """Decode strictly, check collection mode and random access agree with it, return the result.

    Raises LTXError (and only that) when the data is defective.
    """
    found: list[LTXError] = []
    fatal: LTXError | None = None
    streamed: list[tuple[int, bytes]] = []
    try:
        streamed.extend(LTXReader(io.BytesIO(data), on_defect=found.append).pages())
    except LTXError as exc:
        assert isinstance(exc.code, Code)
        fatal = exc
    first = found[0] if found else fatal
    # a whole file in memory (restore's small-file path) decodes exactly as the stream does
    assert _outcome(lambda keep: LTXReader.from_bytes(data, on_defect=keep)) == (
        streamed,
        [(str(e.code), e.offset) for e in found],
        None if fatal is None else (str(fatal.code), fatal.offset),
    )
    # random access must fail the same way (only with LTXError) or read what streaming reads
    stream = io.BytesIO(data)
    try:
        index, _ = read_page_index(stream, len(data))
        random_pages = [(e.pgno, read_page(stream, e, page_size)) for e in index]
    except LTXError as exc:
        assert isinstance(exc.code, Code)
        random_pages = None
    split = _decode_in_spans(data)
    try:
        decoded = decode_file(data)
    except LTXError as exc:
        assert first is not None, "strict mode raised although collection mode found nothing"
        assert (exc.code, exc.offset) == (first.code, first.offset)
        assert split is None, "the span decoder accepted a file the streaming decoder refuses"
        raise
    assert first is None, f"collection mode reported {first} but strict mode did not"
    assert random_pages is None or random_pages == decoded.pages
    assert split == decoded.pages, "the span decoder disagrees with the streaming decoder"
    return decoded


def _decode_in_spans(data: bytes) -> list[tuple[int, bytes]] | None:
    """Decode as a parallel restore does: cut where `find_cuts` says (for 2 and 3 parts), decode
    each span on its own, prove the file with `join_spans`. The pages, or None when it refuses the
    file (with LTXError only, and the same way for every number of parts)."""
    results = []
    for parts in (1, 2, 3):
        stream = io.BytesIO(data)
        try:
            ends = read_ends(stream, len(data))
            results.append(_join(stream, ends, find_cuts(ends, parts)))
        except LTXError as exc:
            assert isinstance(exc.code, Code)
            results.append(None)
    assert results[0] == results[1] == results[2]
    return results[0]


def _join(stream: io.BytesIO, ends, cuts: list[int]) -> list[tuple[int, bytes]]:  # type: ignore[no-untyped-def]
    bounds = list(zip([HEADER_SIZE, *cuts], [*cuts, ends.frames_end], strict=True))
    pages: list[tuple[int, bytes]] = []
    spans = []
    for start, end in bounds:
        reader = LTXReader.span(stream, ends.header, start, end)
        pages.extend(reader.pages())
        assert reader.span_result is not None
        spans.append(reader.span_result)
    assert join_spans(ends, spans) == [p for p, _ in pages]
    return pages


@settings(max_examples=examples(120), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ltx_files(page_sizes=[512, 1024, 4096], max_pages=24), st.data())
def test_spans_cut_anywhere_decode_the_same_or_refuse(file, data):
    """Cuts at any frame boundaries give the streaming decoder's pages; a cut anywhere else is refused."""
    header, pages, post = file
    good = encode_file(header, pages, post)
    frames = decode_file(good).index
    ends = read_ends(io.BytesIO(good), len(good))
    boundaries = [e.offset for e in frames[1:]]
    if boundaries:
        cuts = sorted(data.draw(st.sets(st.sampled_from(boundaries), max_size=3), label="cuts"))
        assert _join(io.BytesIO(good), ends, cuts) == pages
    inside = [o for e in frames for o in range(e.offset + 1, e.offset + e.size)]
    if inside:
        wrong = data.draw(st.sampled_from(inside), label="wrong cut")
        try:
            _join(io.BytesIO(good), ends, [wrong])
        except LTXError as exc:
            assert isinstance(exc.code, Code)
        else:
            raise AssertionError(f"a cut inside a frame at {wrong} was accepted")
    if len(frames) >= 16:  # enough entries after the middle for find_cuts to prove its alignment
        assert find_cuts(ends, 2), "find_cuts found no cut in a healthy file"


# ---- round trip -------------------------------------------------------------------------------


@settings(
    max_examples=examples(80), deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
@given(ltx_files(), st.sampled_from([1, 7, 1000, 4 << 20]))
def test_round_trip(file, chunk_size):
    header, pages, post = file
    data = encode_file(header, pages, post)
    decoded = _decode_everything(data, header.page_size)
    assert decoded.header == header
    assert decoded.pages == pages
    if not header.no_checksum and not header.is_snapshot:
        assert decoded.trailer.post_apply_checksum == post
    reader = LTXReader(io.BytesIO(data), chunk_size=chunk_size)
    assert list(reader.pages()) == pages
    assert reader.info is not None and reader.info.trailer == decoded.trailer and reader.info.size == len(data)
    # the raw test layout agrees with the encoder byte for byte
    assert _spec_of(header, pages, post).build() == data


_SPEC_FIELDS = (
    "page_size",
    "min_txid",
    "max_txid",
    "commit",
    "flags",
    "timestamp",
    "pre_apply_checksum",
    "wal_offset",
    "wal_size",
    "wal_salt1",
    "wal_salt2",
    "node_id",
)


def _spec_of(header: Header, pages: list, post: int | None) -> FileSpec:
    return FileSpec(**{k: getattr(header, k) for k in _SPEC_FIELDS}, pages=pages, post_apply_checksum=post)


def _legacy_build(file, data) -> bytes:  # type: ignore[no-untyped-def]
    """The file as Litestream <= 0.5.15 wrote it (LZ4-frame pages), or with both page forms mixed."""
    header, pages, post = file
    mixed = data.draw(st.booleans(), label="mixed")
    frame_pages = [
        Frame(pgno, page, PAGE_FLAG_LZ4_FRAME if not mixed or data.draw(st.booleans()) else PAGE_FLAG_SIZE)
        for pgno, page in pages
    ]
    return _spec_of(header, frame_pages, post).build()


@settings(
    max_examples=examples(60), deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
@given(ltx_files(max_pages=8), st.data())
def test_legacy_round_trip(file, data):
    header, pages, _post = file
    good = _legacy_build(file, data)
    decoded = _decode_everything(good, header.page_size)
    assert decoded.header == header
    assert decoded.pages == pages
    chunk = data.draw(st.sampled_from([1, 7, 1000]), label="chunk")
    assert list(LTXReader(io.BytesIO(good), chunk_size=chunk).pages()) == pages


@settings(max_examples=examples(60), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ltx_files(max_pages=8), st.sampled_from([1, 7, 1000]))
def test_the_encoder_writes_the_legacy_form_the_decoder_reads(file, chunk):
    """`lz4_frames`: what ltxkit adds to a replica Litestream 0.5.15 wrote (`replica.page_form`).
    Every page frame has flags 0 and no size prefix, and it decodes to the same file."""
    header, pages, post = file
    data = encode_file(header, pages, post, lz4_frames=True)
    decoded = _decode_everything(data, header.page_size)
    assert decoded.header == header and decoded.pages == pages
    block = _decode_everything(encode_file(header, pages, post), header.page_size)
    assert decoded.trailer.post_apply_checksum == block.trailer.post_apply_checksum
    assert list(LTXReader(io.BytesIO(data), chunk_size=chunk).pages()) == pages
    pos = HEADER_SIZE
    for entry in decoded.index:  # each frame: the 6-byte page header with flags 0, then an LZ4 frame
        assert entry.offset == pos and data[pos + 4 : pos + 6] == b"\x00\x00" and data[pos + 6 : pos + 10] == MAGIC
        pos += entry.size


# ---- damage -----------------------------------------------------------------------------------

SMALL = {"page_sizes": [512, 1024, 4096], "max_pages": 8}
DAMAGE = settings(max_examples=examples(150), deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _same_or_error(original: DecodedFile, mutant: bytes) -> bool:
    """True when `mutant` decodes to exactly `original`, False when it raises LTXError."""
    try:
        decoded = _decode_everything(mutant, original.header.page_size)
    except LTXError:
        return False
    assert decoded.header == original.header
    assert decoded.pages == original.pages
    assert decoded.index == original.index
    assert decoded.trailer == original.trailer
    return True


@DAMAGE
@given(ltx_files(**SMALL), st.data())
def test_any_single_byte_change_is_caught_or_harmless(file, data):
    header, pages, post = file
    good = encode_file(header, pages, post)
    original = decode_file(good)
    offset = data.draw(st.integers(0, len(good) - 1), label="offset")
    mask = data.draw(st.integers(1, 255), label="xor")
    _same_or_error(original, flip_byte(good, offset, mask))


@DAMAGE
@given(ltx_files(**SMALL), st.data())
def test_any_truncation_is_reported_as_truncated(file, data):
    header, pages, post = file
    good = encode_file(header, pages, post)
    cut = data.draw(st.integers(0, len(good) - 1), label="cut")
    found: list[LTXError] = []
    try:
        LTXReader(io.BytesIO(good[:cut]), on_defect=found.append).read_all()
    except LTXError as exc:
        assert (exc.code, exc.offset) == (Code.TRUNCATED, cut)
    else:
        raise AssertionError(f"a file cut to {cut} of {len(good)} bytes decoded")
    original = decode_file(good)
    assert not _same_or_error(original, good[:cut])


@DAMAGE
@given(ltx_files(**SMALL), st.data())
def test_any_insertion_is_caught_or_harmless(file, data):
    header, pages, post = file
    good = encode_file(header, pages, post)
    original = decode_file(good)
    offset = data.draw(st.integers(0, len(good)), label="offset")
    extra = data.draw(st.binary(min_size=1, max_size=16), label="extra")
    _same_or_error(original, insert_bytes(good, offset, extra))


@DAMAGE
@given(ltx_files(**SMALL), st.data())
def test_any_deletion_is_caught_or_harmless(file, data):
    header, pages, post = file
    good = encode_file(header, pages, post)
    original = decode_file(good)
    start = data.draw(st.integers(0, len(good) - 1), label="start")
    length = data.draw(st.integers(1, 16), label="length")
    _same_or_error(original, good[:start] + good[start + length :])


@DAMAGE
@given(ltx_files(**SMALL), st.data())
def test_legacy_pages_any_damage_is_caught_or_harmless(file, data):
    """Byte changes, truncations, insertions and deletions of files with LZ4-frame pages."""
    good = _legacy_build(file, data)
    original = decode_file(good)
    kind = data.draw(st.sampled_from(["flip", "cut", "insert", "delete"]), label="kind")
    offset = data.draw(st.integers(0, len(good) - 1), label="offset")
    if kind == "flip":
        _same_or_error(original, flip_byte(good, offset, data.draw(st.integers(1, 255), label="xor")))
    elif kind == "cut":
        with pytest.raises(LTXError) as info:
            LTXReader(io.BytesIO(good[:offset])).read_all()
        assert (info.value.code, info.value.offset) == (Code.TRUNCATED, offset)
    elif kind == "insert":
        _same_or_error(original, insert_bytes(good, offset, data.draw(st.binary(min_size=1, max_size=16))))
    else:
        _same_or_error(original, good[:offset] + good[offset + data.draw(st.integers(1, 16)) :])


# ---- exhaustive damage on fixed files: where can an edit go unnoticed? ---------------------------

EXHAUSTIVE_FILES = {
    "snapshot": FileSpec(commit=3, pages=[1, 2, (3, bytes(512))], timestamp=1_700_000_000_000),
    "tracked-snapshot": FileSpec(flags=0, commit=2, pages=[1, (2, random_page(512, 7))]),
    "tracked-increment": FileSpec(
        flags=0,
        min_txid=4,
        max_txid=6,
        commit=9,
        pages=[2, 9],
        wal_offset=32,
        wal_size=8272,
        wal_salt1=3,
        wal_salt2=4,
        post_apply_checksum=CHECKSUM_FLAG | 77,
    ),
}


def _payload_ranges(spec: FileSpec) -> list[range]:
    return [range(f.offset + 10, f.offset + f.size) for f in spec.layout().frames]


def _every_change(offsets: Callable[[int], Iterable[int]]) -> dict[str, list[int]]:
    """Byte flips (four masks), cuts and insertions at `offsets(len(file))` of each file in
    EXHAUSTIVE_FILES: each is refused, or (a flip inside an LZ4 payload only) decodes the same.
    Returns the offsets of the harmless flips per file."""
    silent: dict[str, list[int]] = {}
    for name, spec in EXHAUSTIVE_FILES.items():
        good = spec.build(valid=True)
        original = decode_file(good)
        payload = _payload_ranges(spec)
        for offset in offsets(len(good)):
            for mask in (0x01, 0x10, 0x80, 0xFF):
                if _same_or_error(original, flip_byte(good, offset, mask)):
                    # only an LZ4 payload can be edited without changing what the file holds
                    assert any(offset in r for r in payload), (name, offset, mask)
                    silent.setdefault(name, []).append(offset)
        for cut in offsets(len(good)):
            assert not _same_or_error(original, good[:cut])
        for offset in offsets(len(good) + 1):
            for extra in (b"\x00", b"\x00" * 6):
                assert not _same_or_error(original, insert_bytes(good, offset, extra)), (name, offset, extra)
    return silent


@pytest.mark.slow
def test_every_byte_change_every_cut_every_insertion_exhaustively():
    silent = _every_change(range)
    # the compressible snapshot has match offsets inside runs of zeros: some edits are harmless
    assert silent, "expected at least one harmless LZ4 payload edit"


def test_byte_changes_cuts_and_insertions_sampled():
    """The fast run's share of the exhaustive test: the header, the last 64 bytes (index and
    trailer) and a different tenth of the rest each run (CI: always the same tenth)."""
    rng = random.Random(0 if os.environ.get("CI") else None)

    def sample(n: int) -> list[int]:
        middle = range(HEADER_SIZE, max(HEADER_SIZE, n - 64))
        picked = rng.sample(middle, len(middle) // 10) if len(middle) else []
        return sorted({*range(min(n, HEADER_SIZE)), *picked, *range(max(0, n - 64), n)})

    _every_change(sample)


def test_random_mutation_storm_on_a_bigger_file():
    """Many random multi-byte mutations on a 4 KiB-page file: still only LTXError or identity."""
    rng = random.Random(20240229)
    spec = FileSpec(page_size=4096, commit=6, pages=[1, 2, (3, random_page(4096, 3)), 4, (5, bytes(4096)), 6])
    good = spec.build()
    original = decode_file(good)
    for _ in range(300):
        buf = bytearray(good)
        for _ in range(rng.randint(1, 4)):
            buf[rng.randrange(len(buf))] = rng.randrange(256)
        _same_or_error(original, bytes(buf))


@settings(max_examples=examples(200), deadline=None)
@given(
    st.sampled_from([512, 32768, 65536]),
    st.booleans(),
    st.integers(0, 6),
    st.lists(st.sampled_from(["keep", "drop", "dup", "swap", "lock", "beyond"]), max_size=4),
    st.data(),
)
def test_the_page_number_fast_path_agrees_with_the_rules(page_size, snapshot, spare, edits, data):
    """`page_numbers_sound` (whole-sequence operations) says "sound" exactly when the frame-by-
    frame rules find nothing, around the lock page, for snapshots and increments alike."""
    lock = 1 + (1 << 30) // page_size
    commit = data.draw(st.integers(max(1, lock - 3), lock + 3)) if page_size >= 32768 else data.draw(st.integers(0, 40))
    header = FileSpec(page_size=page_size, min_txid=1 if snapshot else 2, commit=commit).header()
    pgnos = [p for p in range(1, commit + 1) if p != lock]
    if not snapshot and pgnos:
        pgnos = sorted(data.draw(st.sets(st.sampled_from(pgnos), max_size=12)))
    for edit in edits:
        at = data.draw(st.integers(0, max(len(pgnos) - 1, 0)))
        if edit == "drop" and pgnos:
            del pgnos[at]
        elif edit == "dup" and pgnos:
            pgnos.insert(at, pgnos[at])
        elif edit == "swap" and len(pgnos) > 1:
            at = min(at, len(pgnos) - 2)
            pgnos[at], pgnos[at + 1] = pgnos[at + 1], pgnos[at]
        elif edit == "lock":
            pgnos = sorted({*pgnos, lock})
        elif edit == "beyond":
            pgnos.append(commit + 1 + spare)
    frames = [(p, HEADER_SIZE + 20 * i, 20) for i, p in enumerate(pgnos)]
    assert page_numbers_sound(header, pgnos) == (page_number_rules(header, frames) == [])

