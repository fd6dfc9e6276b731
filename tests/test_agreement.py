"""Copies of one TXID range must agree page by page (`ltxkit.verify.agreement`): a compaction with
the lower-level files it merged, a snapshot with a restore of its TXID from the other files.

Every file can be well-formed, every checksum right, and a compaction still hold a stale page: the
latest restore then reads it, `litestream restore` succeeds, and verify passed (issue 3's audit).
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import harness as H
from ltxkit.format.decoder import LTXReader
from ltxkit.format.encoder import LTXWriter
from ltxkit.verify.agreement import chain_ending_at, compaction_inputs

ROOT = Path(__file__).resolve().parent.parent
REPLICAS = ROOT / "fixtures" / "corrupt" / "replicas"


def ltxkit(*args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ltxkit", *map(str, args)], capture_output=True, text=True, stdin=subprocess.DEVNULL
    )


def findings(replica: Path, *extra: str) -> list[tuple[str, str]]:
    r = ltxkit("verify", replica, "--format", "json", "--structure-only", *extra)
    return [(f["code"], Path(f["path"]).name) for f in json.loads(r.stdout)["findings"]]


def test_a_compaction_whose_oldest_inputs_are_gone_is_compared_with_the_newest(tmp_path: Path) -> None:
    """Retention takes a compaction's oldest inputs first: the ones left still hold the newest copy
    of their pages, which the compaction must hold as they are. A healthy replica stays clean."""
    for name, codes in (("compaction-mismatch", [("compaction-mismatch", f"{1:016x}-{3:016x}.ltx")]), ("healthy", [])):
        replica = tmp_path / name
        shutil.copytree(REPLICAS / name, replica)
        (replica / "ltx" / "0" / f"{1:016x}-{1:016x}.ltx").unlink()  # retention took the oldest input
        got = [f for f in findings(replica) if f[0] in ("compaction-mismatch", "snapshot-mismatch")]
        assert got == codes, (name, got)


def test_inputs_are_the_nearest_level_that_tiles_the_range_else_the_newest_run() -> None:
    from ltxkit.replica.layout import ReplicaFile

    def rf(level: int, lo: int, hi: int) -> ReplicaFile:
        return ReplicaFile(level, lo, hi, f"ltx/{level}/{lo:016x}-{hi:016x}.ltx", 100, hi)

    l2 = rf(2, 1, 8)
    files = [rf(0, t, t) for t in range(1, 9)] + [rf(1, 1, 4), rf(1, 6, 8), l2]
    assert [(f.level, f.min_txid) for f in compaction_inputs(l2, files)] == [(0, t) for t in range(1, 9)]
    files = [f for f in files if (f.level, f.min_txid) not in ((0, 1), (0, 2))]
    assert [(f.level, f.min_txid, f.max_txid) for f in compaction_inputs(l2, files)] == [(0, t, t) for t in range(3, 9)]
    assert chain_ending_at(files, 8, 1, (1,)) == [rf(1, 6, 8)]  # 5 is missing at level 1: the run stops
    assert compaction_inputs(rf(1, 1, 4), [rf(0, 1, 1), rf(0, 2, 2)]) == []  # nothing ends where it ends


@pytest.mark.litestream
def test_a_stale_page_in_a_litestream_compaction_is_named_and_repair_restores_the_truth(tmp_path: Path) -> None:
    """A real Litestream replica; one page of a compaction replaced by an older copy of it, the
    file rebuilt with every checksum right. `litestream restore` restores the stale page without a
    word; verify names the compaction; repair sets it aside, and Litestream's restore is the
    database's again."""
    rep = H.make_replica(tmp_path / "rep", page_size=4096)
    replica = rep.replica_dir
    good = tmp_path / "good.db"
    assert H.restore(replica, good).returncode == 0
    assert findings(replica) == []

    files = {(f.level, f.min_txid, f.max_txid): f.path for f in rep.files()}
    from ltxkit.replica.layout import ReplicaFile

    listed = [ReplicaFile(lv, lo, hi, str(p), 0, 0) for (lv, lo, hi), p in files.items()]
    target = inputs = None
    for f in sorted(listed, key=lambda f: -f.max_txid):  # the newest compaction whose inputs are all here
        if f.level == 1 and (chain := compaction_inputs(f, listed)) and chain[0].min_txid == f.min_txid:
            target, inputs = f, chain
            break
    assert target is not None and inputs is not None, sorted(files)
    pages = dict(LTXReader.from_bytes(Path(target.key).read_bytes()).pages())
    newest = dict(LTXReader.from_bytes(Path(inputs[-1].key).read_bytes()).pages())
    older: dict[int, bytes] = {}
    for f in sorted(listed, key=lambda f: f.max_txid):  # an older copy of a page the newest input wrote
        if f.max_txid < inputs[-1].min_txid and f.level == 0:
            older.update(LTXReader.from_bytes(Path(f.key).read_bytes()).pages())
    pgno = next(p for p in sorted(newest) if p in older and older[p] != pages[p])
    pages[pgno] = older[pgno]
    header = LTXReader.from_bytes(Path(target.key).read_bytes()).header
    out = io.BytesIO()
    writer = LTXWriter(out, header)
    for p in sorted(pages):
        writer.write_page(p, pages[p])
    writer.close()
    Path(target.key).write_bytes(out.getvalue())

    assert findings(replica) == [("compaction-mismatch", Path(target.key).name)]
    r = ltxkit("verify", replica)
    assert r.returncode == 1 and f"page {pgno} differs" in r.stdout, r.stdout
    stale = tmp_path / "stale.db"
    assert H.restore(replica, stale).returncode == 0  # Litestream restores it without a word
    if target.max_txid == max(hi for _, _, hi in files):  # the latest restore reads the stale page
        assert stale.read_bytes() != good.read_bytes()

    fixed = ltxkit("repair", replica, "--rebuild-snapshot", "--yes", "--watch", "0")
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert ltxkit("verify", replica).returncode == 0
    after = tmp_path / "after.db"
    assert H.restore(replica, after).returncode == 0
    assert after.read_bytes() == good.read_bytes()
    [aside] = list(replica.glob(f"quarantine/*/ltx/1/{Path(target.key).name}"))
    assert json.loads((aside.parents[2] / "manifest.json").read_text())["files"][0]["codes"] == ["compaction-mismatch"]


_step = st.tuples(st.lists(st.integers(1, 30), min_size=1, max_size=5), st.one_of(st.none(), st.integers(3, 30)))


@settings(max_examples=25, deadline=None)
@given(steps=st.lists(_step, min_size=1, max_size=8), split=st.integers(0, 8), victim=st.sampled_from([1, 9]))
def test_sound_copies_agree_and_one_changed_page_is_named(tmp_path_factory, steps, split, victim) -> None:  # type: ignore[no-untyped-def]
    """Random histories (growth writes every new page, as SQLite does; VACUUM-like shrinks): an L1
    compaction from ltxkit's own compactor and an L9 snapshot of the model database agree with the
    L0 files (no false alarm); one page of either changed, every checksum right, is named."""
    from ltxkit.replica.storage import open_storage
    from ltxkit.replicate.lifecycle import compact
    from ltxkit.verify.engine import check_replica
    from tests.replica_builder import Db, page_bytes, write_ltx

    root = tmp_path_factory.mktemp("agree")
    db = Db()
    write_ltx(root, 0, 1, 1, db.write(list(range(1, 9))), db.commit)
    for i, (pgnos, shrink) in enumerate(steps):
        if shrink is not None and shrink < db.commit:
            changed = db.write([p for p in pgnos if p <= shrink] or [1], shrink)
        else:
            changed = db.write(sorted(set(pgnos) | set(range(db.commit + 1, max(pgnos) + 1))))
        write_ltx(root, 0, db.txid, db.txid, changed, db.commit)
        if i == min(split, len(steps) - 1):
            assert compact(open_storage(str(root)), 1) is not None
    write_ltx(root, 9, 1, db.txid, dict(db.pages), db.commit)

    def agreement() -> list[tuple[str, str]]:
        summary = check_replica(open_storage(str(root)), str(root))
        return [(str(f.code), Path(f.path).parent.name) for f in summary.findings if "mismatch" in str(f.code)]

    assert agreement() == []
    path = sorted((root / "ltx" / str(victim)).glob("*.ltx"))[-1]
    reader = LTXReader.from_bytes(path.read_bytes())
    pages = dict(reader.pages())
    pgno = sorted(pages)[len(pages) // 2]
    pages[pgno] = page_bytes(pgno, 10_000, reader.header.page_size)  # a version no transaction wrote
    out = io.BytesIO()
    writer = LTXWriter(out, reader.header)
    for p in sorted(pages):
        writer.write_page(p, pages[p])
    writer.close()
    path.write_bytes(out.getvalue())
    code = "compaction-mismatch" if victim == 1 else "snapshot-mismatch"
    assert agreement() == [(code, str(victim))]
