"""Issue 14, repair against what runs around it: a live replicator (Litestream or ltxkit's own)
makes repair refuse before it changes anything (5); staging directories an interrupted run left
behind are a verify warning and repair removes them (6)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

import harness as H

pytestmark = pytest.mark.litestream

ROOT = Path(__file__).resolve().parent.parent
HEALTHY = ROOT / "fixtures" / "corrupt" / "replicas" / "healthy"
TRUNCATED = ROOT / "fixtures" / "corrupt" / "replicas" / "truncated-increment"


def ltxkit(*args: object, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run(
        [sys.executable, "-m", "ltxkit", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
    )


def dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


# ---- (6) leftover staging directories -------------------------------------------------------------


def test_verify_warns_about_stale_staging_and_repair_removes_it(tmp_path: Path) -> None:
    replica = tmp_path / "replica"
    shutil.copytree(HEALTHY, replica)
    stale = replica / f".ltxkit-staging-{dead_pid()}-abc123"
    stale.mkdir()
    (stale / "L9-0000000000000001-0000000000000009.ltx").write_bytes(b"x" * 4096)
    live = replica / ".ltxkit-staging-1-live"  # pid 1 is alive: a build in progress, not a leftover
    live.mkdir()
    before = H.tree_digest(replica)

    v = ltxkit("verify", replica, "--format", "json")
    assert v.returncode == 0, v.stderr  # a warning
    doc = json.loads(v.stdout)
    assert [(f["code"], f["severity"], f["path"]) for f in doc["findings"]] == [
        ("stale-staging", "warning", str(stale))
    ]
    assert ltxkit("verify", replica, "--fail-on", "warning").returncode == 1
    assert H.tree_digest(replica) == before  # verify never writes

    dry = ltxkit("repair", replica, "--rebuild-snapshot", "--dry-run", "--watch", "0")
    assert dry.returncode == 0 and "would remove 1 stale staging directory" in dry.stdout
    assert stale.is_dir()

    r = ltxkit("repair", replica, "--rebuild-snapshot", "--yes", "--watch", "0")
    assert r.returncode == 0, r.stderr
    assert "removed 1 stale staging directory" in r.stdout and stale.name in r.stdout
    assert not stale.exists() and live.is_dir()
    assert json.loads(ltxkit("verify", replica, "--format", "json").stdout)["findings"] == []


def test_a_replica_holding_only_stale_staging_is_rebuilt_from_the_database(tmp_path: Path) -> None:
    """A replicator killed before its first publish leaves an empty replica and its staging. With
    nothing to rebuild from, repair says to give the database and changes nothing; given it, repair
    removes the staging and publishes a snapshot that Litestream restores."""
    replica = tmp_path / "replica"
    (replica / "ltx").mkdir(parents=True)
    stale = replica / f".ltxkit-staging-{dead_pid()}-abc123"
    stale.mkdir()
    (stale / "L9-0000000000000001-0000000000000001.ltx").write_bytes(b"x" * 100)
    db = tmp_path / "app.db"
    H.make_db(db, rows=50)
    before = H.tree_digest(replica)

    v = ltxkit("verify", replica)
    assert v.returncode == 1 and "--from-db" in v.stdout  # the warning says what removes the staging

    r = ltxkit("repair", replica, "--rebuild-snapshot", "--yes", "--watch", "0")
    assert r.returncode == 1
    assert r.stderr.strip().endswith("use --from-db with the live database"), r.stderr
    assert H.tree_digest(replica) == before  # a refused repair changes nothing

    r = ltxkit("repair", replica, "--rebuild-snapshot", "--from-db", db, "--yes", "--watch", "0")
    assert r.returncode == 0, r.stderr
    assert not stale.exists()
    out = tmp_path / "restored.db"
    restored = H.restore(replica, out)
    assert restored.returncode == 0, restored.stderr
    assert H.logical_dump(out) == H.logical_dump(db)


# ---- (5) a running replicator -------------------------------------------------------------------


def test_repair_refuses_while_ltxkit_replicate_holds_the_database(tmp_path: Path) -> None:
    db = H.make_db(tmp_path / "app.db", rows=40)
    replica = tmp_path / "replica"
    rep = H.LtxkitReplicator(db, replica)
    with rep:
        rep.start()
        assert rep.alive
        r = ltxkit("repair", replica, "--rebuild-snapshot", "--from-db", db, "--yes", "--watch", "0")
        assert r.returncode == 2, r.stdout + r.stderr
        [line] = r.stderr.splitlines()
        assert "ltxkit replicate" in line and f"pid {rep.proc.pid}" in line and "stop it first" in line
        assert "repair plan" not in r.stdout and not (replica / "quarantine").exists()
        rep.stop()
    # stopped: the same command runs (nothing to repair)
    r = ltxkit("repair", replica, "--rebuild-snapshot", "--from-db", db, "--yes", "--watch", "0.2")
    assert r.returncode == 0 and "nothing to repair" in r.stdout, r.stderr


@pytest.mark.parametrize("how", ["no-from-db", "from-db-through-a-link"])
def test_repair_refuses_while_ltxkit_replicate_writes_the_replica(tmp_path: Path, how: str) -> None:
    """Without --from-db, repair looked only for new files during its watch, and an idle
    replicator writes none: repair set files aside under it. Through a symbolic link to the
    database, --from-db looked for the link's lock, not the database's."""
    db = H.make_db(tmp_path / "app.db", rows=40)
    replica = tmp_path / "replica"
    link = tmp_path / "link.db"
    link.symlink_to(db)
    args = ["--from-db", link] if how == "from-db-through-a-link" else []
    rep = H.LtxkitReplicator(db, replica)
    with rep:
        rep.start()
        rep.wait_for(lambda: any(e["event"] == "ready" for e in rep.events()))
        before = H.tree_digest(replica)
        r = ltxkit("repair", replica, "--rebuild-snapshot", *args, "--yes", "--watch", "0")
        assert r.returncode == 2, r.stdout + r.stderr
        [line] = r.stderr.splitlines()
        assert f"ltxkit replicate (pid {rep.proc.pid}" in line and "stop it first" in line, line
        assert "repair plan" not in r.stdout and not (replica / "quarantine").exists()
        assert H.tree_digest(replica) == before
        # the link is the same database: a second replicator through it is refused too
        second = subprocess.run(
            [sys.executable, "-m", "ltxkit", "replicate", str(link), str(tmp_path / "other"), "--once"],
            capture_output=True, text=True, timeout=120, cwd=ROOT,
        )
        assert second.returncode == 2 and "already being replicated" in second.stderr, second.stderr
        assert not (tmp_path / "other").exists() and not (tmp_path / ".link.db-ltxkit").exists()
        rep.stop()


@pytest.mark.parametrize("from_db", [True, False], ids=["from-db", "chain"])
def test_repair_refuses_while_litestream_replicates(tmp_path: Path, from_db: bool) -> None:
    """The issue's case: with `litestream replicate` running and the application writing, repair
    must refuse (exit 2, one line) and change nothing of its own in the replica."""
    db = H.make_db(tmp_path / "app.db", rows=40)
    replica = tmp_path / "replica"
    writer = H.Writer(db)
    stop = threading.Event()

    def write() -> None:
        while not stop.is_set():
            writer.write()
            stop.wait(0.05)

    with H.Replicator(db, replica) as ls:
        ls.wait_for_txid(1)
        t = threading.Thread(target=write)
        t.start()
        try:
            args = ["--from-db", db] if from_db else []
            r = ltxkit("repair", replica, "--rebuild-snapshot", *args, "--yes", "--watch", "1.5")
        finally:
            stop.set()
            t.join()
    writer.close()
    assert r.returncode == 2, r.stdout + r.stderr
    [line] = r.stderr.splitlines()
    assert "stop it first" in line
    assert ("Litestream" in line) if from_db else ("the replica changed while repair watched it" in line)
    assert not list(replica.glob(".ltxkit-staging-*")) and not (replica / "quarantine").exists()


def test_repair_help_promises_only_what_it_checks() -> None:
    r = ltxkit("repair", "--help")
    assert r.returncode == 0
    text = " ".join(r.stdout.split())
    assert "An idle Litestream shows none of these" in text and "--watch" in text
