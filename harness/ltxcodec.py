"""A private LTX codec, kept on purpose as an independent oracle: it shares no code with
`ltxkit.format`, and `tests/test_harness_smoke.py` holds the two to the same pages, headers and
checksums on real Litestream files. Damage builders use it to rewrite files."""

from __future__ import annotations

import dataclasses
import os
import struct
from collections.abc import Callable
from pathlib import Path

import lz4.block
from fastcrc import crc64

_HDR = struct.Struct(">4sIIIQQQQqqIIQ20s")
assert _HDR.size == 100
_FRAME_HDR = struct.Struct(">IH")
_FLAG_COMPRESSED = 0x1
_CHK = 1 << 63


@dataclasses.dataclass
class _Ltx:
    """A decoded LTX file: header fields, pages in file order, trailer, frame positions."""

    flags: int
    page_size: int
    commit: int
    min_txid: int
    max_txid: int
    timestamp: int
    pre_apply: int
    wal_offset: int
    wal_size: int
    wal_salt1: int
    wal_salt2: int
    node_id: int
    pages: list[tuple[int, bytes]]
    post_apply: int = 0
    file_checksum: int = 0
    # (pgno, frame offset, frame length, payload offset, payload length) as found on disk
    frames: list[tuple[int, int, int, int, int]] = dataclasses.field(default_factory=list)

    def header_bytes(self) -> bytes:
        return _HDR.pack(
            b"LTX1",
            self.flags,
            self.page_size,
            self.commit,
            self.min_txid,
            self.max_txid,
            self.timestamp,
            self.pre_apply,
            self.wal_offset,
            self.wal_size,
            self.wal_salt1,
            self.wal_salt2,
            self.node_id,
            bytes(20),
        )


def _uvarint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _read_ltx(path: str | os.PathLike[str]) -> _Ltx:
    """Decode a (well-formed) LTX v3 file written with compressed frames."""
    data = Path(path).read_bytes()
    (magic, flags, page_size, commit, min_txid, max_txid, ts, pre, wal_off, wal_size, s1, s2, node, _r) = (
        _HDR.unpack_from(data, 0)
    )
    if magic != b"LTX1":
        raise ValueError(f"{path}: bad magic {magic!r}")
    pages: list[tuple[int, bytes]] = []
    frames: list[tuple[int, int, int, int, int]] = []
    off = _HDR.size
    while True:
        pgno, fl = _FRAME_HDR.unpack_from(data, off)
        if pgno == 0 and fl == 0:
            off += _FRAME_HDR.size
            break
        if fl != _FLAG_COMPRESSED:
            raise ValueError(f"{path}: unsupported frame flags {fl:#x} at {off}")
        (size,) = struct.unpack_from(">I", data, off + 6)
        payload_off = off + 10
        page = lz4.block.decompress(data[payload_off : payload_off + size], uncompressed_size=page_size)
        pages.append((pgno, page))
        frames.append((pgno, off, 10 + size, payload_off, size))
        off = payload_off + size
    post, chk = struct.unpack_from(">QQ", data, len(data) - 16)
    return _Ltx(
        flags,
        page_size,
        commit,
        min_txid,
        max_txid,
        ts,
        pre,
        wal_off,
        wal_size,
        s1,
        s2,
        node,
        pages,
        post,
        chk,
        frames,
    )


def _encode_ltx(f: _Ltx) -> bytes:
    """Encode ``f`` (pages in the given order) and compute the file checksum.

    Checksum = CRC-64/GO-ISO over header, each frame's 6-byte header + 4-byte size + the
    *decompressed* page, the terminator, the page index incl. its size field, and the post-apply
    checksum; stored with bit 63 set.
    """
    out = bytearray(f.header_bytes())
    crc = crc64.go_iso(bytes(out))
    index = bytearray()
    for pgno, page in f.pages:
        if len(page) != f.page_size:
            raise ValueError(f"page {pgno} has {len(page)} bytes, want {f.page_size}")
        comp = lz4.block.compress(page, store_size=False)
        prefix = _FRAME_HDR.pack(pgno, _FLAG_COMPRESSED) + struct.pack(">I", len(comp))
        index += _uvarint(pgno) + _uvarint(len(out)) + _uvarint(len(prefix) + len(comp))
        crc = crc64.go_iso(prefix + page, crc)
        out += prefix + comp
    term = bytes(6)
    out += term
    crc = crc64.go_iso(term, crc)
    index += _uvarint(0)
    index_bytes = bytes(index) + struct.pack(">Q", len(index))
    out += index_bytes
    crc = crc64.go_iso(index_bytes, crc)
    post = struct.pack(">Q", f.post_apply)
    out += post
    crc = crc64.go_iso(post, crc)
    out += struct.pack(">Q", crc | _CHK)
    return bytes(out)


def _verify_ltx_bytes(data: bytes) -> bool:
    """Recompute the file checksum of raw LTX bytes (compressed frames) and compare."""
    page_size = struct.unpack_from(">I", data, 8)[0]
    crc = crc64.go_iso(data[:100])
    off = 100
    while True:
        pgno, fl = _FRAME_HDR.unpack_from(data, off)
        if pgno == 0 and fl == 0:
            break
        (size,) = struct.unpack_from(">I", data, off + 6)
        page = lz4.block.decompress(data[off + 10 : off + 10 + size], uncompressed_size=page_size)
        crc = crc64.go_iso(data[off : off + 10] + page, crc)
        off += 10 + size
    crc = crc64.go_iso(data[off : len(data) - 8], crc)
    return (crc | _CHK) == struct.unpack(">Q", data[-8:])[0]


def _write_preserving_mtime(path: Path, data: bytes) -> None:
    """Replace a replica file's bytes but keep its mtime: the file replica client reports mtime
    as CreatedAt (Litestream sets it to the header timestamp), which -timestamp restore and
    retention use."""
    st = path.stat()
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.utime(tmp, ns=(st.st_atime_ns, st.st_mtime_ns))
    os.replace(tmp, path)


def _rewrite_ltx(path: Path, mutate: Callable[[_Ltx], None]) -> _Ltx:
    f = _read_ltx(path)
    mutate(f)
    _write_preserving_mtime(path, _encode_ltx(f))
    return f
