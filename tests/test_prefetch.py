"""Restore's read-ahead of small files (what an object store replica uses), on a real directory read
by several threads: same bytes as one-at-a-time reads, never more than its budget held, a file
that fails to read reported at that file, and no thread left behind."""

from __future__ import annotations

import io
import threading
import time
from pathlib import Path

import pytest

from ltxkit.replica.layout import list_replica, restore_plan
from ltxkit.replica.storage import LocalStorage
from ltxkit.restore import RestoreError, _Prefetch, restore_into
from tests.replica_builder import simple_chain


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
