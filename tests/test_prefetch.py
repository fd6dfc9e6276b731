"""Restore's read-ahead of small files (what an object store replica uses), on a real directory read
by several threads: same bytes as one-at-a-time reads, never more than its budget held, a file
that fails to read reported at that file, and no thread left behind."""

from __future__ import annotations

import io
import threading
import time
from pathlib import Path

import pytest

from ltxkit.format.schema import format_filename
from ltxkit.replica.layout import list_replica, restore_plan
from ltxkit.replica.storage import LocalStorage
from ltxkit.restore import RestoreError, Vanished, _Prefetch, plan_for, restore_into, restore_to_path
from tests.replica_builder import Db, simple_chain, write_ltx


class ThreadedDirectory(LocalStorage):
    """A directory read as an object store is: many reads at once, each taking a little while."""

    concurrency = 8

    def __init__(self, root: Path, *, fail: str | None = None) -> None:
        super().__init__(root)
        self.fail = fail
        self.lock = threading.Lock()
        self.in_flight = 0
        self.max_in_flight = 0
        self.reads: list[str] = []

    def read_bytes(self, key: str, *, listed_size: int | None = None) -> bytes:
        with self.lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            self.reads.append(key)
        try:
            time.sleep(0.002)
            if self.fail is not None and key.endswith(self.fail):
                raise FileNotFoundError(2, "gone", key)
            return super().read_bytes(key, listed_size=listed_size)
        finally:
            with self.lock:
                self.in_flight -= 1


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("chain")
    simple_chain(root, 200, page_size=4096)  # commit grows to 207 pages: one freelist trunk holds them
    return root


def _restore(storage: LocalStorage) -> bytes:
    plan = restore_plan(list_replica(storage).files)
    out = io.BytesIO()
    restore_into(storage, plan, out)
    return out.getvalue()


def test_threaded_reads_restore_the_same_bytes(chain: Path) -> None:
    threaded = ThreadedDirectory(chain)
    before = threading.active_count()
    assert _restore(threaded) == _restore(LocalStorage(chain))
    assert threaded.max_in_flight > 1  # the reads did overlap
    assert sorted(threaded.reads) == sorted(set(threaded.reads))  # each file read once
    assert threading.active_count() == before  # every worker joined


def test_the_budget_bounds_what_is_held(chain: Path) -> None:
    storage = ThreadedDirectory(chain)
    plan = restore_plan(list_replica(storage).files)
    biggest = max(f.size for f in plan)
    prefetch = _Prefetch(storage, plan, budget=2 * biggest)
    try:
        time.sleep(0.1)  # let the workers run as far ahead as the budget allows
        assert len(storage.reads) <= 2 + storage.concurrency  # not the whole plan
        for f in plan:
            assert prefetch.read(f) == LocalStorage(chain).read_bytes(f.key)
            assert prefetch._held <= 2 * biggest + biggest
    finally:
        prefetch.close()


def test_a_failed_read_is_reported_at_its_file(chain: Path) -> None:
    name = "00000000000000c8-00000000000000c8.ltx"  # TXID 200, the last file
    with pytest.raises(RestoreError) as info:
        _restore(ThreadedDirectory(chain, fail=name))
    assert name in str(info.value)


class RetentionRacing(LocalStorage):
    """A directory whose replicator compacts TXIDs 1-3 into level 1 and deletes their level-0
    files (retention) right after the restore's plan was made: at the restore's first read."""

    def __init__(self, root: Path, compacted: dict[int, bytes], commit: int) -> None:
        super().__init__(root)
        self.dir, self.compacted, self.commit, self.raced = root, compacted, commit, False

    def read_bytes(self, key: str, *, listed_size: int | None = None) -> bytes:
        if not self.raced:
            self.raced = True
            write_ltx(self.dir, 1, 1, 3, self.compacted, self.commit)
            for txid in (1, 2, 3):
                (self.dir / "ltx" / "0" / format_filename(txid, txid)).unlink()
        return super().read_bytes(key, listed_size=listed_size)


def test_a_plan_file_deleted_by_retention_mid_restore_is_planned_again(tmp_path: Path) -> None:
    db = Db(sound=True)
    write_ltx(tmp_path, 0, 1, 1, db.write(list(range(1, 9))), db.commit)
    for txid in (2, 3):
        write_ltx(tmp_path, 0, txid, txid, db.write([3, 4]), db.commit)
    at_3 = dict(db.pages)
    write_ltx(tmp_path, 0, 4, 4, db.write([5]), db.commit)
    storage = RetentionRacing(tmp_path, at_3, db.commit)
    stale = plan_for(storage)
    assert [f.level for f in stale] == [0, 0, 0, 0]
    out = tmp_path / "out.db"
    result = restore_to_path(storage, out, plan=stale)
    assert out.read_bytes() == db.image()
    assert [(f.level, f.min_txid, f.max_txid) for f in result.plan] == [(1, 1, 3), (0, 4, 4)]


def test_files_that_keep_vanishing_end_the_restore_as_a_race_not_as_damage(chain: Path, tmp_path: Path) -> None:
    name = "00000000000000c8-00000000000000c8.ltx"  # listed every time, gone at every read
    out = tmp_path / "out.db"
    with pytest.raises(Vanished) as info:
        restore_to_path(ThreadedDirectory(chain, fail=name), out)
    err = info.value
    assert err.exit_code == 2  # could not run (now), not "the data is at fault"
    assert name in err.message and "deleted while the restore read the replica; 3 plans in a row" in err.message
    assert list(tmp_path.iterdir()) == []  # nothing left behind, no half-restored database
