"""A replica that changes while verify reads it: retention deleting covered files, a file rewritten.

Those are not damage. Verify looks again at a fresh listing; what still moves is named
`changed-during-check` (a warning), never `unreadable` or `truncated`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, BinaryIO

from ltxkit.format.errors import Code
from ltxkit.replica.storage import Storage, open_storage
from ltxkit.verify.engine import check_replica
from tests.replica_builder import simple_chain, write_ltx


class Racing:
    """A real directory storage with a real racer: when verify opens `victim`, something deletes
    (or rewrites) that file just before the read, as retention running beside verify would."""

    def __init__(self, inner: Storage, racer: Any) -> None:
        self._inner = inner
        self._racer = racer
        self.opened: list[str] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def open(self, key: str) -> BinaryIO:
        self.opened.append(key)
        self._racer(key, len(self.opened))
        return self._inner.open(key)


def _compacted_replica(root: Path) -> None:
    """L0 1..6 and an L1 file covering all of them (so deleting an L0 file harms nothing)."""
    db = simple_chain(root, 6)
    write_ltx(root, 1, 1, 6, dict(db.pages), db.commit)


def _all_codes(summary: Any) -> set[str]:
    found = {str(f.code) for f in summary.findings}
    for fc in summary.files:
        found |= {str(f.code) for f in fc.findings}
    return found


def test_retention_deleting_a_covered_file_mid_verify_is_not_damage(tmp_path: Path) -> None:
    _compacted_replica(tmp_path)
    victim = tmp_path / "ltx" / "0" / "0000000000000003-0000000000000003.ltx"

    def retention(key: str, _n: int) -> None:
        if key.endswith(victim.name) and victim.exists():
            victim.unlink()

    storage = Racing(open_storage(str(tmp_path)), retention)
    summary = check_replica(storage, str(tmp_path))  # type: ignore[arg-type]
    assert not victim.exists()
    assert _all_codes(summary) == set(), _all_codes(summary)
    assert summary.latest_txid == 6
    # the second look used a listing without the deleted file
    assert sum(1 for k in storage.opened if k.endswith(victim.name)) == 1


def test_a_file_that_keeps_changing_is_named_not_called_damaged(tmp_path: Path) -> None:
    _compacted_replica(tmp_path)
    level0 = tmp_path / "ltx" / "0"
    names = sorted(p.name for p in level0.iterdir())

    def rewriting(key: str, _n: int) -> None:
        # every time verify opens L0 file 4, a racer has cut it short and given it a new time
        if key.endswith(names[3]):
            path = level0 / names[3]
            data = path.read_bytes()
            path.write_bytes(data[: len(data) - 7])

    storage = Racing(open_storage(str(tmp_path)), rewriting)
    summary = check_replica(storage, str(tmp_path))  # type: ignore[arg-type]
    found = _all_codes(summary)
    assert found == {str(Code.CHANGED_DURING_CHECK)}, found
    moved = [f for f in summary.findings if f.code == Code.CHANGED_DURING_CHECK]
    assert len(moved) == 1 and moved[0].path.endswith(names[3]) and "rewritten" in moved[0].message
    assert summary.errors == []  # a warning: verify exits 0 unless --fail-on warning


def test_real_damage_is_still_damage_when_nothing_moves(tmp_path: Path) -> None:
    _compacted_replica(tmp_path)
    path = sorted((tmp_path / "ltx" / "0").iterdir())[3]
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 7])
    summary = check_replica(open_storage(str(tmp_path)), str(tmp_path))
    assert str(Code.TRUNCATED) in _all_codes(summary)
    assert str(Code.CHANGED_DURING_CHECK) not in _all_codes(summary)


class RacingRestore(Racing):
    """The racer strikes when the content check's restore reads a file (after the file checks)."""

    def read_bytes(self, key: str, **kw: Any) -> bytes:
        self.opened.append(key)
        self._racer(key, len(self.opened))
        return self._inner.read_bytes(key, **kw)


def test_retention_deleting_a_file_the_content_check_restores_is_not_damage(tmp_path: Path) -> None:
    simple_chain(tmp_path, 6)
    victim = tmp_path / "ltx" / "0" / "0000000000000006-0000000000000006.ltx"

    reads = []

    def retention(key: str, _n: int) -> None:
        reads.append(key)
        if key.endswith(victim.name) and reads.count(key) == 2:  # read once by its file check, then restored
            victim.unlink()

    storage = RacingRestore(open_storage(str(tmp_path)), retention)
    summary = check_replica(storage, str(tmp_path), content=True)  # type: ignore[arg-type]
    assert not victim.exists()  # the race happened, inside the content check's restore
    assert summary.errors == [], summary.errors  # it was UNRESTORABLE: "cannot open"
    moved = [f for f in summary.findings if f.code == Code.CHANGED_DURING_CHECK]
    assert len(moved) == 1 and moved[0].path.endswith(victim.name) and "deleted while verify" in moved[0].message
    assert summary.content is None and summary.content_skipped is not None
