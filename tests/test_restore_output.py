"""What `restore` does to the path it is given: a new file honours the umask, a replaced file
keeps its mode, and anything that is not a regular file (a symlink, a FIFO, a directory) is
refused, left exactly as it was (`ltxkit/replica/storage.py: atomic_output`)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.replica_builder import simple_chain

CLI = [sys.executable, "-c", "from ltxkit.cli import main; main()"]


def run(*args: object, umask: int = 0o022) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=lambda: os.umask(umask),
    )


@pytest.fixture
def replica(tmp_path: Path) -> Path:
    simple_chain(tmp_path / "r", n=3)
    return tmp_path / "r"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize(("umask", "expected"), [(0o077, 0o600), (0o022, 0o644), (0o027, 0o640)])
def test_a_new_output_honours_the_umask(replica: Path, tmp_path: Path, umask: int, expected: int) -> None:
    out = tmp_path / "new.db"
    r = run("restore", replica, "-o", out, "--quiet", umask=umask)
    assert r.returncode == 0, r.stderr
    assert mode(out) == expected


def test_a_replaced_output_keeps_its_mode(replica: Path, tmp_path: Path) -> None:
    out = tmp_path / "app.db"
    out.write_bytes(b"old")
    out.chmod(0o600)
    r = run("restore", replica, "-o", out, "--force", "--quiet")
    assert r.returncode == 0, r.stderr
    assert out.read_bytes() != b"old" and mode(out) == 0o600


def test_a_symlink_is_refused_and_left_alone(replica: Path, tmp_path: Path) -> None:
    target = tmp_path / "target.db"
    target.write_bytes(b"precious")
    link = tmp_path / "link.db"
    link.symlink_to(target)
    for args in ((), ("--force",)):
        r = run("restore", replica, "-o", link, "--quiet", *args)
        assert r.returncode == 2, r.stderr  # existing output or a link as output: could not run
        assert len(r.stderr.splitlines()) == 1 and "Traceback" not in r.stderr
    assert "symbolic link" in r.stderr
    assert link.is_symlink() and os.readlink(link) == str(target) and target.read_bytes() == b"precious"


@pytest.mark.parametrize("kind", ["fifo", "directory"])
def test_what_is_not_a_regular_file_is_refused(replica: Path, tmp_path: Path, kind: str) -> None:
    out = tmp_path / "thing"
    if kind == "fifo":
        os.mkfifo(out)
    else:
        out.mkdir()
    before = out.lstat()
    r = run("restore", replica, "-o", out, "--force", "--quiet")
    assert r.returncode == 2, r.stderr
    assert "not a regular file" in r.stderr and "Traceback" not in r.stderr
    after = out.lstat()
    assert stat.S_IFMT(after.st_mode) == stat.S_IFMT(before.st_mode) and after.st_ino == before.st_ino
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".thing")] == []  # no temp file left


def test_timestamp_needs_a_zone_and_outside_the_window_says_what_is_there(replica: Path, tmp_path: Path) -> None:
    """As `litestream restore -timestamp`: RFC 3339 with a zone. simple_chain stamps TXID n at
    1_700_000_000_000 + n ms (file mtime = header time, as Litestream's file backend)."""
    r = run("restore", replica, "-o", tmp_path / "a.db", "--timestamp", "2023-11-14T22:13:20")
    assert r.returncode == 2 and "give a zone" in r.stderr and not (tmp_path / "a.db").exists()
    r = run("restore", replica, "-o", tmp_path / "b.db", "--timestamp", "2020-01-01T00:00:00Z")
    assert r.returncode == 2 and not (tmp_path / "b.db").exists()  # the argument is at fault, not the replica
    assert "the earliest restorable time is just after 2023-11-14T22:13:20.001Z" in r.stderr, r.stderr
    # after the newest file: refused, as Litestream refuses it ("timestamp does not exist")
    r = run("restore", replica, "-o", tmp_path / "later.db", "--timestamp", "2030-01-01T00:00:00+02:00", "--quiet")
    assert r.returncode == 2 and not (tmp_path / "later.db").exists()
    assert "no restore point is that recent: the newest file (ltx/0/" in r.stderr, r.stderr


def test_a_txid_compaction_merged_away_is_a_bad_target_naming_the_nearest_restore_points(tmp_path: Path) -> None:
    """TXIDs 2 and 3 live only inside the L1 file 1-4: no restore ends there. That was exit 1 (data
    at fault) with "the chain reaches 0000000000000001", while the replica is sound."""
    from tests.replica_builder import write_ltx

    root = tmp_path / "r"
    db = simple_chain(root, n=4)
    write_ltx(root, 1, 1, 4, dict(db.pages), db.commit)
    for i in (5, 6):
        write_ltx(root, 0, i, i, db.write([2, i + 8]), db.commit)
    for i in (2, 3, 4):
        (root / "ltx" / "0" / f"{i:016x}-{i:016x}.ltx").unlink()
    r = run("restore", root, "-o", tmp_path / "two.db", "--txid", "2")
    assert r.returncode == 2 and not (tmp_path / "two.db").exists(), r.stderr
    assert "TXID 0000000000000002 is not a restore point" in r.stderr, r.stderr
    assert "the nearest are 0000000000000001 and 0000000000000004" in r.stderr, r.stderr
    assert run("restore", root, "-o", tmp_path / "four.db", "--txid", "4").returncode == 0
    r = run("restore", root, "-o", tmp_path / "nine.db", "--txid", "9")  # past the latest, 6
    assert r.returncode == 2 and "chain reaches 0000000000000006" in r.stderr, r.stderr
    # a replica that does not restore is still the data's fault, target or not
    (root / "ltx" / "0" / f"{5:016x}-{5:016x}.ltx").unlink()
    r = run("restore", root, "-o", tmp_path / "six.db", "--txid", "6")
    assert r.returncode == 1, r.stderr


def test_an_output_that_is_a_directory_is_named_so_not_offered_force(replica: Path, tmp_path: Path) -> None:
    """It said "already exists (use --force to replace it)", and --force then refused it too."""
    target = tmp_path / "somewhere"
    target.mkdir()
    for extra in ((), ("--force",)):
        r = run("restore", replica, "-o", target, *extra)
        assert r.returncode == 2 and "--force" not in r.stderr, r.stderr
        assert "is a directory" in r.stderr or "not a regular file" in r.stderr, r.stderr
    assert list(target.iterdir()) == []
