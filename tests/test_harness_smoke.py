"""Smoke tests for the `harness` package: the harness really drives Litestream 0.5.17, and its
private LTX codec (an independent oracle) agrees with ltxkit's on real files.

They also pin down what real ``litestream restore`` does with each damage shape, so a change of
Litestream behaviour shows up here first.
"""

from __future__ import annotations

import itertools
import os
import shutil
import signal
from pathlib import Path

import pytest

import harness as H
from harness.ltxcodec import _read_ltx, _verify_ltx_bytes
from ltxkit.format import LTXReader

needs_litestream = pytest.mark.litestream


def _restore_ok(replica_dir: Path, out: Path, **kw: object) -> Path:
    r = H.restore(replica_dir, out, **kw)  # type: ignore[arg-type]
    assert r.returncode == 0, r.stderr
    assert H.integrity_check(out) == "ok"
    return out


# ---------------------------------------------------------------------------------------------
# no binary needed
# ---------------------------------------------------------------------------------------------


def test_make_db_and_write_rows_are_deterministic(tmp_path: Path) -> None:
    a = H.make_db(tmp_path / "a.db", page_size=512, rows=10, row_bytes=100)
    b = H.make_db(tmp_path / "b.db", page_size=512, rows=10, row_bytes=100)
    assert H.write_rows(a, 5, size=100) == 15
    assert H.write_rows(b, 5, size=100, per_txn=5) == 15
    assert H.logical_dump(a) == H.logical_dump(b)
    assert H.execute(a, "PRAGMA page_size")[0][0] == 512
    assert H.execute(a, "PRAGMA journal_mode")[0][0] == "wal"
    # db_bytes_equal: a byte copy is equal, one changed row is not, a changed header counter is
    # masked only with ignore_header
    c = tmp_path / "c.db"
    H.checkpoint(a)
    c.write_bytes(a.read_bytes())
    assert H.db_bytes_equal(a, c) and H.db_bytes_equal(a, c, ignore_header=False)
    image = bytearray(c.read_bytes())
    image[24:28] = (int.from_bytes(image[24:28], "big") + 7).to_bytes(4, "big")  # file change counter
    c.write_bytes(bytes(image))
    assert H.db_bytes_equal(a, c) and not H.db_bytes_equal(a, c, ignore_header=False)
    H.execute(c, f"UPDATE {H.db.TABLE} SET v = zeroblob(100) WHERE id = 3")
    assert not H.db_bytes_equal(a, c)
    assert H.logical_dump(a) != H.logical_dump(c)
    with pytest.raises(FileExistsError):
        H.make_db(a)


def test_config_overrides_merge(tmp_path: Path) -> None:
    cfg = H._build_config(
        tmp_path / "x.db",
        tmp_path / "r",
        {"snapshot": {"interval": "5s"}, "logging": None},
        {"replica": {"sync-interval": "1s"}},
        levels=("1s",),
    )
    assert cfg["snapshot"] == {"interval": "5s", "retention": "24h"}
    assert "logging" not in cfg
    assert cfg["levels"] == [{"interval": "1s"}]
    assert cfg["dbs"][0]["replica"] == {
        "type": "file",
        "path": str((tmp_path / "r").resolve()),
        "sync-interval": "1s",
    }
    assert H.rfc3339_ms(1_700_000_000_123) == "2023-11-14T22:13:20.123Z"


# ---------------------------------------------------------------------------------------------
# real litestream
# ---------------------------------------------------------------------------------------------


@needs_litestream
def test_litestream_bin() -> None:
    path = H.litestream_bin()
    assert os.access(path, os.X_OK)


@needs_litestream
def test_once_chain_force_snapshot_and_private_codec(tmp_path: Path) -> None:
    rep = H.make_once_replica(tmp_path, 4096, increments=4)
    assert [(n.level, n.min_txid, n.max_txid) for n in rep.files()] == [(0, t, t) for t in range(1, 6)]
    first = H._read_ltx(rep.files()[0].path)
    assert [p for p, _ in first.pages] == list(range(1, first.commit + 1))  # L0 1-1 is a snapshot
    assert first.flags == 2  # Litestream 0.5.x writes every file with the no-checksum flag

    # -force-snapshot works together with -config and writes ltx/9/<1>-<max>.ltx
    with H.pin_wal(rep.db_path):
        H.write_rows(rep.db_path, 3)
        H.replicate_once(rep.db_path, rep.replica_dir, force_snapshot=True)
    assert [(n.min_txid, n.max_txid) for n in rep.files(9)] == [(1, 6)]
    assert H.max_txid(rep.replica_dir, 0) == 6

    out = _restore_ok(rep.replica_dir, tmp_path / "latest.db")
    assert H.db_content_equal(out, rep.db_path)
    assert H.db_bytes_equal(out, rep.db_path)
    for m in rep.marks:
        o = _restore_ok(rep.replica_dir, tmp_path / f"pit{m.txid}.db", txid=m.txid)
        assert H.dump_sha256(o) == m.dump_sha256 and H.row_count(o) == m.rows

    # the private codec: real files verify, and a replica re-encoded by it still restores
    copy = tmp_path / "reencoded"
    shutil.copytree(rep.replica_dir, copy)
    for n in H.list_ltx(copy):
        assert H._verify_ltx_bytes(n.path.read_bytes()), n.path
        mtime = n.path.stat().st_mtime_ns
        H._rewrite_ltx(n.path, lambda f: None)
        assert H._verify_ltx_bytes(n.path.read_bytes()), n.path
        assert n.path.stat().st_mtime_ns == mtime
    out2 = _restore_ok(copy, tmp_path / "reencoded.db")
    assert H.db_bytes_equal(out, out2)


@needs_litestream
def test_replicator_sync_kill9_restart(tmp_path: Path) -> None:
    db = H.make_db(tmp_path / "k.db", rows=5)
    rdir = tmp_path / "k-replica"
    with H.Replicator(db, rdir, levels=(), snapshot_interval="24h") as ls:
        txid, replicated = ls.sync()
        assert txid == replicated == 1
        H.write_rows(db, 3, after_txn=ls.sync)
        assert H.max_txid(rdir, 0) == 4
        pid = ls.pid
        assert ls.kill9() == -signal.SIGKILL
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)  # type: ignore[arg-type]
        H.write_rows(db, 2)  # Litestream is down; WAL pinned by nobody -> may be checkpointed
        ls.start()
        assert ls.wait_until_caught_up() >= 5
        assert ls.stop() == 0
        assert "litestream shut down" in ls.log_text()
    assert not ls.alive and not H._LIVE
    out = _restore_ok(rdir, tmp_path / "k-out.db")
    assert H.db_content_equal(out, db)


REPLICA_CASES = {
    "4096": {"page_size": 4096},
    "512": {"page_size": 512},
    "65536": {"page_size": 65536},
    "vacuum+checkpoints": {"page_size": 4096, "vacuum": True, "litestream_checkpoints": True},
    "retention": {"page_size": 4096, "retention": True},
    "l0-only": {"page_size": 4096, "with_compactions": False, "with_snapshots": False},
}


@needs_litestream
@pytest.mark.parametrize("case", list(REPLICA_CASES))
def test_make_replica(tmp_path: Path, case: str) -> None:
    kw = REPLICA_CASES[case]
    rep = H.make_replica(tmp_path, **kw)  # type: ignore[arg-type]
    levels = {n.level for n in rep.files()}
    if case == "l0-only":
        assert levels == {0}
    else:
        assert {0, 1, 2, 9} <= levels
        assert len(rep.files(1)) >= 2
        # the replica ends with L0 files no compaction covers yet
        assert (
            H.max_txid(rep.replica_dir, 0) > H.max_txid(rep.replica_dir, 1) > H.max_txid(rep.replica_dir, 9)
        )
    for n in rep.files():
        f = H._read_ltx(n.path)
        assert f.page_size == rep.page_size
        assert H.ltx_timestamp_ms(n.path) == n.path.stat().st_mtime_ns // 1_000_000  # mtime = header time

    out = _restore_ok(rep.replica_dir, tmp_path / "latest.db")
    assert H.db_content_equal(out, rep.db_path)
    assert H.db_bytes_equal(out, rep.db_path)

    if case == "vacuum+checkpoints":
        l0 = [H._read_ltx(n.path) for n in rep.files(0)]
        commits = [f.commit for f in l0]
        assert any(b < a for a, b in itertools.pairwise(commits)), commits  # the database shrank
        assert len({(f.wal_salt1, f.wal_salt2) for f in l0 if f.wal_size}) > 1  # the WAL restarted

    first_l0 = min(n.min_txid for n in rep.files(0))
    if case == "retention":
        assert first_l0 > 1
    boundaries = {n.max_txid for n in rep.files()}
    for m in rep.marks:
        o = tmp_path / f"pit{m.txid}.db"
        if m.txid < first_l0 and m.txid not in boundaries:
            r = H.restore(rep.replica_dir, o, txid=m.txid)
            assert r.returncode == 1 and "no matching backup files available" in r.stderr
            continue
        _restore_ok(rep.replica_dir, o, txid=m.txid)
        assert H.dump_sha256(o) == m.dump_sha256

    # -timestamp: a file counts when its CreatedAt (= mtime = header timestamp) is strictly
    # before the given time, and the time must not be after the newest file.
    later = {m.timestamp_ms for m in rep.marks}
    for m in rep.marks[len(rep.marks) // 2 : -1]:
        if m.txid < first_l0 or m.timestamp_ms + 1 in later:
            continue
        o = _restore_ok(
            rep.replica_dir, tmp_path / f"ts{m.txid}.db", timestamp=H.rfc3339_ms(m.timestamp_ms + 1)
        )
        assert H.dump_sha256(o) == m.dump_sha256
        break
    newest = rep.marks[-1].timestamp_ms
    r = H.restore(rep.replica_dir, tmp_path / "too-late.db", timestamp=H.rfc3339_ms(newest + 1))
    assert r.returncode == 1 and "timestamp does not exist" in r.stderr


SHAPES = {
    # builder: text `litestream restore` (latest) prints on stderr
    "seed": (H.make_seed_shape, "nonsequential page numbers in snapshot transaction"),
    "growth": (H.make_growth_hole_shape, "nonsequential page numbers in snapshot transaction"),
    "gap": (H.make_txid_gap_shape, "cannot calc restore plan: non-contiguous ltx files"),
    "truncated": (H.make_truncated_shape, "unexpected EOF"),
    "flipped": (H.make_flipped_byte_shape, "file checksum mismatch"),
}


@needs_litestream
@pytest.mark.parametrize("shape", list(SHAPES))
def test_damage_shapes_break_real_restore(tmp_path: Path, shape: str) -> None:
    build, message = SHAPES[shape]
    d = build(tmp_path)
    assert d.replica_dir.is_dir() and d.db_path.is_file()
    assert d.damaged_file.exists() == (shape != "gap")
    r = H.restore(d.replica_dir, tmp_path / "out.db")
    assert r.returncode == 1, (d.detail, r.stdout, r.stderr)
    assert message in r.stderr, r.stderr
    assert not (tmp_path / "out.db").exists()
    # history before the damage is still restorable
    out = _restore_ok(d.replica_dir, tmp_path / "before.db", txid=2)
    assert H.dump_sha256(out) == next(m.dump_sha256 for m in d.marks if m.txid == 2)


@needs_litestream
def test_seed_recipe_is_not_natural_on_0_5_17(tmp_path: Path) -> None:
    d = H.make_seed_shape(tmp_path)
    # kill -9 + TRUNCATE checkpoint while down: Litestream uploads a full-database L0 instead
    assert d.natural is False
    assert d.damaged_file.parent.name == "9"
    assert 'reason="wal truncated by another process"' in d.log_path.read_text()  # type: ignore[union-attr]


@needs_litestream
def test_mixed_state_shape_restores_silently_wrong(tmp_path: Path) -> None:
    d = H.make_mixed_state_shape(tmp_path)
    assert d.natural
    out = tmp_path / "out.db"
    r = H.restore(d.replica_dir, out)
    assert r.returncode == 0, r.stderr
    assert H.integrity_check(out) == "ok"
    assert H.row_count(out) < H.row_count(d.db_path)


@needs_litestream
def test_the_private_codec_and_ltxkit_read_real_files_alike(tmp_path: Path) -> None:
    """Two codecs that share no code, one written against the Go reference's behaviour: on every
    file real Litestream writes they must see the same header, pages and trailer."""
    rep = H.make_replica(tmp_path, page_size=4096)
    files = rep.files()
    assert {0, 1, 9} <= {f.level for f in files}
    for f in files:
        theirs = _read_ltx(f.path)
        assert _verify_ltx_bytes(f.path.read_bytes())
        with open(f.path, "rb") as fh:
            reader = LTXReader(fh)
            ours = list(reader.pages())
        assert reader.info is not None
        hdr = reader.header
        assert (theirs.flags, theirs.page_size, theirs.commit, theirs.min_txid, theirs.max_txid, theirs.timestamp) == (
            hdr.flags,
            hdr.page_size,
            hdr.commit,
            hdr.min_txid,
            hdr.max_txid,
            hdr.timestamp,
        )
        assert theirs.pages == ours
        assert (theirs.post_apply, theirs.file_checksum) == (
            reader.info.trailer.post_apply_checksum,
            reader.info.trailer.file_checksum,
        )
