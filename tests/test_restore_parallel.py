"""Restore with several processes per large file: same bytes, same refusals, as with one."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from ltxkit import restore as restore_mod
from ltxkit.replica.storage import LocalStorage
from ltxkit.restore import RestoreError, restore_to_path
from tests.filespec import flip_byte
from tests.replica_builder import Db, split_spy, write_ltx


def build(root: Path) -> Db:
    """A 300-page snapshot, then increments that overwrite, grow and shrink: every file splits."""
    db = Db()
    db.write(list(range(1, 301)))
    write_ltx(root, 0, 1, 1, dict(db.pages), db.commit)
    write_ltx(root, 0, 2, 2, db.write(list(range(50, 251, 3))), db.commit)
    write_ltx(root, 0, 3, 3, db.write(list(range(1, 341))), db.commit)  # grows to 340
    write_ltx(root, 0, 4, 4, db.write(list(range(10, 200, 2)), commit=260), 260)  # shrinks
    return db


@pytest.fixture
def split_everything() -> Iterator[list[str]]:
    """Make every file large enough to split, and record which ones really were split."""
    with split_spy(0) as split:
        yield split


@pytest.mark.parametrize("jobs", [2, 3])
def test_parallel_restore_gives_the_model_bytes(tmp_path: Path, jobs: int, split_everything: list[str]) -> None:
    db = build(tmp_path / "r")
    out = tmp_path / "out.db"
    restore_to_path(LocalStorage(tmp_path / "r"), out, jobs=jobs)
    assert out.read_bytes() == db.image()
    assert len(split_everything) == 4  # every file went through the span path
    for txid in (1, 2, 3):
        one, many = tmp_path / f"one{txid}.db", tmp_path / f"many{txid}.db"
        restore_to_path(LocalStorage(tmp_path / "r"), one, txid=txid, jobs=1)
        restore_to_path(LocalStorage(tmp_path / "r"), many, txid=txid, jobs=jobs)
        assert one.read_bytes() == many.read_bytes()


@pytest.mark.parametrize("where", ["first-half", "second-half", "index", "trailer"])
def test_damage_is_refused_with_the_same_code(tmp_path: Path, where: str, split_everything: list[str]) -> None:
    build(tmp_path / "r")
    victim = tmp_path / "r" / "ltx" / "0" / f"{3:016x}-{3:016x}.ltx"
    data = victim.read_bytes()
    offset = {"first-half": len(data) // 4, "second-half": len(data) * 3 // 4, "index": len(data) - 40,
              "trailer": len(data) - 3}[where]
    victim.write_bytes(flip_byte(data, offset, 0x40))
    codes = []
    for jobs in (1, 2):
        out = tmp_path / f"out{jobs}.db"
        with pytest.raises(RestoreError) as err:
            restore_to_path(LocalStorage(tmp_path / "r"), out, jobs=jobs)
        assert not out.exists()
        assert err.value.key == "ltx/0/0000000000000003-0000000000000003.ltx"
        codes.append(err.value.code)
    assert codes[0] == codes[1]
    assert victim.name not in " ".join(split_everything)  # the damaged file fell back to one process


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The `jobs` of every `restore_into` call, in order (a restart calls it again with 1)."""
    seen: list[int] = []
    real_restore_into = restore_mod.restore_into

    def counting(*args, **kwargs):  # type: ignore[no-untyped-def]
        seen.append(kwargs.get("jobs", 1))
        return real_restore_into(*args, **kwargs)

    monkeypatch.setattr(restore_mod, "restore_into", counting)
    return seen


def test_a_cut_in_the_wrong_place_starts_over_in_one_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, calls: list[int]
) -> None:
    """If a span fails after pages were written, the restore begins again: no stray page survives."""
    db = build(tmp_path / "r")
    monkeypatch.setattr(restore_mod, "SPLIT_MIN_BYTES", 0)
    real_cuts = restore_mod.find_cuts
    monkeypatch.setattr(restore_mod, "find_cuts", lambda ends, parts: [c + 7 for c in real_cuts(ends, parts)])
    out = tmp_path / "out.db"
    restore_to_path(LocalStorage(tmp_path / "r"), out, jobs=2)
    assert out.read_bytes() == db.image()
    assert calls == [2, 1]  # the parallel attempt, then the one-process restart


def test_a_worker_that_dies_makes_the_restore_start_over(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, calls: list[int]
) -> None:
    """A span worker killed mid-way (here it exits without a result) never leaves a half-written database."""
    db = build(tmp_path / "r")
    monkeypatch.setattr(restore_mod, "SPLIT_MIN_BYTES", 0)
    parent = os.getpid()
    real_span = restore_mod._decode_span_into

    def dying(*args, **kwargs):  # type: ignore[no-untyped-def]
        if os.getpid() != parent:
            os._exit(9)  # like a kill: no result, no exception
        return real_span(*args, **kwargs)

    monkeypatch.setattr(restore_mod, "_decode_span_into", dying)
    out = tmp_path / "out.db"
    restore_to_path(LocalStorage(tmp_path / "r"), out, jobs=2)
    assert out.read_bytes() == db.image()
    assert calls == [2, 1]


@pytest.mark.parametrize("jobs", [1, 2])
def test_a_large_file_is_made_durable_while_the_next_ones_decode(
    tmp_path: Path, jobs: int, split_everything: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once enough is written (here: anything), a background fdatasync of the output starts, one at
    a time, never on the restoring thread, and has ended before the restore returns; the bytes are
    the model's either way."""
    import threading

    db = build(tmp_path / "r")
    monkeypatch.setattr(restore_mod, "SETTLE_AFTER_BYTES", 0)
    calls: list[tuple[int, bool]] = []
    real = os.fdatasync

    def spy(fd: int) -> None:
        real(fd)
        calls.append((fd, threading.current_thread() is threading.main_thread()))

    monkeypatch.setattr(os, "fdatasync", spy)
    out = tmp_path / "out.db"
    restore_to_path(LocalStorage(tmp_path / "r"), out, jobs=jobs)
    assert out.read_bytes() == db.image()
    assert calls and not any(on_main for _, on_main in calls)  # not on the restoring thread
    assert not [t for t in threading.enumerate() if t.name == "ltxkit-settle"]  # joined before returning
