"""SQLite's write-ahead log, read the way SQLite itself trusts it: sans-I/O, bytes in, frames out.

A WAL is a 32-byte header and then frames: a 24-byte frame header and one page each. Two things
make a frame part of the database:

* its salts equal the header's (a WAL that was restarted is overwritten from the front with new
  salts, so frames left over from the previous generation carry the old ones), and
* the cumulative checksum in its header matches a running checksum over the WAL header and every
  frame before it (so a torn or overwritten frame, or any frame after one, never counts).

Frames count only up to the last *commit* frame (a frame whose "database size" field is not zero):
frames after it belong to a transaction still being written, or one that was rolled back.

The checksum is SQLite's Fletcher-like sum over pairs of 32-bit words: `s1 += a + s2; s2 += b + s1`.
Its word order is the WAL magic's lowest bit (0x377f0682: little-endian words, 0x377f0683:
big-endian). Run pair by pair in Python it costs ~150 µs per 4 KiB page; but the recurrence is
linear, so the sums after n pairs are fixed linear combinations of the words and of the starting
sums. `_Weights` holds those coefficients for one page size, and a frame's checksum is two dot
products, computed by `one `sum(map(mul, ...))` in C over weights
that pack both sums' coefficients into one integer.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache

import numpy as np

from ltxkit.format.checksum import page_checksum

WAL_HEADER_SIZE = 32
FRAME_HEADER_SIZE = 24
MAGIC_LE = 0x377F0682
MAGIC_BE = 0x377F0683
WAL_VERSION = 3007000
_MASK = 0xFFFFFFFF
_HEADER = struct.Struct(">IIIIIIII")
_FRAME = struct.Struct(">IIIIII")

ReadAt = Callable[[int, int], bytes]  # (offset, length) -> bytes, shorter at the end of the file


class WalError(ValueError):
    """The WAL header is not one SQLite would accept."""


@dataclass(frozen=True, slots=True)
class WalHeader:
    magic: int
    version: int
    page_size: int
    checkpoint_seq: int
    salts: tuple[int, int]
    checksum: tuple[int, int]

    @property
    def big_endian(self) -> bool:
        return self.magic == MAGIC_BE

    @property
    def frame_size(self) -> int:
        return FRAME_HEADER_SIZE + self.page_size


def parse_header(data: bytes) -> WalHeader:
    """The WAL header in `data` (at least 32 bytes), with its checksum checked."""
    if len(data) < WAL_HEADER_SIZE:
        raise WalError(f"WAL header is {len(data)} bytes, needs {WAL_HEADER_SIZE}")
    magic, version, page_size, seq, salt1, salt2, c1, c2 = _HEADER.unpack_from(data)
    if magic not in (MAGIC_LE, MAGIC_BE):
        raise WalError(f"bad WAL magic 0x{magic:08x}")
    if version != WAL_VERSION:
        raise WalError(f"unknown WAL version {version}")
    if page_size < 512 or page_size > 65536 or page_size & (page_size - 1):
        raise WalError(f"bad WAL page size {page_size}")
    header = WalHeader(magic, version, page_size, seq, (salt1, salt2), (c1, c2))
    if checksum(data[:24], header.big_endian, 0, 0) != (c1, c2):
        raise WalError("WAL header checksum does not match")
    return header


def _words(data: bytes, big_endian: bool) -> tuple[int, ...]:
    return struct.unpack(f"{'>' if big_endian else '<'}{len(data) // 4}I", data)


def checksum(data: bytes, big_endian: bool, s1: int, s2: int) -> tuple[int, int]:
    """SQLite's WAL checksum of `data` (a multiple of 8 bytes), continuing from (s1, s2).

    The plain loop: the reference the weighted form (`frame_checksum`) is tested against, and
    what the 24-byte header uses.
    """
    words = _words(data, big_endian)
    for i in range(0, len(words), 2):
        s1 = (s1 + words[i] + s2) & _MASK
        s2 = (s2 + words[i + 1] + s1) & _MASK
    return s1, s2


@dataclass(frozen=True, slots=True)
class _Weights:
    """After n pairs, s1 = a1*s1_0 + b1*s2_0 + w1 . words, and likewise s2 (all mod 2^32).

    With M = [[1, 1], [1, 2]] (one step: s1' = s1 + s2 + a, s2' = s1 + 2*s2 + a + b), pair k of n
    contributes M^(n-k) applied to (a, a + b). `w` holds w1 and w2 as two rows of uint64: numpy's
    uint64 arithmetic wraps modulo 2^64, so its low 32 bits are exact modulo 2^32.
    """

    a1: int
    b1: int
    a2: int
    b2: int
    w: np.ndarray


@cache
def _weights(n_words: int) -> _Weights:
    n = n_words // 2
    # powers[j] = M^j as (p, q, r, t) for j = 0..n
    p, q, r, t = 1, 0, 0, 1
    powers = [(p, q, r, t)]
    for _ in range(n):
        p, q, r, t = (p + r) & _MASK, (q + t) & _MASK, (p + 2 * r) & _MASK, (q + 2 * t) & _MASK
        powers.append((p, q, r, t))
    w = np.zeros((2, n_words), dtype=np.uint64)
    for k in range(1, n + 1):
        p, q, r, t = powers[n - k]
        w[0, 2 * k - 2 : 2 * k] = ((p + q) & _MASK, q)
        w[1, 2 * k - 2 : 2 * k] = ((r + t) & _MASK, t)
    pn, qn, rn, tn = powers[n]
    return _Weights(pn, qn, rn, tn, w)


_LE_WORDS = np.dtype("<u4")
_BE_WORDS = np.dtype(">u4")


def frame_checksum(frame_head8: bytes, page: bytes, big_endian: bool, s1: int, s2: int) -> tuple[int, int]:
    """The checksum over a frame's first 8 header bytes and its page, continuing from (s1, s2)."""
    dtype = _BE_WORDS if big_endian else _LE_WORDS
    words = np.frombuffer(frame_head8 + page, dtype=dtype).astype(np.uint64)
    w = _weights(len(words))
    d1, d2 = (int(x) for x in w.w @ words)
    return (w.a1 * s1 + w.b1 * s2 + d1) & _MASK, (w.a2 * s1 + w.b2 * s2 + d2) & _MASK


@dataclass(slots=True)
class Segment:
    """The committed frames found from `start` on: where the newest copy of each page is (and its
    LTX page checksum, taken from the bytes the WAL checksum was verified over), and where they end.

    `end` is the byte offset just past the last commit frame (== `start` when none was found);
    `checksum` the running checksum there; `commit` the database size in pages after the last
    commit (0 when no frame committed). `frames` counts the committed frames.
    """

    start: int
    end: int
    checksum: tuple[int, int]
    commit: int = 0
    frames: int = 0
    pages: dict[int, tuple[int, int]] = field(default_factory=dict)  # pgno -> (page offset, page checksum)
    stopped: str = ""  # why the scan stopped before the end of the file ("" at a clean end)


def scan(
    read_at: ReadAt,
    header: WalHeader,
    start: int,
    start_checksum: tuple[int, int],
    *,
    limit: int | None = None,
    max_bytes: int = 64 << 20,
) -> Segment:
    """Read frames from byte offset `start` (a frame boundary) while they are valid.

    `start_checksum` is the running checksum at `start`: the header's checksum at offset 32,
    otherwise the checksum stored in the frame that ends at `start`. Pages of frames after the
    last commit frame are discarded. Nothing at or past byte `limit` is read (the end of the
    frames the WAL index counts). Reads `max_bytes` at a time.
    """
    fsize = header.frame_size
    big = header.big_endian
    salts = header.salts
    s1, s2 = start_checksum
    seg = Segment(start, start, start_checksum)
    pending: dict[int, tuple[int, int]] = {}
    pending_frames = 0
    off = start
    batch = max(1, max_bytes // fsize)
    while True:
        want = batch * fsize if limit is None else min(batch * fsize, limit - off)
        if want < fsize:
            return seg
        data = read_at(off, want)
        n = len(data) // fsize
        for i in range(n):
            base = i * fsize
            pgno, commit, salt1, salt2, c1, c2 = _FRAME.unpack_from(data, base)
            if (salt1, salt2) != salts:
                seg.stopped = "salts differ (frame from an earlier WAL generation)"
                return seg
            page = data[base + FRAME_HEADER_SIZE : base + fsize]
            s1, s2 = frame_checksum(data[base : base + 8], page, big, s1, s2)
            if (s1, s2) != (c1, c2):
                seg.stopped = "frame checksum does not match"
                return seg
            if pgno == 0:
                seg.stopped = "frame for page 0"
                return seg
            pending[pgno] = (off + base + FRAME_HEADER_SIZE, page_checksum(pgno, page))
            pending_frames += 1
            if commit:
                seg.pages.update(pending)
                pending.clear()
                seg.frames += pending_frames
                pending_frames = 0
                seg.commit = commit
                seg.end = off + base + fsize
                seg.checksum = (s1, s2)
        off += n * fsize
        if len(data) < want:
            if len(data) % fsize:
                seg.stopped = "last frame is cut short"
            return seg


def frame_trailer_checksum(read_at: ReadAt, header: WalHeader, end: int) -> tuple[int, int] | None:
    """The salts-checked stored checksum of the frame that ends at `end` (None: no such frame)."""
    if end <= WAL_HEADER_SIZE:
        return header.checksum if end == WAL_HEADER_SIZE else None
    data = read_at(end - header.frame_size, FRAME_HEADER_SIZE)
    if len(data) < FRAME_HEADER_SIZE:
        return None
    _pgno, _commit, salt1, salt2, c1, c2 = _FRAME.unpack_from(data)
    if (salt1, salt2) != header.salts:
        return None
    return c1, c2


# ---- the WAL index (-shm) header: what SQLite itself counts as committed -------------------------
# WalIndexHdr, stored twice (SQLite writes copy 2 then copy 1; equal copies are a consistent read):
# iVersion, unused, iChange, isInit, bigEndCksum, szPage, mxFrame, nPage, aFrameCksum[2], aSalt[2],
# aCksum[2]. Native byte order (the file is shared memory, never moved between machines).
_INDEX = struct.Struct("=IIIBBHII8s8s8s")
INDEX_COPY_SIZE = 48


@dataclass(frozen=True, slots=True)
class IndexHeader:
    max_frame: int  # frames 1..max_frame of the WAL are committed (0: none)
    salt_bytes: bytes  # the salts of the generation the index describes, as the WAL header stores them
    backfilled: int = 0  # frames 1..backfilled are copied into the database file (WalCkptInfo.nBackfill)

    @property
    def fully_backfilled(self) -> bool:
        """Every committed frame is in the database file too. A reader that starts now reads the
        file alone and does not hold the WAL: the next writer may restart it over its frames."""
        return self.max_frame > 0 and self.backfilled >= self.max_frame

    @property
    def salts(self) -> tuple[int, int]:
        s1, s2 = struct.unpack(">II", self.salt_bytes)
        return s1, s2


def parse_index_header(data: bytes) -> IndexHeader | None:
    """The WAL index header from the first 96 bytes of `-shm` (and, given 100, the checkpoint
    info's nBackfill after it); None when it is not initialised or its two copies differ (a
    writer is updating it: read again later)."""
    if len(data) < 2 * INDEX_COPY_SIZE or data[:INDEX_COPY_SIZE] != data[INDEX_COPY_SIZE : 2 * INDEX_COPY_SIZE]:
        return None
    _ver, _unused, _change, is_init, _big, _sz, mx_frame, _npage, _fck, salt, _ck = _INDEX.unpack_from(data)
    if not is_init:
        return None
    backfilled = struct.unpack_from("=I", data, 2 * INDEX_COPY_SIZE)[0] if len(data) >= 100 else 0
    return IndexHeader(mx_frame, salt, backfilled)
