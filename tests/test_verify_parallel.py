"""Verify spreads a large replica's files over worker processes; the report must not change."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ltxkit.format.errors import Code
from ltxkit.verify import engine
from ltxkit.verify.engine import verify_paths
from ltxkit.verify.findings import Finding

REPLICAS = Path(__file__).resolve().parent.parent / "fixtures" / "corrupt" / "replicas"


@pytest.mark.parametrize("name", sorted(p.name for p in REPLICAS.iterdir()))
def test_parallel_report_equals_serial(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    path = str(REPLICAS / name)
    serial = verify_paths([path], jobs=1).to_json()
    monkeypatch.setattr(engine, "PARALLEL_MIN_BYTES", 0)  # the fixtures are tiny: force the pool
    seen: list[str] = []
    parallel = verify_paths([path], jobs=2, progress=lambda p, _n: seen.append(p)).to_json()
    assert parallel == serial
    files = serial["replicas"][0]["files"]
    assert sorted(seen) == sorted(Path(path, *f.split("/")).as_posix() for f in _keys(path))
    assert files == len(seen)


def _keys(replica: str) -> list[str]:
    return [p.relative_to(replica).as_posix() for p in Path(replica, "ltx").rglob("*.ltx") if p.is_file()]


def _check_one_noting_pid(*args, **kwargs):  # type: ignore[no-untyped-def]
    fc = _REAL_CHECK_ONE(*args, **kwargs)
    fc.findings.append(Finding(Code.STRAY_FILE, fc.path, "checked in", {"pid": os.getpid()}))
    return fc


_REAL_CHECK_ONE = engine._check_one


def test_pool_really_uses_other_processes(monkeypatch: pytest.MonkeyPatch) -> None:
    """So that the equality above compares two different code paths."""
    monkeypatch.setattr(engine, "PARALLEL_MIN_BYTES", 0)
    monkeypatch.setattr(engine, "_check_one", _check_one_noting_pid)
    report = verify_paths([str(REPLICAS / "healthy")], jobs=2)
    pids = {f.context["pid"] for f in report.findings if "pid" in f.context}
    assert pids and os.getpid() not in pids
    monkeypatch.setattr(engine, "PARALLEL_MIN_BYTES", 1 << 60)
    report = verify_paths([str(REPLICAS / "healthy")], jobs=2)
    assert {f.context["pid"] for f in report.findings if "pid" in f.context} == {os.getpid()}
