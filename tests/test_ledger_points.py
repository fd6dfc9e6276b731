"""Every restore point proven by the ledger, not only the latest: compacted levels, pruned L0 files,
snapshots, and a tampered record of a TXID no latest restore reads.

The replicas are built with ltxkit's encoder and records computed from the model database's own
pages (an independent path from the replicator's proof); `tests/test_ledger.py` and
`tests/test_replicate.py` cover records the real replicator wrote.
"""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from ltxkit.format.checksum import database_checksum
from ltxkit.format.decoder import read_page_index
from ltxkit.format.errors import Code
from ltxkit.format.schema import lock_pgno
from ltxkit.replica import ledger
from ltxkit.replica.storage import open_storage
from ltxkit.verify.engine import check_replica
from tests.replica_builder import Db, write_ltx


class History:
    """A model database written as L0 files, with the state after every TXID kept."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.db = Db(sound=True)
        self.states: dict[int, dict[int, bytes]] = {0: {}}
        self.commits: dict[int, int] = {0: 0}

    def commit(self, pgnos: list[int], commit: int | None = None) -> None:
        changed = self.db.write(pgnos, commit)
        txid = self.db.txid
        self.states[txid] = dict(self.db.pages)
        self.commits[txid] = self.db.commit
        first = txid == 1
        self.publish(0, txid, txid, dict(self.db.pages) if first else changed)

    def checksum(self, txid: int) -> int:
        pages = self.states[txid]
        return database_checksum(sorted(pages.items()), lock_pgno(self.db.page_size))

    def merged(self, lo: int, hi: int) -> dict[int, bytes]:
        """The pages files lo..hi write, newest winning, as a compaction of them holds."""
        out: dict[int, bytes] = {}
        for t in range(lo, hi + 1):
            before = self.states[t - 1]
            for p, data in self.states[t].items():
                if before.get(p) != data or p > self.commits[t - 1]:
                    out[p] = data
        return {p: d for p, d in out.items() if p <= self.commits[hi]}

    def publish(self, level: int, lo: int, hi: int, pages: dict[int, bytes] | None = None) -> Path:
        if pages is None:
            pages = dict(self.states[hi]) if lo == 1 else self.merged(lo, hi)
        path = write_ltx(self.root, level, lo, hi, pages, self.commits[hi])
        data = path.read_bytes()
        entries, trailer = read_page_index(io.BytesIO(data), len(data))
        record = ledger.Record(
            level=level,
            min_txid=lo,
            max_txid=hi,
            page_size=self.db.page_size,
            commit=self.commits[hi],
            pages=len(entries),
            file_checksum=trailer.file_checksum,
            before=None if lo == 1 else self.checksum(lo - 1),
            after=self.checksum(hi),
        )
        ledger.put(open_storage(str(self.root), create=True), record)
        return path


def _verify(root: Path):  # type: ignore[no-untyped-def]
    summary = check_replica(open_storage(str(root)), str(root))
    codes = {str(f.code) for f in summary.findings} | {str(x.code) for fc in summary.files for x in fc.findings}
    return summary, codes


def _compacted(root: Path) -> History:
    h = History(root)
    h.commit(list(range(1, 9)))
    for t in range(2, 9):
        h.commit([3, t + 6])
    h.publish(1, 1, 4)
    h.publish(1, 5, 8)
    h.publish(9, 1, 6)  # a snapshot in the middle
    return h


def test_every_restore_point_at_every_level_is_proven(tmp_path: Path) -> None:
    _compacted(tmp_path)
    summary, codes = _verify(tmp_path)
    assert codes == set(), codes
    assert summary.proven and summary.proven_points == 8


def test_a_tampered_record_no_latest_restore_reads_is_caught(tmp_path: Path) -> None:
    _compacted(tmp_path)
    # TXID 2's L0 file: the latest restore goes through L1 1-4 (or the snapshot), never through it
    path = tmp_path / "ledger" / "0" / "0000000000000002-0000000000000002.json"
    rec = ledger.decode(path.read_bytes())
    path.write_bytes(ledger.encode(dataclasses.replace(rec, after=rec.after ^ 0x10)))
    summary, codes = _verify(tmp_path)
    assert codes == {str(Code.LEDGER_MISMATCH)}
    bad = [f for f in summary.findings if f.code == Code.LEDGER_MISMATCH]
    assert len(bad) == 1 and bad[0].context["key"].endswith("0000000000000002-0000000000000002.ltx")
    assert not summary.proven and summary.proven_points == 7


def test_a_middle_file_rewritten_with_other_pages_and_its_record_rebound_is_caught(tmp_path: Path) -> None:
    h = _compacted(tmp_path)
    # a well-formed L1 5-8 holding other bytes for page 3, with a record claiming the true state
    pages = h.merged(5, 8)
    pages[3] = bytes(b ^ 0x5A for b in pages[3])
    key = tmp_path / "ledger" / "1" / "0000000000000005-0000000000000008.json"
    true_after = ledger.decode(key.read_bytes()).after
    key.unlink()
    (tmp_path / "ltx" / "1" / "0000000000000005-0000000000000008.ltx").unlink()
    h.publish(1, 5, 8, pages)  # its record now names this file's checksum ...
    rec = ledger.decode(key.read_bytes())
    key.write_bytes(ledger.encode(dataclasses.replace(rec, after=true_after)))  # ... and the true state
    summary, codes = _verify(tmp_path)
    assert str(Code.LEDGER_MISMATCH) in codes
    assert any(f.context.get("key", "").endswith("0000000000000005-0000000000000008.ltx") for f in summary.findings)


def test_the_ledger_check_reads_no_file_twice(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The file checks keep every page's checksum on a replica with a ledger, and the ledger check
    works from those: no file is decoded a second time, serially or in worker processes, and a
    tampered record is still named."""
    from ltxkit.format.checksum import page_checksum
    from ltxkit.verify import engine, ledger_check

    _compacted(tmp_path)
    decoded_again: list[str] = []
    real = ledger_check.LTXReader

    class Counting(real):  # type: ignore[misc,valid-type]
        def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
            decoded_again.append("stream")
            super().__init__(*args, **kwargs)

        @classmethod
        def from_bytes(cls, *args, **kwargs):  # type: ignore[no-untyped-def]
            decoded_again.append("bytes")
            return real.from_bytes(*args, **kwargs)

    monkeypatch.setattr(ledger_check, "LTXReader", Counting)
    for jobs in (1, 2):
        monkeypatch.setattr(engine, "PARALLEL_MIN_BYTES", 0 if jobs > 1 else 1 << 60)
        summary = check_replica(open_storage(str(tmp_path)), str(tmp_path), jobs=jobs)
        assert summary.proven and summary.proven_points == 8
        assert decoded_again == []
        for fc in summary.files:  # what the checks kept is each page's checksum, in page order
            storage = open_storage(str(tmp_path))
            assert fc.key is not None and fc.page_sums is not None
            pages = list(real.from_bytes(storage.read_bytes(fc.key)).pages())
            assert list(fc.page_sums) == [page_checksum(p, d) for p, d in pages]
    path = tmp_path / "ledger" / "0" / "0000000000000002-0000000000000002.json"
    rec = ledger.decode(path.read_bytes())
    path.write_bytes(ledger.encode(dataclasses.replace(rec, after=rec.after ^ 0x10)))
    summary, codes = _verify(tmp_path)
    assert codes == {str(Code.LEDGER_MISMATCH)} and decoded_again == []
    # --quick reads no page, so keeps no checksums (a full check keeps them for every replica:
    # copies of one TXID range are compared from them, `verify.agreement`)
    summary = check_replica(open_storage(str(tmp_path)), str(tmp_path), quick=True)
    assert all(fc.page_sums is None for fc in summary.files)


def test_pruned_l0_files_leave_the_covering_level_proven(tmp_path: Path) -> None:
    _compacted(tmp_path)
    for t in range(1, 5):  # retention removed L0 1..4, which L1 1-4 covers
        name = f"{t:016x}-{t:016x}"
        (tmp_path / "ltx" / "0" / f"{name}.ltx").unlink()
        (tmp_path / "ledger" / "0" / f"{name}.json").unlink()
    summary, codes = _verify(tmp_path)
    assert codes <= {str(Code.TXID_GAP_BRIDGED)}, codes
    assert summary.proven and summary.proven_points == 5  # TXID 4 (L1 1-4), 5..8 (L0; the snapshot is 6)


def test_files_without_records_are_one_gap_warning(tmp_path: Path) -> None:
    _compacted(tmp_path)
    for t in (6, 7, 8):  # e.g. Litestream took over after TXID 5
        (tmp_path / "ledger" / "0" / f"{t:016x}-{t:016x}.json").unlink()
    summary, codes = _verify(tmp_path)
    assert codes == {str(Code.LEDGER_GAP)}
    gaps = [f for f in summary.findings if f.code == Code.LEDGER_GAP]
    assert len(gaps) == 1 and gaps[0].context["count"] == 3
    assert not summary.proven


@settings(max_examples=25, deadline=None)
@given(
    steps=st.lists(
        st.tuples(st.lists(st.integers(1, 40), min_size=1, max_size=6), st.one_of(st.none(), st.integers(6, 40))),
        min_size=2,
        max_size=12,
    ),
    cuts=st.lists(st.integers(1, 12), max_size=4),
    tamper=st.one_of(st.none(), st.integers(0, 200)),
)
def test_property_records_prove_every_point_and_any_altered_one_is_named(
    tmp_path_factory, steps, cuts, tamper
) -> None:  # type: ignore[no-untyped-def]
    root = tmp_path_factory.mktemp("h")
    h = History(root)
    h.commit(list(range(1, 9)))
    for pgnos, shrink in steps:
        current = h.db.commit
        if shrink is not None and shrink < current:  # a VACUUM-like shrink: only pages below it
            h.commit([p for p in pgnos if p <= shrink] or [1], shrink)
        else:  # growth writes every new page, as SQLite does
            h.commit(sorted(set(pgnos) | set(range(current + 1, max(pgnos) + 1))))
    last = h.db.txid
    bounds = sorted({c for c in cuts if c < last} | {last})
    lo = 1
    for hi in bounds:  # L1 files over consecutive ranges
        if hi >= lo:
            h.publish(1, lo, hi)
            lo = hi + 1
    records = sorted((root / "ledger").glob("*/*.json"))
    if tamper is not None:
        victim = records[tamper % len(records)]
        rec = ledger.decode(victim.read_bytes())
        victim.write_bytes(ledger.encode(dataclasses.replace(rec, after=rec.after ^ 1)))
    summary, codes = _verify(root)
    points = {int(p.stem.split("-")[1], 16) for p in records}
    if tamper is None:
        assert codes == set(), codes
        assert summary.proven and summary.proven_points == len(points)
    else:
        assert codes == {str(Code.LEDGER_MISMATCH)}, codes
        mismatches = [f for f in summary.findings if f.code == Code.LEDGER_MISMATCH]
        assert [f.context["key"].rsplit("/", 1)[1] for f in mismatches] == [victim.stem + ".ltx"]
        assert not summary.proven


def test_the_ledger_fixtures() -> None:
    fixtures = Path(__file__).resolve().parent.parent / "fixtures" / "corrupt" / "replicas"
    summary, codes = _verify(fixtures / "ledger-proven")
    assert codes == set() and summary.proven and summary.proven_points == 4
    summary, codes = _verify(fixtures / "ledger-mismatch")
    assert codes == {str(Code.LEDGER_MISMATCH)} and summary.proven_points == 3


def test_a_record_deleted_while_verify_reads_the_ledger_is_no_damage(tmp_path: Path) -> None:
    """Retention (ltxkit replicate's, after it took over from Litestream) deletes a file and its
    record between verify's listing and its read of the record: that was `ledger-damaged`, an
    error on a healthy replica; it is `changed-during-check`, a warning, as for an LTX file."""
    _compacted(tmp_path)
    storage = open_storage(str(tmp_path))
    doomed = "ledger/0/0000000000000002-0000000000000002.json"
    read = storage.read_bytes

    def deleting_first(key: str, **kwargs):  # type: ignore[no-untyped-def]
        if key == doomed:
            (tmp_path / doomed).unlink()
        return read(key, **kwargs)

    storage.read_bytes = deleting_first  # type: ignore[method-assign]
    summary = check_replica(storage, str(tmp_path))
    got = {(str(f.code), str(f.severity)) for f in summary.findings}
    assert ("changed-during-check", "warning") in got and not any(code == "ledger-damaged" for code, _ in got), got
