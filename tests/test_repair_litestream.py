"""`ltxkit repair --rebuild-snapshot` on real Litestream replicas damaged the ways LANDSCAPE.md lists.

Each test ends with the real `litestream restore` and, for the database path, a real
`litestream replicate` restarted on the repaired replica: the replica must stay usable.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

import harness as H
from ltxkit.format.schema import format_filename
from ltxkit.repair import RepairError, apply_repair, plan_repair
from ltxkit.replica.s3 import S3Error
from ltxkit.replica.storage import LocalStorage
from ltxkit.verify.engine import check_replica

pytestmark = pytest.mark.litestream

SHAPES = {
    "seed-hole": H.make_seed_shape,
    "growth-hole": H.make_growth_hole_shape,
    "missing-l0": H.make_txid_gap_shape,
    "truncated": H.make_truncated_shape,
    "flipped-byte": H.make_flipped_byte_shape,
}


def contents(root: Path) -> dict[str, str]:
    """sha256 -> relative path of every file below root."""
    out = {}
    for dirpath, _dirs, names in os.walk(root):
        for n in names:
            p = Path(dirpath) / n
            out[hashlib.sha256(p.read_bytes()).hexdigest()] = str(p.relative_to(root))
    return out


@pytest.mark.parametrize("shape", list(SHAPES), ids=list(SHAPES))
def test_repair_from_db_then_replication_resumes(shape: str, tmp_path: Path, run_ltxkit) -> None:
    rep = SHAPES[shape](tmp_path)
    replica = rep.replica_dir
    before = contents(replica)
    assert run_ltxkit("verify", replica).returncode == 1
    assert H.restore(replica, tmp_path / "before.db").returncode != 0  # Litestream cannot restore it

    # the database as an application leaves it: rows in the WAL that no checkpoint has moved into
    # the database file yet (a connection held open: the last one to close would checkpoint them)
    with H.pin_wal(rep.db_path):
        H.write_rows(rep.db_path, 3)
        wal = Path(f"{rep.db_path}-wal")
        assert wal.stat().st_size > 0
        db_file = Path(rep.db_path).read_bytes()

        # dry run: a plan, no change
        r = run_ltxkit("repair", replica, "--rebuild-snapshot", "--from-db", rep.db_path, "--dry-run")
        assert r.returncode == 0, r.stderr
        assert "dry run" in r.stdout
        assert contents(replica) == before

        r = run_ltxkit("repair", replica, "--rebuild-snapshot", "--from-db", rep.db_path, "--yes")
        assert r.returncode == 0, r.stdout + r.stderr
        assert "repaired" in r.stdout
        assert wal.stat().st_size > 0 and Path(rep.db_path).read_bytes() == db_file  # read, not checkpointed
        expected_now = H.logical_dump(rep.db_path)

    v = run_ltxkit("verify", replica, "--format", "json", "--deep")
    assert v.returncode == 0, v.stdout
    assert all(f["severity"] == "warning" for f in json.loads(v.stdout)["findings"])

    restored = tmp_path / "after.db"
    lr = H.restore(replica, restored)
    assert lr.returncode == 0, lr.stderr
    assert H.integrity_check(restored) == "ok"
    assert H.logical_dump(restored) == H.logical_dump(rep.db_path) == expected_now  # the WAL's rows too

    # nothing deleted: every original file is still somewhere in the replica, moved ones in quarantine
    after = contents(replica)
    for digest, rel in before.items():
        assert digest in after, f"{rel} vanished"
        assert after[digest] == rel or after[digest].startswith("quarantine/"), after[digest]
    moved = [rel for d, rel in before.items() if after[d] != rel]
    if moved:
        manifests = list((replica / "quarantine").glob("*/manifest.json"))
        assert len(manifests) == 1
        doc = json.loads(manifests[0].read_text())
        assert sorted(e["original_path"] for e in doc["files"]) == sorted(moved)
        assert all(e["codes"] for e in doc["files"])
        assert str(manifests[0].parent) in r.stdout  # the user is told where

    # the replica stays usable: real Litestream resumes on the same database
    with H.pin_wal(rep.db_path), H.Replicator(rep.db_path, replica, levels=(), snapshot_interval="24h") as ls:
        ls.sync()
        H.write_rows(rep.db_path, 7, after_txn=ls.sync)
        ls.wait_until_caught_up()
    expected = H.logical_dump(rep.db_path)
    theirs, ours = tmp_path / "theirs.db", tmp_path / "ours.db"
    lr = H.restore(replica, theirs)
    assert lr.returncode == 0, lr.stderr
    assert H.logical_dump(theirs) == expected
    r = run_ltxkit("restore", replica, "-o", ours, "--quiet")
    assert r.returncode == 0, r.stderr
    assert H.logical_dump(ours) == expected
    assert ours.read_bytes() == theirs.read_bytes()
    assert run_ltxkit("verify", replica).returncode == 0


def test_repair_from_chain_names_lost_txids(tmp_path: Path, run_ltxkit) -> None:
    rep = H.make_txid_gap_shape(tmp_path)  # L0 3 of 1..6 deleted
    mark2 = next(m for m in rep.marks if m.txid == 2)
    r = run_ltxkit("repair", rep.replica_dir, "--rebuild-snapshot", "--yes")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "0000000000000003..0000000000000006" in r.stdout  # the lost TXIDs, named
    assert run_ltxkit("verify", rep.replica_dir).returncode == 0
    out = tmp_path / "o.db"
    lr = H.restore(rep.replica_dir, out)
    assert lr.returncode == 0, lr.stderr
    assert H.dump_sha256(out) == mark2.dump_sha256
    assert (rep.replica_dir / "ltx" / "9" / format_filename(1, 2)).exists()


def test_repair_on_healthy_replica_changes_nothing(tmp_path: Path, run_ltxkit) -> None:
    rep = H.make_once_replica(tmp_path, increments=3)
    before = H.tree_digest(rep.replica_dir)
    r = run_ltxkit("repair", rep.replica_dir, "--rebuild-snapshot", "--from-db", rep.db_path, "--yes")
    assert r.returncode == 0 and "nothing to repair" in r.stdout
    assert H.tree_digest(rep.replica_dir) == before
    assert sorted(p.name for p in rep.replica_dir.iterdir()) == ["ltx"]


def test_repair_needs_yes_without_a_terminal(tmp_path: Path, run_ltxkit) -> None:
    rep = H.make_truncated_shape(tmp_path)
    before = H.tree_digest(rep.replica_dir)
    r = run_ltxkit("repair", rep.replica_dir, "--rebuild-snapshot", "--from-db", rep.db_path)
    assert r.returncode == 2 and "--yes" in r.stderr
    assert H.tree_digest(rep.replica_dir) == before
    assert sorted(p.name for p in rep.replica_dir.iterdir()) == ["ltx"]  # staging cleaned up


def test_repair_backs_out_when_the_replica_changes(tmp_path: Path) -> None:
    rep = H.make_truncated_shape(tmp_path)
    storage = LocalStorage(rep.replica_dir)
    before = H.tree_digest(rep.replica_dir)
    plan = plan_repair(storage, from_db=Path(rep.db_path))
    assert plan.needed
    # a writer (Litestream) uploads a new file between planning and applying
    newest = max(H.list_ltx(rep.replica_dir, 0), key=lambda n: n.max_txid)
    intruder = rep.replica_dir / "ltx" / "0" / format_filename(newest.max_txid + 1, newest.max_txid + 1)
    intruder.write_bytes(newest.path.read_bytes())
    with pytest.raises(RepairError, match="changed"):
        apply_repair(storage, plan)
    intruder.unlink()
    assert H.tree_digest(rep.replica_dir) == before
    assert sorted(p.name for p in rep.replica_dir.iterdir()) == ["ltx"]


class _FailingStore:
    """The replica's real storage, with an object store's failure injected at chosen calls: the
    `fail_publish_at`-th publish fails, and so does moving any key in `undo_fails` during the
    back-out (the store still failing when repair tries to undo)."""

    def __init__(self, inner: LocalStorage, fail_publish_at: int, undo_fails: set[str] | None = None) -> None:
        self.inner, self.fail_publish_at, self.undo_fails = inner, fail_publish_at, undo_fails or set()
        self.publishes = 0
        self.failed = False

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)

    def publish(self, key: str, staged: Path, **kw: object) -> object:
        self.publishes += 1
        if self.publishes == self.fail_publish_at:
            self.failed = True
            raise S3Error(f"s3://bucket/app: put {key}: connection refused")
        return self.inner.publish(key, staged, **kw)

    def quarantine(self, key: str, new_key: str) -> None:
        if self.failed and key in self.undo_fails:
            raise S3Error(f"s3://bucket/app: get {key}: connection refused")
        self.inner.quarantine(key, new_key)


def test_a_store_failing_mid_repair_is_named_and_everything_goes_back(tmp_path: Path) -> None:
    rep = H.make_truncated_shape(tmp_path)
    storage = LocalStorage(rep.replica_dir)
    before = H.tree_digest(rep.replica_dir)
    plan = plan_repair(storage, from_db=Path(rep.db_path))
    assert plan.quarantine and len(plan.new_files) >= 2
    failing = _FailingStore(storage, fail_publish_at=2)
    with pytest.raises(RepairError) as info:
        apply_repair(failing, plan)  # type: ignore[arg-type]  # the Storage protocol, by delegation
    err = info.value
    assert err.backed_out and err.exit_code == 2  # the store's failure keeps its code: could not run
    assert err.message.startswith(f"publishing {plan.new_files[1].key} failed: s3://bucket/app: put ")
    assert H.tree_digest(rep.replica_dir) == before  # every moved file is back in ltx/
    backed_out = [p for p in (rep.replica_dir / "quarantine").rglob("*.ltx") if "backed-out" in p.parts]
    assert [p.name for p in backed_out] == [Path(plan.new_files[0].key).name]  # never deleted
    assert err.aside is not None and (rep.replica_dir / err.aside) == backed_out[0].parent.parent.parent  # said where


class _MoveInterrupted:
    """An object store's move (copy, then delete the original) interrupted between the two: the
    first move leaves both the original and its copy, then Ctrl-C."""

    def __init__(self, inner: LocalStorage) -> None:
        self.inner, self.moves = inner, 0

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)

    def quarantine(self, key: str, new_key: str) -> None:
        self.moves += 1
        if self.moves == 1:
            self.inner.put_bytes(new_key, self.inner.read_bytes(key))
            raise KeyboardInterrupt
        self.inner.quarantine(key, new_key)


def test_a_move_interrupted_between_copy_and_delete_leaves_no_copy_behind(tmp_path: Path) -> None:
    """Ctrl-C after an object's copy landed in quarantine and before the original went: the back-
    out said "everything was put back" and left a copy as large as the file with no manifest."""
    rep = H.make_truncated_shape(tmp_path)
    storage = LocalStorage(rep.replica_dir)
    before = H.tree_digest(rep.replica_dir)
    plan = plan_repair(storage, from_db=Path(rep.db_path))
    with pytest.raises(RepairError) as info:
        apply_repair(_MoveInterrupted(storage), plan)  # type: ignore[arg-type]
    assert info.value.backed_out and info.value.exit_code == 130 and info.value.message.startswith("interrupted while")
    assert H.tree_digest(rep.replica_dir) == before
    assert list((rep.replica_dir / "quarantine").rglob("*.ltx")) == []


def test_ctrl_c_while_checking_a_published_repair_says_it_was_published(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The repair is in place when its result is checked: an interrupt then said only
    "interrupted", and a user could not tell whether the replica had been changed."""
    import ltxkit.repair as repair_mod

    rep = H.make_truncated_shape(tmp_path)
    storage = LocalStorage(rep.replica_dir)
    plan = plan_repair(storage, from_db=Path(rep.db_path))

    def interrupted(*_a: object, **_k: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(repair_mod, "check_replica", interrupted)
    with pytest.raises(RepairError) as info:
        apply_repair(storage, plan)
    err = info.value
    assert err.applied and err.exit_code == 130
    assert "interrupted after the repair was published" in err.message and "run `ltxkit verify" in err.message
    assert list((rep.replica_dir / "quarantine").rglob("manifest.json"))  # it was applied
    monkeypatch.undo()
    assert check_replica(storage, str(rep.replica_dir), content=True).errors == []


def test_a_back_out_the_store_refuses_in_part_still_undoes_the_rest_and_says_what_is_left(tmp_path: Path) -> None:
    rep = H.make_truncated_shape(tmp_path)
    storage = LocalStorage(rep.replica_dir)
    before = H.tree_digest(rep.replica_dir)
    plan = plan_repair(storage, from_db=Path(rep.db_path))
    first = plan.new_files[0].key
    failing = _FailingStore(storage, fail_publish_at=2, undo_fails={first})
    with pytest.raises(RepairError) as info:
        apply_repair(failing, plan)  # type: ignore[arg-type]
    err = info.value
    assert not err.backed_out
    assert f"{first} (published by this repair) is still in place" in err.message
    assert "half-repaired" in err.message and "put " in err.message  # the failed publish, not the undo
    # the undo went on past the step that failed: the moved originals are back
    assert {k: v for k, v in H.tree_digest(rep.replica_dir).items() if k in before} == before


class _SilentStore(_FailingStore):
    """As `_FailingStore`, but the store stops answering: every back-out step times out."""

    def __init__(self, inner: LocalStorage, fail_publish_at: int) -> None:
        super().__init__(inner, fail_publish_at)
        self.undo_tries = 0

    def quarantine(self, key: str, new_key: str) -> None:
        if self.failed:
            self.undo_tries += 1
            raise S3Error(f"s3://bucket/app: copy {key}: timed out: did not answer (gave up after 60.0 s)",
                          unreachable=True)
        self.inner.quarantine(key, new_key)


def test_a_back_out_stops_at_the_first_step_the_store_does_not_answer(tmp_path: Path) -> None:
    """Against a server that hung mid-repair each back-out step waited out its timeout (60 s and
    retries): Ctrl-C took three minutes to end. The first unanswered step ends the back-out, and
    the message says what was not tried."""
    rep = H.make_truncated_shape(tmp_path)
    storage = LocalStorage(rep.replica_dir)
    plan = plan_repair(storage, from_db=Path(rep.db_path))
    assert len(plan.quarantine) + 1 >= 2  # more than one step to undo
    silent = _SilentStore(storage, fail_publish_at=2)
    with pytest.raises(RepairError) as info:
        apply_repair(silent, plan)  # type: ignore[arg-type]
    err = info.value
    assert silent.undo_tries == 1
    assert not err.backed_out and "half-repaired" in err.message
    assert "the store stopped answering, so no step after that was tried" in err.message
    assert "not tried" in err.message
