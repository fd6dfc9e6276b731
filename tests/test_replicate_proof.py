"""The replicator's proof of a built file (`prove`), its page-checksum state (`PageMap`) and its
local state directory (`LocalState`).

Files are built with the real encoder from an `Intent`'s header; each refusal names its reason.
"""

from __future__ import annotations

import dataclasses
import io
import os
import random
import subprocess
import sys
import textwrap
from array import array
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ltxkit.format.checksum import CHECKSUM_FLAG, database_checksum, page_checksum
from ltxkit.format.encoder import LTXWriter, encode_file
from ltxkit.format.errors import LTXError
from ltxkit.format.schema import FLAG_NO_CHECKSUM, Header, lock_pgno
from ltxkit.replicate.pagemap import PageMap
from ltxkit.replicate.proof import Intent, ProofError, prove, prove_pages
from ltxkit.replicate.state import AlreadyRunning, LocalState, Position, Saved

TS = 1_700_000_000_000
PS = 512

Db = dict[int, bytes]  # pgno -> page: one database state


# ---- helpers ------------------------------------------------------------------------------------


def _page(rng: random.Random, page_size: int) -> bytes:
    """Random bytes then zeros: LZ4 really compresses part of it."""
    n = rng.randrange(page_size + 1)
    return rng.randbytes(n) + bytes(page_size - n)


def _db(seed: int, commit: int, page_size: int = PS) -> Db:
    rng = random.Random(seed)
    return {p: _page(rng, page_size) for p in range(1, commit + 1) if p != lock_pgno(page_size)}


def _map(db: Db, page_size: int) -> PageMap:
    """The state of `db`, built directly (not through `PageMap.after`)."""
    commit = max(db, default=0)
    sums = array("Q", [page_checksum(p, db[p]) if p in db else 0 for p in range(commit + 1)])
    return PageMap(page_size, sums)


def _source_sum(db: Db, page_size: int) -> int:
    return database_checksum(db.items(), lock_pgno(page_size))


def _intent(txid: int, new_db: Db, written: Db, *, full: bool, page_size: int = PS) -> Intent:
    return Intent(
        txid=txid,
        page_size=page_size,
        commit=max(new_db, default=0),
        full=full,
        page_sums={p: page_checksum(p, d) for p, d in written.items()},
        source_checksum=_source_sum(new_db, page_size),
    )


def _encode(intent: Intent, written: Db, *, header: Header | None = None) -> bytes:
    return encode_file(header or intent.header(timestamp=TS), sorted(written.items()))


def _prove(data: bytes, intent: Intent, previous: PageMap | None) -> PageMap:
    return prove(io.BytesIO(data), intent, previous)


def _refused(data: bytes, intent: Intent, previous: PageMap | None) -> ProofError:
    with pytest.raises(ProofError) as info:
        _prove(data, intent, previous)
    return info.value


def _increment(seed: int = 1) -> tuple[Db, PageMap, Db, Db]:
    """A 12-page previous state and a transition rewriting pages 1, 4 and 9."""
    old = _db(seed, 12)
    rng = random.Random(seed + 1000)
    written = {p: _page(rng, PS) for p in (1, 4, 9)}
    new = old | written
    return old, _map(old, PS), new, written


# ---- proofs that hold ---------------------------------------------------------------------------


@pytest.mark.parametrize("page_size", [512, 4096])
def test_snapshot_at_txid_1_proves(page_size: int) -> None:
    db = _db(7, 20, page_size)
    intent = _intent(1, db, db, full=True, page_size=page_size)
    data = _encode(intent, db)
    after = _prove(data, intent, None)
    assert after.page_size == page_size
    assert after.commit == 20
    assert after.checksum() == database_checksum(db.items(), lock_pgno(page_size))
    assert after == _map(db, page_size)
    assert after.missing() == []


def test_full_file_at_a_later_txid_proves() -> None:
    db = _db(8, 15)
    intent = _intent(5, db, db, full=True)
    data = _encode(intent, db)
    after = _prove(data, intent, None)
    assert after.checksum() == database_checksum(db.items(), lock_pgno(PS))
    assert after == _map(db, PS)
    # a previous state of another size does not matter to a full file
    assert _prove(data, intent, _map(_db(9, 3, 4096), 4096)) == after


def test_full_file_of_an_empty_database_cannot_be_encoded() -> None:
    """commit 0 with the no-checksum flag: the encoder (as the reference) refuses to write it."""
    intent = _intent(1, {}, {}, full=True)
    with pytest.raises(ValueError):
        _encode(intent, {})


def test_increment_proves() -> None:
    _, previous, new, written = _increment()
    intent = _intent(6, new, written, full=False)
    after = _prove(_encode(intent, written), intent, previous)
    assert after == _map(new, PS)
    assert after.checksum() == _source_sum(new, PS)
    # the previous map is not changed by the proof
    assert previous != after
    assert previous.commit == 12


def test_increment_with_no_pages_proves() -> None:
    old = _db(2, 5)
    intent = _intent(3, old, {}, full=False)
    after = _prove(_encode(intent, {}), intent, _map(old, PS))
    assert after == _map(old, PS)


def test_growth_holding_every_new_page_proves() -> None:
    old = _db(3, 5)
    rng = random.Random(33)
    written = {p: _page(rng, PS) for p in (1, 6, 7, 8)}
    new = old | written
    intent = _intent(2, new, written, full=False)
    after = _prove(_encode(intent, written), intent, _map(old, PS))
    assert after.commit == 8
    assert after == _map(new, PS)
    assert after.missing() == []


def test_shrink_proves_and_drops_the_pages_above_commit() -> None:
    old = _db(4, 10)
    rng = random.Random(44)
    written = {1: _page(rng, PS), 3: _page(rng, PS)}
    new = {p: d for p, d in (old | written).items() if p <= 6}
    intent = _intent(9, new, written, full=False)
    assert intent.commit == 6
    after = _prove(_encode(intent, written), intent, _map(old, PS))
    assert after.commit == 6
    assert len(after.sums) == 7
    assert after == _map(new, PS)
    assert after.checksum() == _source_sum(new, PS)


def test_prove_reads_from_a_real_file(tmp_path: Path) -> None:
    db = _db(5, 9)
    intent = _intent(1, db, db, full=True)
    path = tmp_path / "f.ltx"
    with open(path, "wb") as fh:
        writer = LTXWriter(fh, intent.header(timestamp=TS, wal=(32, 4096, 1, 2)))
        for p, d in sorted(db.items()):
            writer.write_page(p, d)
        writer.close()
    with open(path, "rb") as fh:
        assert prove(fh, intent, None) == _map(db, PS)


def test_intent_header() -> None:
    intent = _intent(5, _db(1, 3), {}, full=False)
    h = intent.header(timestamp=TS, wal=(32, 1000, 7, 8))
    assert h.flags == FLAG_NO_CHECKSUM
    assert (h.min_txid, h.max_txid, h.commit, h.page_size, h.timestamp) == (5, 5, 3, PS, TS)
    assert (h.wal_offset, h.wal_size, h.wal_salt1, h.wal_salt2) == (32, 1000, 7, 8)
    assert h.problems() == []


def test_intent_spanning_several_txids() -> None:
    """A compaction's intent: TXIDs first_txid..txid in the header, the same proof otherwise."""
    _, previous, new, written = _increment()
    intent = dataclasses.replace(_intent(6, new, written, full=False), first_txid=3)
    header = intent.header(timestamp=TS)
    assert (header.min_txid, header.max_txid) == (3, 6)
    data = _encode(intent, written)
    assert _prove(data, intent, previous) == _map(new, PS)
    assert prove_pages(io.BytesIO(data), intent) == intent.page_sums
    single = _encode(_intent(6, new, written, full=False), written)  # TXIDs 6-6
    assert _refused(single, intent, previous).reason == "proof-header"
    with pytest.raises(ProofError) as info:
        prove_pages(io.BytesIO(single), intent)
    assert info.value.reason == "proof-header"


# ---- refusals -----------------------------------------------------------------------------------


def test_page_differing_from_the_source_is_refused() -> None:
    _, previous, new, written = _increment()
    intent = _intent(6, new, written, full=False)
    changed = dict(written)
    changed[4] = bytes([written[4][0] ^ 1]) + written[4][1:]
    err = _refused(_encode(intent, changed), intent, previous)
    assert err.reason == "proof-page-mismatch"
    assert "page 4" in str(err)
    assert str(err).startswith("proof-page-mismatch: ")


def test_page_not_in_the_intent_is_refused() -> None:
    _, previous, new, written = _increment()
    intent = _intent(6, new, written, full=False)
    extra = written | {5: new[5]}
    assert _refused(_encode(intent, extra), intent, previous).reason == "proof-unexpected-page"


def test_page_missing_from_the_file_is_refused() -> None:
    _, previous, new, written = _increment()
    intent = _intent(6, new, written, full=False)
    fewer = {p: d for p, d in written.items() if p != 9}
    err = _refused(_encode(intent, fewer), intent, previous)
    assert err.reason == "proof-page-missing"
    assert "9" in str(err)


def test_snapshot_hole_is_refused() -> None:
    db = _db(6, 8)
    holed = {p: d for p, d in db.items() if p != 5}
    intent = _intent(5, db, holed, full=True)  # TXID 5: the encoder allows holes in a non-snapshot
    assert _refused(_encode(intent, holed), intent, None).reason == "proof-snapshot-hole"


def test_increment_without_previous_state_is_refused() -> None:
    _, _, new, written = _increment()
    intent = _intent(6, new, written, full=False)
    assert _refused(_encode(intent, written), intent, None).reason == "proof-no-previous-state"


def _header_with(intent: Intent, **changes: int) -> Header:
    h = intent.header(timestamp=TS)
    fields = {name: getattr(h, name) for name in h.__dataclass_fields__}
    fields.update(changes)
    return Header(**fields)


@pytest.mark.parametrize(
    "changes",
    [
        {"commit": 13},
        {"commit": 11},
        {"min_txid": 7, "max_txid": 7},
        {"min_txid": 5, "max_txid": 5},
        {"min_txid": 5, "max_txid": 6},
    ],
    ids=["commit-higher", "commit-lower", "txid-next", "txid-previous", "txid-range"],
)
def test_header_mismatch_is_refused(changes: dict[str, int]) -> None:
    _, previous, new, written = _increment()
    intent = _intent(6, new, written, full=False)
    err = _refused(_encode(intent, written, header=_header_with(intent, **changes)), intent, previous)
    assert err.reason == "proof-header"


def test_checksum_tracking_flags_are_refused() -> None:
    db = _db(10, 6)
    intent = _intent(1, db, db, full=True)
    tracked = Header.snapshot(PS, 6, 1, TS, checksums=True)
    assert tracked.flags != FLAG_NO_CHECKSUM
    err = _refused(_encode(intent, db, header=tracked), intent, None)
    assert err.reason == "proof-header"
    assert "flags" in str(err)


def test_checksum_tracking_increment_is_refused() -> None:
    old, previous, new, written = _increment()
    intent = _intent(6, new, written, full=False)
    tracked = _header_with(intent, flags=0, pre_apply_checksum=_source_sum(old, PS))
    data = encode_file(tracked, sorted(written.items()), _source_sum(new, PS))
    assert _refused(data, intent, previous).reason == "proof-header"


def test_wrong_page_size_in_header_is_refused() -> None:
    db = _db(11, 4, 1024)
    intent = _intent(1, db, db, full=True, page_size=PS)
    header = Header.snapshot(1024, 4, 1, TS, checksums=False)
    assert _refused(_encode(intent, db, header=header), intent, None).reason == "proof-header"


def test_growth_without_the_new_page_is_refused() -> None:
    old = _db(12, 5)
    rng = random.Random(120)
    written = {p: _page(rng, PS) for p in (6, 8)}  # page 7 is new but not in the file
    new = old | written | {7: bytes(PS)}
    intent = _intent(2, new, written, full=False)
    assert intent.commit == 8
    err = _refused(_encode(intent, written), intent, _map(old, PS))
    assert err.reason == "proof-growth-missing"
    assert "7" in str(err)


def test_wrong_source_checksum_is_refused() -> None:
    _, previous, new, written = _increment()
    intent = _intent(6, new, written, full=False)
    wrong = dataclasses.replace(intent, source_checksum=intent.source_checksum ^ 0x10)
    assert _refused(_encode(wrong, written), wrong, previous).reason == "proof-state-mismatch"


def test_previous_state_that_is_not_the_replicas_is_refused() -> None:
    """The file is right, but the previous state it is applied to is not the one the source left."""
    old, _, new, written = _increment()
    other = dict(old)
    other[2] = bytes(PS)
    intent = _intent(6, new, written, full=False)
    assert _refused(_encode(intent, written), intent, _map(other, PS)).reason == "proof-state-mismatch"


def test_page_size_different_from_previous_is_refused() -> None:
    _, _, new, written = _increment()
    intent = _intent(6, new, written, full=False)
    previous = _map(_db(13, 12, 1024), 1024)
    assert _refused(_encode(intent, written), intent, previous).reason == "proof-page-size"


# (where, byte offset from the start (>= 0) or the end (< 0), the code the decoder reports).
# The file of `_increment`: header 0..100, page 1's frame from 100 (pgno u32, flags u16, size u32,
# LZ4 block), pages 4 and 9, the terminator, the page index, its size, the trailer.
_DECODER_FLIPS = [
    ("timestamp", 39, "file-checksum-mismatch"),
    ("pre-apply-checksum", 47, "bad-header"),
    ("node-id", 79, "file-checksum-mismatch"),
    ("frame-pgno", 103, "bad-page-header"),
    ("frame-flags", 105, "page-decompress-failed"),
    ("frame-size", 109, "page-decompress-failed"),
    ("index", -28, "index-mismatch"),
    ("index-size", -17, "index-mismatch"),
    ("post-apply-checksum", -9, "file-checksum-mismatch"),
    ("file-checksum", -1, "file-checksum-mismatch"),
]


@pytest.mark.parametrize(("offset", "code"), [f[1:] for f in _DECODER_FLIPS], ids=[f[0] for f in _DECODER_FLIPS])
def test_flipped_byte_is_refused_with_the_decoder_code(offset: int, code: str) -> None:
    _, previous, new, written = _increment()
    intent = _intent(6, new, written, full=False)
    data = bytearray(_encode(intent, written))
    data[offset] ^= 0x01
    err = _refused(bytes(data), intent, previous)
    assert not err.reason.startswith("proof-")
    assert err.reason == code
    assert isinstance(err.__cause__, LTXError)
    assert err.__cause__.code == err.reason
    assert str(err).startswith(f"{code}: ")


def test_flipped_literal_in_a_page_is_a_page_mismatch() -> None:
    """A flip that still decompresses changes the page: prove compares each page as it streams,
    so it names the page before the decoder reaches the file checksum."""
    _, previous, new, written = _increment()
    intent = _intent(6, new, written, full=False)
    data = bytearray(_encode(intent, written))
    data[115] ^= 0x01  # a literal byte of page 1's LZ4 block
    assert _refused(bytes(data), intent, previous).reason == "proof-page-mismatch"


def test_huge_size_prefix_is_refused_without_allocating_it() -> None:
    """A damaged size prefix claiming a ~4 GiB LZ4 block must be refused as a defect (the stream
    ends long before), not make the decoder allocate the claimed size first.

    Run in a child limited to 1 GiB of address space, so the allocation fails fast instead of
    zero-filling gigabytes.
    """
    script = textwrap.dedent(
        """
        import io, resource, sys
        from ltxkit.replicate.proof import ProofError, prove
        sys.path.insert(0, sys.argv[1])
        from tests.test_replicate_proof import _encode, _increment, _intent
        _, previous, new, written = _increment()
        intent = _intent(6, new, written, full=False)
        data = bytearray(_encode(intent, written))
        data[106:110] = b"\\xff\\xff\\xff\\xff"  # page 1's LZ4 block size
        resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))
        try:
            prove(io.BytesIO(bytes(data)), intent, previous)
        except ProofError as exc:
            print("ProofError", exc.reason)
        except MemoryError:
            print("MemoryError")
        """
    )
    root = str(Path(__file__).resolve().parent.parent)
    done = subprocess.run([sys.executable, "-c", script, root], capture_output=True, text=True, timeout=60, cwd=root)
    assert done.returncode == 0, done.stderr
    verdict = done.stdout.split()
    assert verdict[0] == "ProofError", done.stdout
    assert not verdict[1].startswith("proof-")  # a decoder code: truncated, page-decompress-failed...


def test_flipped_byte_anywhere_is_refused_or_harmless() -> None:
    """Every single-bit flip is refused, except flips in an LZ4 block that decompress to the very
    same page (the file checksum covers the decompressed pages, as in LTX itself): those must
    reach exactly the intended state."""
    _, previous, new, written = _increment()
    intent = _intent(6, new, written, full=False)
    data = _encode(intent, written)
    expected = _map(new, PS)
    harmless = []
    for offset in range(len(data)):
        for bit in (0x01, 0x80):
            damaged = bytearray(data)
            damaged[offset] ^= bit
            try:
                result = _prove(bytes(damaged), intent, previous)
            except ProofError:
                continue
            assert result == expected, offset
            assert 110 <= offset < len(data) - 16 - 8, offset  # only ever inside the page block
            harmless.append(offset)
    assert len(harmless) < 10


def test_truncated_file_is_refused() -> None:
    _, previous, new, written = _increment()
    intent = _intent(6, new, written, full=False)
    data = _encode(intent, written)
    for n in [0, 1, 4, 50, 99, 100, 101, 110, *range(len(data) - 40, len(data))]:
        err = _refused(data[:n], intent, previous)
        assert not err.reason.startswith("proof-"), (n, err)


def test_trailing_bytes_are_refused() -> None:
    _, previous, new, written = _increment()
    intent = _intent(6, new, written, full=False)
    err = _refused(_encode(intent, written) + b"\x00", intent, previous)
    assert err.reason == "trailing-bytes"


# ---- the property -------------------------------------------------------------------------------


@st.composite
def _transitions(draw: st.DrawFn) -> tuple[int, Db, Db, Db, bool]:
    page_size = draw(st.sampled_from([512, 4096]))
    n_old = draw(st.integers(1, 40))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = random.Random(seed)
    old = {p: _page(rng, page_size) for p in range(1, n_old + 1)}
    n_new = draw(st.one_of(st.just(n_old), st.integers(1, 50)))
    rewritten = draw(st.sets(st.integers(1, n_new), max_size=n_new))
    rewritten |= set(range(n_old + 1, n_new + 1))  # growth: every new page is written
    written = {p: _page(rng, page_size) for p in sorted(rewritten)}
    new = {p: d for p, d in old.items() if p <= n_new} | written
    full = draw(st.booleans())
    if full:
        written = dict(new)
    return page_size, old, new, written, full


@settings(deadline=None, max_examples=40)
@given(t=_transitions(), data=st.data())
def test_true_transition_proves_and_damage_is_refused(t: tuple[int, Db, Db, Db, bool], data: st.DataObject) -> None:
    page_size, old, new, written, full = t
    txid = data.draw(st.integers(2, 1000)) if not full or data.draw(st.booleans()) else 1
    intent = _intent(txid, new, written, full=full, page_size=page_size)
    previous = _map(old, page_size)
    encoded = _encode(intent, written)
    expected = _map(new, page_size)

    after = _prove(encoded, intent, previous)
    assert after == expected
    assert after.checksum() == database_checksum(new.items(), lock_pgno(page_size))
    assert previous == _map(old, page_size)  # untouched

    offset = data.draw(st.integers(0, len(encoded) - 1), label="offset")
    xor = data.draw(st.integers(1, 255), label="xor")
    damaged = bytearray(encoded)
    damaged[offset] ^= xor
    try:
        result = _prove(bytes(damaged), intent, previous)
    except ProofError:
        return
    # accepted only where it cannot matter: an LZ4 block that decodes to the same page (the file
    # checksum covers decompressed pages); the state reached must be exactly the intended one
    assert result == expected


# ---- PageMap ------------------------------------------------------------------------------------


def test_pagemap_empty() -> None:
    m = PageMap.empty(4096)
    assert m.commit == 0
    assert m.checksum() == CHECKSUM_FLAG == database_checksum([], lock_pgno(4096))
    assert m.missing() == []
    assert m.lock_pgno == lock_pgno(4096)


def test_pagemap_after() -> None:
    m = PageMap.empty(PS).after(3, [(1, 11), (2, 12), (3, 13)])
    assert list(m.sums) == [0, 11, 12, 13]
    grown = m.after(5, [(2, 22), (5, 15)])
    assert list(grown.sums) == [0, 11, 22, 13, 0, 15]
    assert grown.missing() == [4]
    assert list(m.sums) == [0, 11, 12, 13]  # `after` never changes the map it starts from
    shrunk = grown.after(2, [])
    assert list(shrunk.sums) == [0, 11, 22]
    assert shrunk.commit == 2
    regrown = shrunk.after(4, [(3, 33)])
    assert list(regrown.sums) == [0, 11, 22, 33, 0]  # the dropped page 4 does not come back
    assert regrown.missing() == [4]
    assert PageMap.empty(PS).after(0, []).commit == 0


def test_pagemap_checksum_matches_database_checksum() -> None:
    db = _db(20, 30)
    m = _map(db, PS)
    assert m.checksum() == database_checksum(db.items(), lock_pgno(PS))
    assert m.checksum() & CHECKSUM_FLAG


@pytest.mark.parametrize("page_size", [512, 65536])
def test_pagemap_lock_page_is_never_missing(page_size: int) -> None:
    lock = lock_pgno(page_size)
    assert lock == 0x40000000 // page_size + 1
    value = CHECKSUM_FLAG | 0x1234
    sums = array("Q", [0]) + array("Q", [value]) * (lock + 2)
    sums[lock] = 0
    m = PageMap(page_size, sums)
    assert m.commit == lock + 2
    assert m.missing() == []
    sums[lock - 1] = 0
    sums[lock + 2] = 0
    assert m.missing() == [lock - 1, lock + 2]


def test_pagemap_bytes_round_trip() -> None:
    for m in (PageMap.empty(PS), _map(_db(21, 17), PS), PageMap.empty(1024).after(4, [(2, CHECKSUM_FLAG | 9)])):
        data = m.to_bytes()
        assert len(data) == 8 * (m.commit + 1)
        back = PageMap.from_bytes(m.page_size, data)
        assert back == m
        assert back.checksum() == m.checksum()
    assert PageMap.from_bytes(PS, b"") == PageMap.empty(PS)


# ---- LocalState ---------------------------------------------------------------------------------


def _saved(position: Position | None) -> Saved:
    return Saved(
        replica="file:///tmp/replica",
        txid=0x1234,
        key="ltx/0/0000000000001234-0000000000001234.ltx",
        size=4321,
        file_checksum=CHECKSUM_FLAG | 0xABCDEF,
        database=(64769, 123456),
        position=position,
        pages=_map(_db(30, 25), PS),
    )


@pytest.mark.parametrize(
    "position",
    [None, Position((0x11223344, 0xAABBCCDD), 32 + 3 * (PS + 24), (0xFFFFFFFF, 7))],
    ids=["no-position", "position"],
)
def test_state_save_load_round_trip(tmp_path: Path, position: Position | None) -> None:
    db = tmp_path / "app.db"
    state = LocalState(db)
    assert state.dir == tmp_path / ".app.db-ltxkit"
    state.lock()
    try:
        assert state.load() == (None, "no saved state")
        saved = _saved(position)
        state.save(saved)
        loaded, why = LocalState(db).load()
        assert why == ""
        assert loaded == saved
        assert [p.name for p in state.dir.iterdir() if p.name.endswith(".tmp")] == []
        # saving again replaces the state
        saved2 = _saved(None)
        saved2.txid += 1
        state.save(saved2)
        assert state.load() == (saved2, "")
    finally:
        state.unlock()


def test_state_does_not_save_any_generation(tmp_path: Path) -> None:
    state = LocalState(tmp_path / "app.db")
    state.lock()
    try:
        saved = _saved(Position((1, 2), 32, (3, 4), any_generation=True))
        state.save(saved)
        loaded, _ = state.load()
        assert loaded is not None and loaded.position is not None
        assert loaded.position == Position((1, 2), 32, (3, 4), any_generation=False)
    finally:
        state.unlock()


def test_state_damage_is_detected(tmp_path: Path) -> None:
    state = LocalState(tmp_path / "app.db")
    state.lock()
    try:
        state.save(_saved(Position((5, 6), 1000, (7, 8))))
        good = state.path.read_bytes()
        step = max(1, len(good) // 150)
        for offset in [*range(0, len(good), step), len(good) - 1]:
            bad = bytearray(good)
            bad[offset] ^= 0x04
            state.path.write_bytes(bytes(bad))
            loaded, why = state.load()
            assert loaded is None, offset
            assert "damaged" in why, (offset, why)
        for n in (0, 10, 40, len(good) - 9, len(good) - 1):
            state.path.write_bytes(good[:n])
            loaded, why = state.load()
            assert loaded is None and "damaged" in why, n
        state.path.write_bytes(good + b"\x00")
        assert state.load()[0] is None
        state.path.write_bytes(good)
        assert state.load()[0] == _saved(Position((5, 6), 1000, (7, 8)))
    finally:
        state.unlock()


def test_lock_is_exclusive(tmp_path: Path) -> None:
    db = tmp_path / "app.db"
    first, second = LocalState(db), LocalState(db)
    first.lock()
    try:
        with pytest.raises(AlreadyRunning) as info:
            second.lock()
        assert str(os.getpid()) in str(info.value)
        assert (first.dir / "lock").read_text().strip() == str(os.getpid())
    finally:
        first.unlock()
    second.lock()  # free again once the holder lets go
    try:
        with pytest.raises(AlreadyRunning):
            first.lock()
    finally:
        second.unlock()
    first.lock()
    first.unlock()
    first.unlock()  # unlocking twice is harmless


def test_locks_of_different_databases_do_not_conflict(tmp_path: Path) -> None:
    a, b = LocalState(tmp_path / "a.db"), LocalState(tmp_path / "b.db")
    a.lock()
    b.lock()
    a.unlock()
    b.unlock()


def test_a_key_another_replicator_published_first_is_told_apart_from_our_own_retry(tmp_path: Path) -> None:
    """Create-only publishing: an existing object with our file's checksum is our own PUT that
    landed before a retry (fine); any other is another replicator's, which stops the replicator
    (two ltxkit processes on one S3 replica used to take turns, each answering with a full file)."""
    from ltxkit.replica.storage import LocalStorage
    from ltxkit.replicate.publish import TakenByAnother, build_and_publish

    (tmp_path / "r" / "ltx").mkdir(parents=True)
    storage = LocalStorage(tmp_path / "r")
    key = "ltx/0/0000000000000001-0000000000000001.ltx"
    header = Header.snapshot(512, 1, 1, 1_700_000_000_000, checksums=False)

    def pages(fill: int):  # type: ignore[no-untyped-def]
        return lambda w: w.write_page(1, bytes([fill]) * 512)

    size, checksum, _ = build_and_publish(storage, key, header, pages(1), lambda p: None, created_ms=1)
    theirs = (tmp_path / "r" / key).read_bytes()
    # the same file again (a retried PUT that had landed): taken as published, nothing changed
    assert build_and_publish(storage, key, header, pages(1), lambda p: None, created_ms=1)[:2] == (size, checksum)
    with pytest.raises(TakenByAnother):
        build_and_publish(storage, key, header, pages(2), lambda p: None, created_ms=1)
    assert (tmp_path / "r" / key).read_bytes() == theirs
