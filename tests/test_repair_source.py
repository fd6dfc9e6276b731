"""Issue 14 (1): `repair --from-db` compares the database with the replica's newest restore point
page by page. The plan's `source check:` line gives identical / changed / added / removed pages
(or "identical" when the checksums agree); a database of the same schema whose shared pages are
mostly different is refused without --force-source."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import harness as H

ROOT = Path(__file__).resolve().parent.parent
HEALTHY = ROOT / "fixtures" / "corrupt" / "replicas" / "healthy"


def ltxkit(*args: object) -> subprocess.CompletedProcess[str]:
    watch = ["--watch", "0"] if args[0] == "repair" else []  # nothing replicates here
    return subprocess.run(
        [sys.executable, "-m", "ltxkit", *map(str, args), *watch],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
    )


def source_line(stdout: str) -> str:
    return next(line for line in stdout.splitlines() if "source check" in line)


@pytest.mark.litestream
def test_the_real_source_shows_its_page_counts_and_an_unrelated_one_is_refused(tmp_path: Path) -> None:
    rep = H.make_truncated_shape(tmp_path)  # L0 TXID 3 of 1..5 cut: the repair keeps TXIDs 1..2
    before = H.tree_digest(rep.replica_dir)
    r = ltxkit("repair", rep.replica_dir, "--rebuild-snapshot", "--from-db", rep.db_path, "--dry-run")
    assert r.returncode == 0, r.stderr
    line = " ".join(source_line(r.stdout).split())
    m = re.search(r"pages: ([\d,]+) identical, ([\d,]+) changed, ([\d,]+) added, ([\d,]+) removed", line)
    assert m is not None, line
    identical, changed, added, removed = (int(g.replace(",", "")) for g in m.groups())
    assert "restore point TXID 0000000000000002" in line
    assert identical > changed and changed >= 1 and removed == 0  # the database grew since TXID 2
    assert identical + changed + added == H.execute(rep.db_path, "PRAGMA page_count")[0][0]

    # the same schema and page size, other contents: most shared pages differ
    other = H.make_db(tmp_path / "other.db", rows=400, row_bytes=700)
    r = ltxkit("repair", rep.replica_dir, "--rebuild-snapshot", "--from-db", other, "--yes")
    assert r.returncode == 1, r.stdout + r.stderr
    [err] = r.stderr.splitlines()
    assert "does not look like this replica's database" in err and "pages both have are identical" in err
    assert "--force-source" in err and "repair plan" not in r.stdout
    assert H.tree_digest(rep.replica_dir) == before

    r = ltxkit("repair", rep.replica_dir, "--rebuild-snapshot", "--from-db", other, "--dry-run", "--force-source")
    assert r.returncode == 0, r.stderr
    assert "NOT the replica's database by its pages" in " ".join(source_line(r.stdout).split())
    assert H.tree_digest(rep.replica_dir) == before


def test_a_database_unchanged_since_the_restore_point_is_identical(tmp_path: Path) -> None:
    replica = tmp_path / "replica"
    shutil.copytree(HEALTHY, replica)
    db = tmp_path / "app.db"
    assert ltxkit("restore", replica, "-o", db, "--quiet").returncode == 0  # the latest state, TXID 4
    # damage a file the latest plan (the L9 snapshot) does not use: repair has work to do
    old = replica / "ltx" / "0" / "0000000000000002-0000000000000002.ltx"
    old.write_bytes(old.read_bytes()[:120])
    r = ltxkit("repair", replica, "--rebuild-snapshot", "--from-db", db, "--dry-run")
    assert r.returncode == 0, r.stdout + r.stderr
    line = " ".join(source_line(r.stdout).split())
    assert "restore point TXID 0000000000000004" in line
    assert "pages: identical (the database checksum equals the restore point's)" in line


@pytest.mark.litestream
@pytest.mark.parametrize("replicator", ["litestream", "ltxkit"])
def test_the_real_source_that_changed_most_pages_is_known_by_its_replicators_state(
    tmp_path: Path, replicator: str
) -> None:
    """A small database that grew since its newest good restore point has mostly new pages: the
    comparison refused the right database ("does not look like this replica's database") and sent
    the user to --force-source, which turns the check off. Its replicator's own state beside it
    (Litestream's local copies of its files, ltxkit's saved state) says which replica it feeds."""
    db = H.make_db(tmp_path / "app.db", rows=4, row_bytes=3000)
    replica = tmp_path / "replica"
    for _ in range(4):
        H.write_rows(db, 1, size=3000)
        if replicator == "litestream":
            H.replicate_once(db, replica)
        else:
            assert H.run_once(db, replica, "--levels", "none").returncode == 0
    victim = sorted((replica / "ltx" / "0").glob("*.ltx"))[2]
    data = bytearray(victim.read_bytes())
    data[150] ^= 0xFF
    victim.write_bytes(bytes(data))
    H.execute(db, "UPDATE t SET v = randomblob(3000)")  # nearly every page of the small database changes
    before = H.tree_digest(replica)
    r = ltxkit("repair", replica, "--rebuild-snapshot", "--from-db", db, "--dry-run")
    assert r.returncode == 0, r.stdout + r.stderr
    line = " ".join(source_line(r.stdout).split())
    said = "Litestream's local copy of" if replicator == "litestream" else "ltxkit replicate's state beside it"
    assert "most pages changed since, but " + said in line, line
    assert H.tree_digest(replica) == before
    # a copy of the database is not the database its replicator's state is beside
    other = tmp_path / "copy.db"
    other.write_bytes(db.read_bytes())
    r = ltxkit("repair", replica, "--rebuild-snapshot", "--from-db", other, "--dry-run")
    assert r.returncode == 1 and "does not look like this replica's database" in r.stderr, r.stdout + r.stderr
