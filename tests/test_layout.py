"""Litestream's restore plan, reproduced: which files a restore merges, and when it refuses."""

from __future__ import annotations

import pytest

from ltxkit.format.errors import Code
from ltxkit.replica.layout import PlanError, ReplicaFile, restore_plan, rfc3339_ns

MS = 1_000_000  # nanoseconds


def rf(level: int, lo: int, hi: int, mtime_ms: int | None = None) -> ReplicaFile:
    return ReplicaFile(level, lo, hi, f"ltx/{level}/{lo:016x}-{hi:016x}.ltx", 100, (mtime_ms or hi) * 1_000_000)


def names(plan: list[ReplicaFile]) -> list[tuple[int, int, int]]:
    return [(f.level, f.min_txid, f.max_txid) for f in plan]


def test_plain_l0_chain() -> None:
    files = [rf(0, 1, 1), rf(0, 2, 2), rf(0, 3, 3)]
    assert names(restore_plan(files)) == [(0, 1, 1), (0, 2, 2), (0, 3, 3)]


def test_snapshot_then_furthest_reaching_file_across_levels() -> None:
    files = [rf(9, 1, 10), rf(1, 1, 8), rf(1, 9, 14), rf(2, 11, 20), rf(0, 11, 11), rf(0, 21, 21), rf(0, 22, 22)]
    # after the snapshot (10): L1 9-14 and L2 11-20 both start at or before 11; L2 reaches further
    assert names(restore_plan(files)) == [(9, 1, 10), (2, 11, 20), (0, 21, 21), (0, 22, 22)]


def test_tie_prefers_lower_min_then_higher_level() -> None:
    files = [rf(0, 1, 1), rf(0, 2, 5), rf(1, 2, 5), rf(2, 1, 5)]
    assert names(restore_plan(files)) == [(2, 1, 5)]
    files = [rf(0, 1, 1), rf(0, 2, 5), rf(1, 2, 5)]
    assert names(restore_plan(files)) == [(0, 1, 1), (1, 2, 5)]


def test_txid_target_stops_at_target_and_prefers_older_snapshot() -> None:
    files = [rf(9, 1, 5), rf(9, 1, 20), rf(0, 1, 1)] + [rf(0, i, i) for i in range(2, 25)]
    assert names(restore_plan(files, txid=7)) == [(9, 1, 5), (0, 6, 6), (0, 7, 7)]
    assert names(restore_plan(files, txid=20)) == [(9, 1, 20)]
    assert names(restore_plan(files))[-1] == (0, 24, 24)


def test_timestamp_uses_created_time() -> None:
    files = [rf(0, 1, 1, 1000), rf(0, 2, 2, 2000), rf(0, 3, 3, 3000)]
    assert names(restore_plan(files, timestamp_ns=2500 * MS)) == [(0, 1, 1), (0, 2, 2)]


def test_rfc3339_times_are_read_in_integers_not_floats() -> None:
    """S3 objects carry their time as `litestream-timestamp`; through a float `...22.475Z` became
    `...22.474999808` ns, and a target equal to a file's time took the file in (the S3 audit)."""
    exact = 1_795_902_442_475_000_000
    assert rfc3339_ns("2026-11-28T21:47:22.475Z") == exact
    assert rfc3339_ns("2026-11-28T22:47:22.475000001+01:00") == exact + 1
    files = [rf(9, 1, 1, 1000), ReplicaFile(0, 2, 2, "ltx/0/b.ltx", 100, exact)]
    assert names(restore_plan(files, timestamp_ns=rfc3339_ns("2026-11-28T21:47:22.475Z"))) == [(9, 1, 1)]


def test_timestamp_compares_nanoseconds_and_refuses_a_time_after_the_newest_file() -> None:
    """As Litestream (CalcRestoreTarget, CalcRestorePlan): 0.4 ms after a file's creation takes
    it in. A time after the newest file's is refused ("timestamp does not exist"), except, unlike
    Litestream, up to the first millisecond after it: the one time that restores the latest state."""
    files = [rf(0, 1, 1, 1000), rf(0, 2, 2, 2000), rf(0, 3, 3, 3000)]
    assert names(restore_plan(files, timestamp_ns=2000 * MS + 400_000)) == [(0, 1, 1), (0, 2, 2)]
    assert names(restore_plan(files, timestamp_ns=2000 * MS)) == [(0, 1, 1)]  # created at the time: not before it
    assert names(restore_plan(files, timestamp_ns=3000 * MS)) == [(0, 1, 1), (0, 2, 2)]
    assert names(restore_plan(files, timestamp_ns=3000 * MS + 1)) == [(0, 1, 1), (0, 2, 2), (0, 3, 3)]
    assert names(restore_plan(files, timestamp_ns=3001 * MS)) == [(0, 1, 1), (0, 2, 2), (0, 3, 3)]
    with pytest.raises(PlanError) as info:
        restore_plan(files, timestamp_ns=3001 * MS + 1)
    assert info.value.code == Code.UNRESTORABLE and "no restore point is that recent" in info.value.message
    assert "created at 1970-01-01T00:00:03Z, and 1970-01-01T00:00:03.001Z restores the latest state" in (
        info.value.message
    )


def test_gap_refuses_latest_restore_like_litestream() -> None:
    files = [rf(0, 1, 1), rf(0, 2, 2), rf(0, 4, 4)]
    with pytest.raises(PlanError) as exc:
        restore_plan(files)
    assert exc.value.code == Code.TXID_GAP
    assert exc.value.context["have"] == 2
    # a point-in-time restore before the gap still works
    assert names(restore_plan(files, txid=2)) == [(0, 1, 1), (0, 2, 2)]


def test_gap_bridged_by_later_snapshot_is_fine() -> None:
    files = [rf(0, 1, 1), rf(0, 2, 2), rf(0, 4, 4), rf(9, 1, 4), rf(0, 5, 5)]
    assert names(restore_plan(files)) == [(9, 1, 4), (0, 5, 5)]


def test_no_snapshot() -> None:
    with pytest.raises(PlanError) as exc:
        restore_plan([rf(0, 5, 5), rf(0, 6, 6)])
    assert exc.value.code == Code.NO_SNAPSHOT
    with pytest.raises(PlanError) as exc:
        restore_plan([])
    assert exc.value.code == Code.NO_SNAPSHOT


def test_target_beyond_chain() -> None:
    with pytest.raises(PlanError) as exc:
        restore_plan([rf(0, 1, 1)], txid=9)
    assert exc.value.code == Code.UNRESTORABLE

