"""Verify of one large file in spans (several processes) reports exactly what one process reports.

The span path may only ever say "sound": any file it cannot prove is checked again in one
process. So on every corrupt fixture and on any damaged file the findings, their codes, messages
and offsets, and what the `FileCheck` holds, must be those of a one-process run; and on a sound
file with enough frames to cut, the span path must really have run (in other processes).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ltxkit.format import CHECKSUM_FLAG, FLAG_NO_CHECKSUM
from ltxkit.verify import files
from ltxkit.verify.engine import verify_paths
from ltxkit.verify.files import check_loose_file
from ltxkit.verify.findings import FileCheck
from tests.filespec import FileSpec, flip_byte, insert_bytes

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "corrupt"
FILES = sorted((FIXTURES / "files").glob("*.ltx"))
REPLICAS = sorted(p for p in (FIXTURES / "replicas").iterdir() if p.is_dir())


def _everything(fc: FileCheck) -> dict[str, object]:
    """All a `FileCheck` holds, findings with their full context (offsets included)."""
    return {
        **fc.to_json(),
        "header": fc.header,
        "trailer": fc.trailer,
        "pgnos": fc.pgnos,
        "broken": fc.broken,
        "findings": [(f.code, f.path, f.message, f.context) for f in fc.findings],
    }


class SpanSpy:
    """Counts the files the span path proved (it returns None for those it leaves to one process)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.proven = 0
        real = files._check_in_spans

        def spy(*args, **kwargs):  # type: ignore[no-untyped-def]
            fc = real(*args, **kwargs)
            self.proven += fc is not None
            return fc

        monkeypatch.setattr(files, "SPLIT_MIN_BYTES", 0)  # the inputs here are tiny: force spans
        monkeypatch.setattr(files, "_check_in_spans", spy)


def _same_as_one_process(path: Path, jobs: int) -> dict[str, object]:
    one = _everything(check_loose_file(path, quick=False))
    split = _everything(check_loose_file(path, quick=False, jobs=jobs))
    assert split == one
    return one


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
@pytest.mark.parametrize("jobs", [2, 3])
def test_every_fixture_file_same_report(path: Path, jobs: int, monkeypatch: pytest.MonkeyPatch) -> None:
    spy = SpanSpy(monkeypatch)
    report = _same_as_one_process(path, jobs)
    if report["findings"]:
        assert spy.proven == 0, "a damaged file was passed by the span path"


@pytest.mark.parametrize("replica", REPLICAS, ids=[p.name for p in REPLICAS])
def test_every_fixture_replica_same_report(replica: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    serial = verify_paths([str(replica)], jobs=1).to_json()
    SpanSpy(monkeypatch)
    assert verify_paths([str(replica)], jobs=2).to_json() == serial


def _big_snapshot(pages: int = 64, *, tracked: bool = True) -> bytes:
    return FileSpec(
        page_size=512, commit=pages, pages=list(range(1, pages + 1)), flags=0 if tracked else FLAG_NO_CHECKSUM
    ).build()


def test_sound_file_is_proven_in_other_processes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """So that the equalities here compare two code paths: the spans ran, and not all in this process."""
    path = tmp_path / "0000000000000001-0000000000000001.ltx"
    path.write_bytes(_big_snapshot())
    spy = SpanSpy(monkeypatch)
    pids = tmp_path / "pids"
    pids.mkdir()
    real = files._decode_span

    def noting(*args):  # type: ignore[no-untyped-def]
        (pids / str(os.getpid())).touch()
        return real(*args)

    monkeypatch.setattr(files, "_decode_span", noting)
    report = _same_as_one_process(path, 3)
    assert report["findings"] == [] and report["pgnos"] == list(range(1, 65))
    assert spy.proven == 1
    seen = {int(p.name) for p in pids.iterdir()}
    assert os.getpid() in seen and len(seen) == 3


def test_loose_file_and_single_file_replica_go_through_spans(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    name = "0000000000000001-0000000000000001.ltx"
    loose = tmp_path / name
    loose.write_bytes(_big_snapshot(tracked=False))
    replica = tmp_path / "replica"
    (replica / "ltx" / "0").mkdir(parents=True)
    (replica / "ltx" / "0" / name).write_bytes(loose.read_bytes())
    serial = verify_paths([str(loose), str(replica)], jobs=1).to_json()
    spy = SpanSpy(monkeypatch)
    assert verify_paths([str(loose), str(replica)], jobs=2).to_json() == serial
    assert spy.proven == 2
    assert verify_paths([str(loose), str(replica)], jobs=1).to_json() == serial
    assert spy.proven == 2  # one job: never split


def test_a_snapshot_among_small_files_is_split_over_every_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A replica of one large snapshot and small increments: the snapshot is decoded in spans
    (it would otherwise keep one process busy alone), the rest whole, and the report is the
    one-process report, damage in the snapshot included."""
    from ltxkit.verify import engine

    level0 = tmp_path / "replica" / "ltx" / "0"
    level0.mkdir(parents=True)
    snapshot = level0 / "0000000000000001-0000000000000001.ltx"
    snapshot.write_bytes(_big_snapshot(400, tracked=False))
    for txid in range(2, 6):
        spec = FileSpec(page_size=512, min_txid=txid, max_txid=txid, commit=400, pages=[txid], flags=FLAG_NO_CHECKSUM)
        (level0 / f"{txid:016x}-{txid:016x}.ltx").write_bytes(spec.build())
    replica = str(tmp_path / "replica")
    serial = verify_paths([replica], jobs=1).to_json()
    spy = SpanSpy(monkeypatch)
    monkeypatch.setattr(engine, "PARALLEL_MIN_BYTES", 0)
    assert verify_paths([replica], jobs=2).to_json() == serial
    assert spy.proven == 1  # the snapshot, and only it
    snapshot.write_bytes(flip_byte(snapshot.read_bytes(), 3000))
    with monkeypatch.context() as m:
        m.setattr(engine, "PARALLEL_MIN_BYTES", 1 << 60)
        serial = verify_paths([replica], jobs=1).to_json()
    assert serial["ok"] is False
    assert verify_paths([replica], jobs=2).to_json() == serial
    assert spy.proven == 1  # the damaged snapshot was not passed by the span path


def test_page_checksums_kept_by_the_span_path_are_the_one_process_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "0000000000000001-0000000000000001.ltx"
    path.write_bytes(_big_snapshot(200))
    spy = SpanSpy(monkeypatch)

    def check(jobs: int) -> FileCheck:
        size = path.stat().st_size
        return files.check_file(
            lambda: path.open("rb"), str(path), size, name=path.name, level=None, quick=False, jobs=jobs, page_sums=True
        )

    one, split = check(1), check(3)
    assert spy.proven == 1
    assert one.page_sums is not None and len(one.page_sums) == 200
    assert split.page_sums == one.page_sums and _everything(split) == _everything(one)


def test_filename_mismatch_found_by_the_span_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "0000000000000002-0000000000000002.ltx"
    path.write_bytes(_big_snapshot())
    spy = SpanSpy(monkeypatch)
    report = _same_as_one_process(path, 2)
    assert [f[0].value for f in report["findings"]] == ["filename-mismatch"]  # type: ignore[union-attr]
    assert spy.proven == 1


# ---- hypothesis: damaged files -----------------------------------------------------------------


@st.composite
def damaged_files(draw: st.DrawFn) -> tuple[bytes, bool]:
    """A file of 20-80 pages, sometimes with page-number defects, then one byte-level damage;
    and whether it was left sound."""
    n = draw(st.integers(20, 80))
    pgnos = list(range(1, n + 1))
    shape = draw(st.sampled_from(["sound", "sound", "hole", "swap", "beyond", "tracked", "bad-post"]))
    commit = n
    kwargs: dict[str, object] = {}
    if shape == "hole":
        del pgnos[draw(st.integers(0, n - 1))]
    elif shape == "swap":
        i = draw(st.integers(0, n - 2))
        pgnos[i], pgnos[i + 1] = pgnos[i + 1], pgnos[i]
    elif shape == "beyond":
        commit = n - 1
    elif shape in ("tracked", "bad-post"):
        kwargs["flags"] = 0
        if shape == "bad-post":
            kwargs["post_apply_checksum"] = CHECKSUM_FLAG | 12345
    data = FileSpec(page_size=512, commit=commit, pages=pgnos, salt=draw(st.integers(0, 9)), **kwargs).build()  # type: ignore[arg-type]
    damage = draw(st.sampled_from(["none", "flip", "truncate", "insert", "delete", "append"]))
    at = draw(st.integers(0, len(data) - 1))
    if damage == "flip":
        data = flip_byte(data, at, draw(st.integers(1, 255)))
    elif damage == "truncate":
        data = data[:at]
    elif damage == "insert":
        data = insert_bytes(data, at, draw(st.binary(min_size=1, max_size=8)))
    elif damage == "delete":
        data = data[:at] + data[at + draw(st.integers(1, 8)) :]
    elif damage == "append":
        data += draw(st.binary(min_size=1, max_size=8))
    return data, shape in ("sound", "tracked") and damage == "none"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(file=damaged_files(), jobs=st.sampled_from([2, 3]))
def test_damaged_files_same_report(
    file: tuple[bytes, bool], jobs: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data, sound = file
    path = tmp_path / "0000000000000001-0000000000000001.ltx"
    path.write_bytes(data)
    with monkeypatch.context() as m:
        spy = SpanSpy(m)
        report = _same_as_one_process(path, jobs)
    if report["findings"]:
        assert spy.proven == 0, "a damaged file was passed by the span path"
    if sound:
        assert report["findings"] == [] and spy.proven == 1
