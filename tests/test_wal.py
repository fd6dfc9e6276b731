"""ltxkit.wal: SQLite's write-ahead log read the way SQLite trusts it.

The closed-form frame checksum is checked against the plain reference loop; `scan` is checked
against real WALs written by the stdlib sqlite3 module (and damaged copies of them) and against
synthetic WALs built here with correct checksum chains (both word orders, uncommitted tails,
older generations, byte limits).
"""

from __future__ import annotations

import random
import sqlite3
import struct
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from ltxkit.format.checksum import page_checksum
from ltxkit.wal import (
    FRAME_HEADER_SIZE,
    MAGIC_BE,
    MAGIC_LE,
    WAL_HEADER_SIZE,
    WAL_VERSION,
    IndexHeader,
    ReadAt,
    WalError,
    WalHeader,
    checksum,
    frame_checksum,
    frame_trailer_checksum,
    parse_header,
    parse_index_header,
    scan,
)

U32 = st.integers(0, 0xFFFFFFFF)


# ---- helpers ------------------------------------------------------------------------------------


def _reader(data: bytes) -> ReadAt:
    def read_at(offset: int, length: int) -> bytes:
        assert offset >= 0 and length >= 0
        return data[offset : offset + length]

    return read_at


class _RecordingReader:
    """A ReadAt that remembers the furthest byte it was asked for."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.furthest = 0
        self.calls: list[tuple[int, int]] = []

    def __call__(self, offset: int, length: int) -> bytes:
        self.calls.append((offset, length))
        self.furthest = max(self.furthest, offset + length)
        return self.data[offset : offset + length]


def _wal_header(page_size: int, salts: tuple[int, int], *, big_endian: bool = False, seq: int = 0) -> bytes:
    magic = MAGIC_BE if big_endian else MAGIC_LE
    head = struct.pack(">IIIIII", magic, WAL_VERSION, page_size, seq, *salts)
    return head + struct.pack(">II", *checksum(head, big_endian, 0, 0))


@dataclass(frozen=True)
class _Frame:
    pgno: int
    commit: int
    page: bytes
    salts: tuple[int, int] | None = None  # None: the WAL header's


def _build_wal(
    page_size: int,
    frames: list[_Frame],
    *,
    salts: tuple[int, int] = (0x11223344, 0x55667788),
    big_endian: bool = False,
) -> bytes:
    """A WAL whose frames carry a correct cumulative checksum chain (with the salts each asks for)."""
    header = _wal_header(page_size, salts, big_endian=big_endian)
    s1, s2 = struct.unpack_from(">II", header, 24)
    out = bytearray(header)
    for f in frames:
        assert len(f.page) == page_size
        head8 = struct.pack(">II", f.pgno, f.commit)
        s1, s2 = checksum(head8 + f.page, big_endian, s1, s2)
        out += head8 + struct.pack(">IIII", *(f.salts or salts), s1, s2) + f.page
    return bytes(out)


@dataclass(frozen=True)
class _Walked:
    offset: int  # of the frame header
    pgno: int
    commit: int
    salts: tuple[int, int]
    stored: tuple[int, int]
    page: bytes


def _walk(data: bytes, page_size: int) -> list[_Walked]:
    """Every whole frame in `data`, read naively (no checks)."""
    fsize = FRAME_HEADER_SIZE + page_size
    out = []
    off = WAL_HEADER_SIZE
    while off + fsize <= len(data):
        pgno, commit, a, b, c1, c2 = struct.unpack_from(">IIIIII", data, off)
        out.append(_Walked(off, pgno, commit, (a, b), (c1, c2), data[off + FRAME_HEADER_SIZE : off + fsize]))
        off += fsize
    return out


def _expected_until(frames: list[_Walked], upto: int) -> tuple[int, dict[int, tuple[int, int]], int, int]:
    """For frames[:upto]: the end of the last commit frame, the newest copy of each page of the
    committed frames, the committed frame count and the last commit size."""
    last = -1
    for i in range(min(upto, len(frames))):
        if frames[i].commit:
            last = i
    pages: dict[int, tuple[int, int]] = {}
    for f in frames[: last + 1]:
        pages[f.pgno] = (f.offset + FRAME_HEADER_SIZE, page_checksum(f.pgno, f.page))
    if last < 0:
        return WAL_HEADER_SIZE, pages, 0, 0
    end = frames[last].offset + FRAME_HEADER_SIZE + len(frames[last].page)
    return end, pages, last + 1, frames[last].commit


def _page(rng: random.Random, page_size: int) -> bytes:
    return rng.randbytes(page_size)


# ---- real SQLite WAL --------------------------------------------------------------------------


@dataclass
class _WalDb:
    conn: sqlite3.Connection
    path: Path
    page_size: int

    @property
    def wal(self) -> bytes:
        return Path(f"{self.path}-wal").read_bytes()

    @property
    def shm(self) -> bytes:
        return Path(f"{self.path}-shm").read_bytes()


def _open_wal_db(path: Path, page_size: int) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute(f"PRAGMA page_size={page_size}")
    assert conn.execute("PRAGMA journal_mode=wal").fetchone()[0] == "wal"
    conn.execute("PRAGMA wal_autocheckpoint=0")
    return conn


def _write_transactions(conn: sqlite3.Connection) -> None:
    conn.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)")
    conn.execute("CREATE INDEX t_v ON t(v)")
    for i in range(6):
        conn.execute("BEGIN")
        for j in range(1 + 3 * i):
            conn.execute("INSERT INTO t(v) VALUES (randomblob(?))", (50 + 97 * j,))
        conn.execute("COMMIT")
    conn.execute("UPDATE t SET v = randomblob(30) WHERE id % 3 = 0")
    conn.execute("DELETE FROM t WHERE id % 5 = 0")
    conn.execute("INSERT INTO t(v) VALUES (randomblob(3000))")  # overflow pages


@pytest.fixture(params=[1024, 4096], ids=["1k", "4k"])
def wal_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[_WalDb]:
    page_size: int = request.param
    path = tmp_path / "w.db"
    conn = _open_wal_db(path, page_size)
    try:
        _write_transactions(conn)
        yield _WalDb(conn, path, page_size)
    finally:
        conn.close()


def _real(wal_db: _WalDb) -> tuple[bytes, WalHeader, list[_Walked]]:
    data = wal_db.wal
    header = parse_header(data)
    return data, header, _walk(data, header.page_size)


def test_real_wal_header(wal_db: _WalDb) -> None:
    data, header, frames = _real(wal_db)
    assert header.page_size == wal_db.page_size
    assert header.frame_size == wal_db.page_size + FRAME_HEADER_SIZE
    assert header.version == WAL_VERSION
    assert header.magic in (MAGIC_LE, MAGIC_BE)
    assert header.salts == struct.unpack_from(">II", data, 16)
    assert (len(data) - WAL_HEADER_SIZE) % header.frame_size == 0
    assert len(frames) > 10  # the fixture really wrote a multi-transaction WAL
    assert sum(1 for f in frames if f.commit) >= 9


def test_real_wal_scan_finds_every_committed_frame(wal_db: _WalDb) -> None:
    data, header, frames = _real(wal_db)
    seg = scan(_reader(data), header, WAL_HEADER_SIZE, header.checksum)
    assert seg.stopped == ""
    assert seg.start == WAL_HEADER_SIZE
    assert seg.frames == len(frames) == (len(data) - WAL_HEADER_SIZE) // header.frame_size
    assert seg.end == len(data)
    assert seg.commit == wal_db.conn.execute("PRAGMA page_count").fetchone()[0]
    assert seg.checksum == frames[-1].stored

    # every reported (offset, checksum) is the bytes it names, and it is the newest copy
    newest: dict[int, _Walked] = {}
    for f in frames:
        newest[f.pgno] = f
    assert set(seg.pages) == set(newest)
    for pgno, (offset, value) in seg.pages.items():
        page = data[offset : offset + header.page_size]
        assert page_checksum(pgno, page) == value
        assert offset == newest[pgno].offset + FRAME_HEADER_SIZE


@pytest.mark.parametrize("max_bytes", [1, 3 * 4120, 64 << 20])
def test_real_wal_scan_batching_does_not_matter(wal_db: _WalDb, max_bytes: int) -> None:
    data, header, _ = _real(wal_db)
    whole = scan(_reader(data), header, WAL_HEADER_SIZE, header.checksum)
    batched = scan(_reader(data), header, WAL_HEADER_SIZE, header.checksum, max_bytes=max_bytes)
    assert batched == whole


def test_real_wal_scan_resumes_at_every_commit(wal_db: _WalDb) -> None:
    data, header, frames = _real(wal_db)
    read_at = _reader(data)
    whole = scan(read_at, header, WAL_HEADER_SIZE, header.checksum)
    for i, f in enumerate(frames):
        if not f.commit:
            continue
        boundary = f.offset + header.frame_size
        start_sum = frame_trailer_checksum(read_at, header, boundary)
        assert start_sum == f.stored
        rest = scan(read_at, header, boundary, start_sum)
        assert rest.stopped == ""
        assert rest.start == boundary
        assert rest.end == whole.end
        assert rest.frames == len(frames) - (i + 1)
        assert rest.checksum == whole.checksum
        if rest.frames:
            assert rest.commit == whole.commit
        _, head_pages, _, _ = _expected_until(frames, i + 1)
        assert head_pages | rest.pages == whole.pages


def test_real_wal_scan_with_a_wrong_start_checksum_finds_nothing(wal_db: _WalDb) -> None:
    data, header, _ = _real(wal_db)
    c1, c2 = header.checksum
    seg = scan(_reader(data), header, WAL_HEADER_SIZE, (c1 ^ 1, c2))
    assert (seg.end, seg.frames, seg.commit, seg.pages) == (WAL_HEADER_SIZE, 0, 0, {})
    assert "checksum" in seg.stopped


def test_real_wal_damaged_page_stops_before_its_transaction(wal_db: _WalDb) -> None:
    data, header, frames = _real(wal_db)
    for k, f in enumerate(frames):
        damaged = bytearray(data)
        damaged[f.offset + FRAME_HEADER_SIZE + (k * 37) % header.page_size] ^= 0x20
        seg = scan(_reader(bytes(damaged)), header, WAL_HEADER_SIZE, header.checksum)
        end, pages, count, commit = _expected_until(frames, k)
        assert seg.end == end, k
        assert seg.frames == count
        assert seg.commit == commit
        assert seg.pages == pages
        assert "checksum" in seg.stopped


@pytest.mark.parametrize("field_offset", [0, 4, 16, 20], ids=["pgno", "commit", "checksum1", "checksum2"])
def test_real_wal_damaged_frame_header_stops_there(wal_db: _WalDb, field_offset: int) -> None:
    data, header, frames = _real(wal_db)
    k = len(frames) // 2
    damaged = bytearray(data)
    damaged[frames[k].offset + field_offset + 3] ^= 0x01
    seg = scan(_reader(bytes(damaged)), header, WAL_HEADER_SIZE, header.checksum)
    end, pages, count, _ = _expected_until(frames, k)
    assert (seg.end, seg.frames, seg.pages) == (end, count, pages)
    assert "checksum" in seg.stopped


def test_real_wal_changed_salt_stops_there(wal_db: _WalDb) -> None:
    data, header, frames = _real(wal_db)
    for k in (0, 1, len(frames) // 2, len(frames) - 1):
        for salt_at in (8, 12):
            damaged = bytearray(data)
            damaged[frames[k].offset + salt_at] ^= 0x80
            seg = scan(_reader(bytes(damaged)), header, WAL_HEADER_SIZE, header.checksum)
            end, pages, count, _ = _expected_until(frames, k)
            assert (seg.end, seg.frames, seg.pages) == (end, count, pages)
            assert "salts" in seg.stopped


def test_real_wal_cut_mid_frame(wal_db: _WalDb) -> None:
    data, header, frames = _real(wal_db)
    for k, f in enumerate(frames):
        for into in (1, FRAME_HEADER_SIZE, header.frame_size - 1):
            cut = data[: f.offset + into]
            seg = scan(_reader(cut), header, WAL_HEADER_SIZE, header.checksum)
            end, pages, count, _ = _expected_until(frames, k)
            assert (seg.end, seg.frames, seg.pages) == (end, count, pages)
            assert "cut short" in seg.stopped


def test_real_wal_cut_at_frame_boundary_is_a_clean_end(wal_db: _WalDb) -> None:
    data, header, frames = _real(wal_db)
    for k in range(len(frames) + 1):
        cut = data[: WAL_HEADER_SIZE + k * header.frame_size]
        seg = scan(_reader(cut), header, WAL_HEADER_SIZE, header.checksum)
        end, pages, count, _ = _expected_until(frames, k)
        assert (seg.end, seg.frames, seg.pages, seg.stopped) == (end, count, pages, "")


def test_real_wal_frame_trailer_checksum(wal_db: _WalDb) -> None:
    data, header, frames = _real(wal_db)
    read_at = _reader(data)
    assert frame_trailer_checksum(read_at, header, WAL_HEADER_SIZE) == header.checksum
    assert frame_trailer_checksum(read_at, header, 0) is None
    assert frame_trailer_checksum(read_at, header, WAL_HEADER_SIZE - 8) is None
    for f in frames:
        assert frame_trailer_checksum(read_at, header, f.offset + header.frame_size) == f.stored
    # a frame that ends beyond the file
    assert frame_trailer_checksum(read_at, header, len(data) + 2 * header.frame_size) is None
    # a frame from another generation (its salts differ)
    damaged = bytearray(data)
    damaged[frames[2].offset + 8] ^= 0xFF
    assert frame_trailer_checksum(_reader(bytes(damaged)), header, frames[2].offset + header.frame_size) is None
    assert frame_trailer_checksum(_reader(bytes(damaged)), header, frames[3].offset + header.frame_size) == (
        frames[3].stored
    )


def test_real_shm_index_header(wal_db: _WalDb) -> None:
    data, header, frames = _real(wal_db)
    index = parse_index_header(wal_db.shm[:96])
    assert isinstance(index, IndexHeader)
    assert index.max_frame == len(frames)
    assert index.salts == header.salts
    assert index.salt_bytes == data[16:24]
    # more bytes than the header (the whole -shm) read the same
    assert parse_index_header(wal_db.shm) == index
    # the synthetic headers below are sealed the way SQLite seals this one
    assert _index_checksum(wal_db.shm[:48]) == wal_db.shm[40:48]


def test_real_shm_follows_new_transactions(wal_db: _WalDb) -> None:
    wal_db.conn.execute("INSERT INTO t(v) VALUES (randomblob(10))")
    data, header, frames = _real(wal_db)
    index = parse_index_header(wal_db.shm)
    assert index is not None and index.max_frame == len(frames)
    seg = scan(_reader(data), header, WAL_HEADER_SIZE, header.checksum, limit=WAL_HEADER_SIZE)
    assert seg.frames == 0 and seg.end == WAL_HEADER_SIZE
    limit = WAL_HEADER_SIZE + index.max_frame * header.frame_size
    assert scan(_reader(data), header, WAL_HEADER_SIZE, header.checksum, limit=limit).end == limit


def test_real_wal_restart_leaves_older_generation_frames_behind(tmp_path: Path) -> None:
    """After a checkpoint SQLite restarts the WAL from the front with new salts: the frames of the
    previous generation beyond the new ones must not count."""
    path = tmp_path / "r.db"
    conn = _open_wal_db(path, 1024)
    try:
        _write_transactions(conn)
        old = Path(f"{path}-wal").read_bytes()
        old_header = parse_header(old)
        busy, _, _ = conn.execute("PRAGMA wal_checkpoint(FULL)").fetchone()
        assert busy == 0
        conn.execute("INSERT INTO t(v) VALUES (randomblob(20))")  # restarts the WAL
        data = Path(f"{path}-wal").read_bytes()
        header = parse_header(data)
        assert header.salts != old_header.salts
        assert len(data) == len(old)  # the old generation's tail is still in the file
        frames = _walk(data, header.page_size)
        new = [f for f in frames if f.salts == header.salts]
        assert 0 < len(new) < len(frames)
        seg = scan(_reader(data), header, WAL_HEADER_SIZE, header.checksum)
        assert seg.frames == len(new)
        assert seg.end == new[-1].offset + header.frame_size
        assert seg.commit == conn.execute("PRAGMA page_count").fetchone()[0]
        assert "salts" in seg.stopped or "checksum" in seg.stopped
        index = parse_index_header(Path(f"{path}-shm").read_bytes())
        assert index is not None
        assert index.max_frame == len(new)
        assert index.salts == header.salts
    finally:
        conn.close()


# ---- the closed-form checksum -----------------------------------------------------------------


@settings(deadline=None, max_examples=60)
@given(
    head=st.binary(min_size=8, max_size=8),
    page_size=st.sampled_from([512, 1024, 4096]),
    seed=st.integers(0, 2**32 - 1),
    big_endian=st.booleans(),
    s1=U32,
    s2=U32,
)
@example(head=b"\xff" * 8, page_size=4096, seed=-1, big_endian=False, s1=0xFFFFFFFF, s2=0xFFFFFFFF)
@example(head=b"\x00" * 8, page_size=512, seed=-2, big_endian=True, s1=0, s2=0)
def test_frame_checksum_equals_reference(
    head: bytes, page_size: int, seed: int, big_endian: bool, s1: int, s2: int
) -> None:
    page = _special_page(seed, page_size)
    assert frame_checksum(head, page, big_endian, s1, s2) == checksum(head + page, big_endian, s1, s2)


@settings(deadline=None, max_examples=5)
@given(
    head=st.binary(min_size=8, max_size=8),
    seed=st.integers(0, 2**32 - 1),
    big_endian=st.booleans(),
    s1=U32,
    s2=U32,
)
@example(head=b"\xff" * 8, seed=-1, big_endian=True, s1=0xFFFFFFFF, s2=0xFFFFFFFF)
def test_frame_checksum_equals_reference_64k(head: bytes, seed: int, big_endian: bool, s1: int, s2: int) -> None:
    page = _special_page(seed, 65536)
    assert frame_checksum(head, page, big_endian, s1, s2) == checksum(head + page, big_endian, s1, s2)


def _special_page(seed: int, page_size: int) -> bytes:
    if seed == -1:
        return b"\xff" * page_size  # the largest words: the most wrapping
    if seed == -2:
        return bytes(page_size)
    return random.Random(seed).randbytes(page_size)


def test_checksum_reference_small_cases() -> None:
    # one pair, worked by hand: s1 = 0 + a + 0, s2 = 0 + b + s1
    data = struct.pack("<II", 5, 7)
    assert checksum(data, False, 0, 0) == (5, 12)
    assert checksum(struct.pack(">II", 5, 7), True, 0, 0) == (5, 12)
    # continuing from (s1, s2), and wrapping modulo 2^32
    assert checksum(data, False, 1, 2) == (8, 17)
    assert checksum(struct.pack("<II", 0xFFFFFFFF, 0xFFFFFFFF), False, 1, 0) == (0, 0xFFFFFFFF)
    # chaining is the same as one pass
    blob = bytes(range(64))
    assert checksum(blob[32:], False, *checksum(blob[:32], False, 0, 0)) == checksum(blob, False, 0, 0)
    assert checksum(b"", True, 3, 4) == (3, 4)


# ---- parse_header -----------------------------------------------------------------------------


@pytest.mark.parametrize("big_endian", [False, True])
def test_parse_header_accepts_both_magics(big_endian: bool) -> None:
    data = _wal_header(4096, (1, 2), big_endian=big_endian, seq=9)
    header = parse_header(data + b"trailing bytes are ignored")
    assert header.big_endian is big_endian
    assert header.magic == (MAGIC_BE if big_endian else MAGIC_LE)
    assert (header.page_size, header.checkpoint_seq, header.salts) == (4096, 9, (1, 2))
    assert header.checksum == struct.unpack_from(">II", data, 24)
    assert header.checksum == checksum(data[:24], big_endian, 0, 0)


@pytest.mark.parametrize("big_endian", [False, True])
def test_parse_header_wants_checksum_in_the_magics_word_order(big_endian: bool) -> None:
    magic = MAGIC_BE if big_endian else MAGIC_LE
    head = struct.pack(">IIIIII", magic, WAL_VERSION, 4096, 0, 0xDEADBEEF, 0x12345678)
    wrong_order = checksum(head, not big_endian, 0, 0)
    assert wrong_order != checksum(head, big_endian, 0, 0)
    with pytest.raises(WalError, match="checksum"):
        parse_header(head + struct.pack(">II", *wrong_order))


@pytest.mark.parametrize("page_size", [512, 1024, 2048, 8192, 16384, 32768, 65536])
def test_parse_header_valid_page_sizes(page_size: int) -> None:
    assert parse_header(_wal_header(page_size, (3, 4))).page_size == page_size


def _resealed(data: bytes, offset: int, value: int) -> bytes:
    """`data` with the u32 at `offset` replaced and the header checksum recomputed."""
    head = bytearray(data[:24])
    struct.pack_into(">I", head, offset, value)
    big = struct.unpack_from(">I", head, 0)[0] & 1 == 1
    return bytes(head) + struct.pack(">II", *checksum(bytes(head), big, 0, 0))


@pytest.mark.parametrize(
    ("offset", "value", "match"),
    [
        (0, 0x377F0681, "magic"),
        (0, 0x377F0684, "magic"),
        (0, 0, "magic"),
        (4, WAL_VERSION + 1, "version"),
        (4, 0, "version"),
        (8, 0, "page size"),
        (8, 256, "page size"),
        (8, 3000, "page size"),
        (8, 131072, "page size"),
        (8, 4097, "page size"),
    ],
)
def test_parse_header_rejects(offset: int, value: int, match: str) -> None:
    good = _wal_header(4096, (1, 2))
    with pytest.raises(WalError, match=match):
        parse_header(_resealed(good, offset, value))


def test_parse_header_rejects_bad_checksum_and_short_data() -> None:
    good = _wal_header(4096, (1, 2))
    for i in range(24, 32):
        bad = bytearray(good)
        bad[i] ^= 0x04
        with pytest.raises(WalError, match="checksum"):
            parse_header(bytes(bad))
    # a field changed without resealing the checksum
    for i in (15, 19, 23):
        bad = bytearray(good)
        bad[i] ^= 0x01
        with pytest.raises(WalError, match="checksum"):
            parse_header(bytes(bad))
    for n in (0, 8, 31):
        with pytest.raises(WalError):
            parse_header(good[:n])


def test_wal_error_is_a_value_error() -> None:
    assert issubclass(WalError, ValueError)


# ---- scan over synthetic WALs ----------------------------------------------------------------

PS = 512
FS = PS + FRAME_HEADER_SIZE


def _off(i: int) -> int:
    """Byte offset of frame i's header."""
    return WAL_HEADER_SIZE + i * FS


@pytest.mark.parametrize("big_endian", [False, True])
def test_scan_synthetic_both_word_orders(big_endian: bool) -> None:
    rng = random.Random(1)
    frames = [
        _Frame(1, 0, _page(rng, PS)),
        _Frame(2, 2, _page(rng, PS)),
        _Frame(3, 0, _page(rng, PS)),
        _Frame(1, 3, _page(rng, PS)),
    ]
    data = _build_wal(PS, frames, big_endian=big_endian)
    header = parse_header(data)
    assert header.big_endian is big_endian
    seg = scan(_reader(data), header, WAL_HEADER_SIZE, header.checksum)
    assert (seg.frames, seg.end, seg.commit, seg.stopped) == (4, len(data), 3, "")
    assert seg.pages == {
        1: (_off(3) + FRAME_HEADER_SIZE, page_checksum(1, frames[3].page)),
        2: (_off(1) + FRAME_HEADER_SIZE, page_checksum(2, frames[1].page)),
        3: (_off(2) + FRAME_HEADER_SIZE, page_checksum(3, frames[2].page)),
    }
    assert seg.checksum == struct.unpack_from(">II", data, _off(3) + 16)


def test_scan_discards_frames_after_the_last_commit() -> None:
    rng = random.Random(2)
    frames = [
        _Frame(1, 0, _page(rng, PS)),
        _Frame(2, 2, _page(rng, PS)),  # commit
        _Frame(2, 0, _page(rng, PS)),  # uncommitted rewrite of page 2
        _Frame(5, 0, _page(rng, PS)),  # uncommitted new page
    ]
    data = _build_wal(PS, frames)
    header = parse_header(data)
    seg = scan(_reader(data), header, WAL_HEADER_SIZE, header.checksum)
    assert seg.stopped == ""  # nothing is wrong with the tail: it just is not committed
    assert (seg.frames, seg.end, seg.commit) == (2, _off(2), 2)
    assert set(seg.pages) == {1, 2}
    assert seg.pages[2] == (_off(1) + FRAME_HEADER_SIZE, page_checksum(2, frames[1].page))
    assert seg.checksum == struct.unpack_from(">II", data, _off(1) + 16)


def test_scan_with_no_commit_frame() -> None:
    rng = random.Random(3)
    data = _build_wal(PS, [_Frame(1, 0, _page(rng, PS)), _Frame(2, 0, _page(rng, PS))])
    header = parse_header(data)
    seg = scan(_reader(data), header, WAL_HEADER_SIZE, header.checksum)
    assert (seg.frames, seg.end, seg.commit, seg.pages, seg.checksum) == (
        0,
        WAL_HEADER_SIZE,
        0,
        {},
        header.checksum,
    )


def test_scan_empty_wal() -> None:
    data = _build_wal(PS, [])
    header = parse_header(data)
    seg = scan(_reader(data), header, WAL_HEADER_SIZE, header.checksum)
    assert (seg.frames, seg.end, seg.commit, seg.pages, seg.stopped) == (0, WAL_HEADER_SIZE, 0, {}, "")


def test_scan_stops_at_a_page_zero_frame() -> None:
    rng = random.Random(4)
    data = _build_wal(PS, [_Frame(1, 1, _page(rng, PS)), _Frame(0, 1, _page(rng, PS)), _Frame(1, 1, _page(rng, PS))])
    header = parse_header(data)
    seg = scan(_reader(data), header, WAL_HEADER_SIZE, header.checksum)
    assert (seg.frames, seg.end) == (1, _off(1))
    assert "page 0" in seg.stopped


def test_scan_stops_at_an_older_generation() -> None:
    """A restarted WAL: frames with the previous salts follow the new ones; even with a checksum
    chain that would match, a frame with other salts ends the WAL."""
    rng = random.Random(5)
    old = (1, 1)
    frames = [
        _Frame(1, 0, _page(rng, PS)),
        _Frame(2, 3, _page(rng, PS)),
        _Frame(3, 4, _page(rng, PS), salts=old),
        _Frame(4, 4, _page(rng, PS)),
    ]
    data = _build_wal(PS, frames)
    header = parse_header(data)
    seg = scan(_reader(data), header, WAL_HEADER_SIZE, header.checksum)
    assert (seg.frames, seg.end, seg.commit) == (2, _off(2), 3)
    assert set(seg.pages) == {1, 2}
    assert "salts" in seg.stopped


@pytest.mark.parametrize("max_bytes", [1, FS, 2 * FS + 7, 64 << 20])
def test_scan_limit_is_never_read_past(max_bytes: int) -> None:
    rng = random.Random(6)
    frames = [_Frame(1 + i % 4, 4 if i % 2 else 0, _page(rng, PS)) for i in range(10)]
    data = _build_wal(PS, frames)
    header = parse_header(data)
    full = scan(_reader(data), header, WAL_HEADER_SIZE, header.checksum, max_bytes=max_bytes)
    assert (full.frames, full.end) == (10, len(data))
    for n in range(11):
        for extra in (0, 1, FS // 2, FS - 1):
            limit = _off(n) + extra
            if limit > len(data):
                continue
            reader = _RecordingReader(data)
            seg = scan(reader, header, WAL_HEADER_SIZE, header.checksum, limit=limit, max_bytes=max_bytes)
            assert reader.furthest <= limit, (n, extra, reader.calls)
            last_commit = n - (n % 2)  # frames 1, 3, 5... (0-based) are commits
            assert seg.frames == last_commit
            assert seg.end == _off(last_commit)
            assert seg.stopped == ""  # a limit is not damage
            expected = {}
            for i in range(last_commit):
                expected[frames[i].pgno] = (_off(i) + FRAME_HEADER_SIZE, page_checksum(frames[i].pgno, frames[i].page))
            assert seg.pages == expected


def test_scan_limit_reads_exactly_up_to_it() -> None:
    rng = random.Random(7)
    frames = [_Frame(1, 1, _page(rng, PS)) for _ in range(6)]
    data = _build_wal(PS, frames)
    header = parse_header(data)
    reader = _RecordingReader(data)
    seg = scan(reader, header, WAL_HEADER_SIZE, header.checksum, limit=_off(4))
    assert reader.furthest == _off(4)
    assert (seg.frames, seg.end) == (4, _off(4))
    # a later scan from there picks up the rest
    rest = scan(_reader(data), header, seg.end, frame_trailer_checksum(_reader(data), header, seg.end) or (0, 0))
    assert (rest.frames, rest.end) == (2, len(data))
    assert rest.checksum == struct.unpack_from(">II", data, _off(5) + 16)
    assert seg.checksum == struct.unpack_from(">II", data, _off(3) + 16)


def test_scan_limit_at_start_reads_nothing() -> None:
    data = _build_wal(PS, [_Frame(1, 1, bytes(PS))])
    header = parse_header(data)
    reader = _RecordingReader(data)
    seg = scan(reader, header, WAL_HEADER_SIZE, header.checksum, limit=WAL_HEADER_SIZE)
    assert reader.calls == []
    assert (seg.frames, seg.end, seg.stopped) == (0, WAL_HEADER_SIZE, "")


def test_scan_pending_pages_survive_batch_boundaries() -> None:
    """A transaction spread over several reads still counts once its commit frame is read."""
    rng = random.Random(8)
    frames = [_Frame(p, 0, _page(rng, PS)) for p in range(1, 8)] + [_Frame(8, 8, _page(rng, PS))]
    data = _build_wal(PS, frames)
    header = parse_header(data)
    for max_bytes in (1, FS, 3 * FS):
        seg = scan(_reader(data), header, WAL_HEADER_SIZE, header.checksum, max_bytes=max_bytes)
        assert (seg.frames, seg.end, seg.commit) == (8, len(data), 8)
        assert set(seg.pages) == set(range(1, 9))


@settings(deadline=None, max_examples=40)
@given(
    commits=st.lists(st.booleans(), min_size=1, max_size=12),
    pgnos=st.lists(st.integers(1, 6), min_size=12, max_size=12),
    seed=st.integers(0, 2**32 - 1),
    big_endian=st.booleans(),
    damage=st.one_of(st.none(), st.tuples(st.integers(0, 11), st.integers(0, FS - 1))),
)
def test_scan_synthetic_property(
    commits: list[bool], pgnos: list[int], seed: int, big_endian: bool, damage: tuple[int, int] | None
) -> None:
    rng = random.Random(seed)
    frames = [_Frame(pgnos[i], 6 if c else 0, _page(rng, PS)) for i, c in enumerate(commits)]
    data = bytearray(_build_wal(PS, frames, big_endian=big_endian))
    upto = len(frames)
    if damage is not None and damage[0] < len(frames):
        k, at = damage
        data[_off(k) + at] ^= 0x40
        upto = k
    header = parse_header(bytes(data))
    seg = scan(_reader(bytes(data)), header, WAL_HEADER_SIZE, header.checksum, max_bytes=2 * FS)
    end, pages, count, commit = _expected_until(_walk(bytes(_build_wal(PS, frames, big_endian=big_endian)), PS), upto)
    assert (seg.end, seg.pages, seg.frames, seg.commit) == (end, pages, count, commit)
    assert bool(seg.stopped) == (upto < len(frames))


# ---- parse_index_header -----------------------------------------------------------------------


def _index_copy(*, is_init: int = 1, max_frame: int = 7, salts: bytes = b"\x01\x02\x03\x04\x05\x06\x07\x08") -> bytes:
    """One copy of a WalIndexHdr, sealed with its checksum as SQLite computes it (native word order)."""
    body = struct.pack("=IIIBBHII8s8s", 3007000, 0, 5, is_init, 0, 4096, max_frame, 12, bytes(8), salts)
    return body + _index_checksum(body)


def _index_checksum(body: bytes) -> bytes:
    return struct.pack("=II", *checksum(body[:40], sys.byteorder == "big", 0, 0))


def test_parse_index_header_synthetic() -> None:
    copy = _index_copy()
    assert len(copy) == 48
    index = parse_index_header(copy + copy)
    assert index == IndexHeader(7, b"\x01\x02\x03\x04\x05\x06\x07\x08")
    assert index is not None and index.salts == (0x01020304, 0x05060708)
    # the checkpoint info's nBackfill follows the two copies; the rest of -shm is ignored
    backfilled = parse_index_header(copy + copy + struct.pack("=I", 7) + b"\xff" * 100)
    assert backfilled == IndexHeader(7, b"\x01\x02\x03\x04\x05\x06\x07\x08", 7)
    assert backfilled is not None and backfilled.fully_backfilled and not index.fully_backfilled
    zero = _index_copy(max_frame=0)
    assert parse_index_header(zero + zero) == IndexHeader(0, b"\x01\x02\x03\x04\x05\x06\x07\x08")


def test_parse_index_header_refuses() -> None:
    copy = _index_copy()
    whole = copy + copy
    assert parse_index_header(b"") is None
    assert parse_index_header(whole[:95]) is None  # short
    assert parse_index_header(copy + _index_copy(max_frame=8)) is None  # copies differ
    for i in range(48):
        other = bytearray(whole)
        other[48 + i] ^= 0x01
        assert parse_index_header(bytes(other)) is None, i
    uninit = _index_copy(is_init=0)
    assert parse_index_header(uninit + uninit) is None
    assert parse_index_header(bytes(96)) is None
