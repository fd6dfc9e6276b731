"""Compaction (`ltxkit.replicate.lifecycle.compact`): the merge of a level's files, streamed.

The output must hold exactly the newest copy of every page its inputs hold, none above the last
input's commit; a restore through it must equal the model database; and merging over a large
snapshot must not hold the snapshot in memory.
"""

from __future__ import annotations

import random
import subprocess
import sys
import textwrap
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from ltxkit.format.decoder import LTXReader
from ltxkit.replica.layout import list_replica, restore_plan
from ltxkit.replica.storage import open_storage
from ltxkit.replicate.lifecycle import compact
from ltxkit.restore import restore_to_path
from tests.replica_builder import Db, write_ltx

ROOT = Path(__file__).resolve().parent.parent


def _pages(path: Path) -> dict[int, bytes]:
    return dict(LTXReader.from_bytes(path.read_bytes()).pages())


def _write(root: Path, db: Db, pgnos: list[int], shrink: int | None) -> None:
    if shrink is not None and shrink < db.commit:  # a VACUUM-like shrink
        changed = db.write([p for p in pgnos if p <= shrink] or [1], shrink)
    else:  # growth writes every new page, as SQLite does
        changed = db.write(sorted(set(pgnos) | set(range(db.commit + 1, max(pgnos) + 1))))
    write_ltx(root, 0, db.txid, db.txid, changed, db.commit)


def _merge(paths: list[Path]) -> dict[int, bytes]:
    newest: dict[int, bytes] = {}
    for path in paths:
        newest.update(_pages(path))
    commit = LTXReader.from_bytes(paths[-1].read_bytes()).header.commit
    return {p: d for p, d in newest.items() if p <= commit}


step = st.tuples(st.lists(st.integers(1, 30), min_size=1, max_size=5), st.one_of(st.none(), st.integers(3, 30)))


@settings(max_examples=30, deadline=None)
@given(before=st.lists(step, max_size=6), after=st.lists(step, min_size=1, max_size=6))
def test_compactions_hold_the_newest_copy_of_each_page(tmp_path_factory, before, after) -> None:  # type: ignore[no-untyped-def]
    root = tmp_path_factory.mktemp("c")
    db = Db()
    write_ltx(root, 0, 1, 1, db.write(list(range(1, 9))), db.commit)
    storage = open_storage(str(root))
    for pgnos, shrink in before:
        _write(root, db, pgnos, shrink)
    first_inputs = sorted((root / "ltx" / "0").glob("*.ltx"))
    assert compact(storage, 1) is not None
    for pgnos, shrink in after:
        _write(root, db, pgnos, shrink)
    second_inputs = sorted((root / "ltx" / "0").glob("*.ltx"))[len(first_inputs) :]
    assert compact(storage, 1) is not None  # from the TXID after the first one's
    first, second = sorted((root / "ltx" / "1").glob("*.ltx"))
    assert _pages(first) == _merge(first_inputs)
    assert _pages(second) == _merge(second_inputs)
    hdr = LTXReader.from_bytes(second.read_bytes()).header
    assert (hdr.min_txid, hdr.max_txid, hdr.commit) == (len(first_inputs) + 1, db.txid, db.commit)
    # the replica restores through the compacted files to the model database
    plan = restore_plan(list_replica(storage).files)
    assert [f.level for f in plan] == [1, 1]
    restored = root / "restored.db"
    restore_to_path(storage, restored)
    assert restored.read_bytes() == db.image()


def test_compacting_over_a_large_snapshot_holds_pages_not_the_snapshot(tmp_path: Path) -> None:
    """64 MiB of pages that do not compress: a merge that held them (as it once did) grows the
    process by more than that; a streamed one by the page checksums only."""
    size, n = 4096, 16384
    rng = random.Random(5)

    def page(p: int, v: int) -> bytes:
        return p.to_bytes(4, "big") + v.to_bytes(4, "big") + rng.randbytes(size - 8)

    write_ltx(tmp_path, 0, 1, 1, {p: page(p, 1) for p in range(1, n + 1)}, n, page_size=size)
    write_ltx(tmp_path, 0, 2, 2, {1: page(1, 2), 7: page(7, 2)}, n, page_size=size)
    script = textwrap.dedent(
        f"""
        import resource
        from ltxkit.replica.storage import open_storage
        from ltxkit.replicate.lifecycle import compact
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        compact(open_storage({str(tmp_path)!r}), 1)
        print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)
        """
    )
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    out = tmp_path / "ltx" / "1" / f"{1:016x}-{2:016x}.ltx"
    assert _pages(out) == _merge(sorted((tmp_path / "ltx" / "0").glob("*.ltx")))
    grown_mb = int(r.stdout.strip())
    assert grown_mb < 24, f"compaction grew the process by {grown_mb} MB"
