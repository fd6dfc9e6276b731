"""Issue 14 (14): an error names what the user typed, never one of ltxkit's temp files.

The directory is made read-only for real: a read-only bind mount in a mount namespace of the
command's own (`unshare -m`), so the rest of the machine never sees it. Tests run as root, for
whom a chmod would not stop a write."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import harness as H

ROOT = Path(__file__).resolve().parent.parent
TRUNCATED = ROOT / "fixtures" / "corrupt" / "replicas" / "truncated-increment"
HEALTHY = ROOT / "fixtures" / "corrupt" / "replicas" / "healthy"

_RO = 'mount --bind "$1" "$1" && mount -o remount,ro,bind "$1" && shift && exec "$@"'


def read_only(directory: Path, *args: object) -> subprocess.CompletedProcess[str]:
    """`ltxkit ARGS` with `directory` mounted read-only for that command alone."""
    cmd = ["unshare", "-m", "sh", "-c", _RO, "sh", str(directory), sys.executable, "-m", "ltxkit", *map(str, args)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT, stdin=subprocess.DEVNULL)
    if "mount:" in r.stderr or "unshare:" in r.stderr:
        pytest.skip(f"cannot make a read-only mount here: {r.stderr.strip()}")
    return r


@pytest.fixture
def ro_dir(tmp_path: Path) -> Path:
    if shutil.which("unshare") is None:
        pytest.skip("unshare is needed")
    d = tmp_path / "ro"
    d.mkdir()
    return d


def test_restore_into_a_read_only_directory_names_the_output(ro_dir: Path) -> None:
    out = ro_dir / "x.db"
    r = read_only(ro_dir, "restore", HEALTHY, "-o", out, "--quiet")
    assert r.returncode == 2
    assert r.stderr == f"ltxkit: {out}: Read-only file system\n"
    assert list(ro_dir.iterdir()) == []


def test_snapshot_into_a_read_only_directory_names_the_output(ro_dir: Path, tmp_path: Path) -> None:
    db = H.make_db(tmp_path / "app.db", rows=10)
    out = ro_dir / "s.ltx"
    r = read_only(ro_dir, "snapshot", db, "-o", out)
    assert r.returncode == 2
    assert r.stderr == f"ltxkit: {out}: Read-only file system\n"


def test_verify_report_into_a_read_only_directory_names_the_report(ro_dir: Path) -> None:
    out = ro_dir / "report.xml"
    r = read_only(ro_dir, "verify", HEALTHY, "-f", "junit", "-o", out)
    assert r.returncode == 2
    assert r.stderr.splitlines()[-1] == f"ltxkit: {out}: Read-only file system"


def test_repair_of_a_read_only_replica_names_the_replica(ro_dir: Path) -> None:
    replica = ro_dir / "replica"
    shutil.copytree(TRUNCATED, replica)
    r = read_only(ro_dir, "repair", replica, "--rebuild-snapshot", "--yes", "--watch", "0")
    assert r.returncode == 2, r.stdout + r.stderr
    [line] = r.stderr.splitlines()
    assert line.startswith(f"ltxkit: {replica}: Read-only file system"), line
    assert ".ltxkit-staging-" not in line


def test_an_output_given_as_a_url_is_refused_not_written_to_a_directory_named_s3(tmp_path: Path) -> None:
    """`-o s3://bucket/report.txt` became the local path `s3:/bucket/report.txt`: written under a
    directory `s3:` in the current one, or refused naming that mangled path."""
    db = H.make_db(tmp_path / "app.db", rows=5)
    for args in (
        ("verify", HEALTHY, "-o", "s3://replicas/report.txt?endpoint=http://127.0.0.1:9"),
        ("restore", HEALTHY, "-o", "s3://replicas/app.db"),
        ("snapshot", db, "-o", "s3://replicas/app.ltx"),
    ):
        r = subprocess.run([sys.executable, "-m", "ltxkit", *map(str, args)], capture_output=True, text=True,
                           timeout=120, cwd=tmp_path, stdin=subprocess.DEVNULL)
        assert r.returncode == 2, (args, r.stderr)
        assert r.stderr.startswith(f"ltxkit: {args[3].split('?')[0]}"), r.stderr
        assert "-o takes a local file, not a URL" in r.stderr
    assert not (tmp_path / "s3:").exists()
