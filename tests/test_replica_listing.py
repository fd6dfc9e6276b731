"""Issue 14 (2b) and 15: what a replica's listing holds besides LTX files, checked against the real
Litestream. A directory or a dangling symlink named like an LTX file makes `litestream restore`
fail, so verify names it (`not-a-file`); a symlinked level directory is followed (Litestream follows
it); a level directory that cannot be read is an error (`unreadable-level`), never skipped."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import harness as H
from ltxkit.format.schema import format_filename

pytestmark = pytest.mark.litestream

ROOT = Path(__file__).resolve().parent.parent
HEALTHY = ROOT / "fixtures" / "corrupt" / "replicas" / "healthy"
NEXT = format_filename(5, 5)  # the TXID after the healthy fixture's last


@pytest.fixture
def replica(tmp_path: Path) -> Path:
    rep = tmp_path / "replica"
    shutil.copytree(HEALTHY, rep)
    return rep


def verify_json(run_ltxkit, rep: Path) -> tuple[int, dict]:
    r = run_ltxkit("verify", rep, "--format", "json")
    assert "Traceback" not in r.stderr
    return r.returncode, json.loads(r.stdout)


def codes_at(doc: dict) -> list[tuple[str, str]]:
    return sorted((f["code"], f["path"]) for f in doc["findings"])


@pytest.mark.parametrize("kind", ["directory", "dangling-symlink"])
def test_ltx_name_that_is_not_a_file_is_named(replica: Path, tmp_path: Path, run_ltxkit, kind: str) -> None:
    odd = replica / "ltx" / "0" / NEXT
    if kind == "directory":
        odd.mkdir()
    else:
        odd.symlink_to(tmp_path / "gone.ltx")
    # the real Litestream lists it as a file and fails
    r = H.restore(replica, tmp_path / "litestream.db")
    assert r.returncode != 0, r.stdout
    assert not (tmp_path / "litestream.db").exists()
    code, doc = verify_json(run_ltxkit, replica)
    assert code == 1
    assert codes_at(doc) == [("not-a-file", str(odd))]
    [finding] = doc["findings"]
    assert finding["severity"] == "error"
    assert ("a directory" if kind == "directory" else "a dangling symbolic link") in finding["message"]
    assert "ltxkit restore" in finding["message"]
    # ltxkit restore still restores what the files hold
    out = run_ltxkit("restore", replica, "-o", tmp_path / "ours.db", "--quiet")
    assert out.returncode == 0, out.stderr
    # repair moves files, not this: it says so instead of "nothing to repair"
    r = run_ltxkit("repair", replica, "--rebuild-snapshot", "--yes", "--watch", "0")
    assert r.returncode == 1 and "not-a-file, which repair --rebuild-snapshot cannot mend" in r.stderr
    assert os.path.lexists(odd) and not (replica / "quarantine").exists()


def test_a_name_ending_in_a_newline_is_no_ltx_file_to_either_tool(replica: Path, tmp_path: Path, run_ltxkit) -> None:
    """Python's `$` matches before a final newline, Go's does not: a valid file named `...ltx\n`
    was read by ltxkit and ignored by Litestream, so the two restored different databases."""
    healthy = tmp_path / "healthy.db"
    assert H.restore(replica, healthy).returncode == 0
    newest = max((replica / "ltx" / "0").glob("*.ltx"))
    odd = replica / "ltx" / "0" / (NEXT + "\n")
    odd.write_bytes(newest.read_bytes())
    theirs, ours = tmp_path / "litestream.db", tmp_path / "ours.db"
    assert H.restore(replica, theirs).returncode == 0
    assert run_ltxkit("restore", replica, "-o", ours, "--quiet").returncode == 0
    assert ours.read_bytes() == theirs.read_bytes() == healthy.read_bytes()
    code, doc = verify_json(run_ltxkit, replica)
    assert code == 0 and codes_at(doc) == [("stray-file", str(odd))], doc["findings"]


def test_symlinked_level_directory_is_followed(replica: Path, tmp_path: Path, run_ltxkit) -> None:
    elsewhere = tmp_path / "level0-elsewhere"
    shutil.move(replica / "ltx" / "0", elsewhere)
    (replica / "ltx" / "0").symlink_to(elsewhere)
    ours, theirs = tmp_path / "ours.db", tmp_path / "theirs.db"
    r = H.restore(replica, theirs)
    assert r.returncode == 0, r.stderr
    code, doc = verify_json(run_ltxkit, replica)
    assert code == 0, doc["findings"]
    assert doc["replicas"][0]["files"] == 6 and doc["replicas"][0]["levels"]["0"]["files"] == 4
    assert run_ltxkit("restore", replica, "-o", ours, "--quiet").returncode == 0
    assert hashlib.sha256(ours.read_bytes()).digest() == hashlib.sha256(theirs.read_bytes()).digest()


def _without_dac(*args: str) -> subprocess.CompletedProcess[str]:
    """The CLI as root without the capabilities that let root read any directory: a 000
    directory is then unreadable, as it is for the user a replica usually belongs to."""
    setpriv = shutil.which("setpriv")
    if os.geteuid() == 0 and setpriv is None:
        pytest.skip("setpriv is needed to drop root's read-anything capabilities")
    prefix = (
        [setpriv, "--inh-caps=-dac_override,-dac_read_search", "--bounding-set=-dac_override,-dac_read_search"]
        if os.geteuid() == 0 and setpriv is not None
        else []
    )
    cmd = [*prefix, sys.executable, "-c", "from ltxkit.cli import main; main()", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=ROOT)


def test_unreadable_level_directory_is_an_error(replica: Path, tmp_path: Path) -> None:
    level1 = replica / "ltx" / "1"
    level1.chmod(0)
    try:
        r = _without_dac("verify", str(replica), "--format", "json")
        assert r.returncode == 1, r.stderr
        doc = json.loads(r.stdout)
        assert codes_at(doc) == [("unreadable-level", str(level1))]
        assert "Permission denied" in doc["findings"][0]["message"]
        # restore refuses rather than planning without the level's files
        rr = _without_dac("restore", str(replica), "-o", str(tmp_path / "x.db"))
        assert rr.returncode == 1 and "unreadable-level" in rr.stderr and str(Path("ltx") / "1") in rr.stderr
        assert not (tmp_path / "x.db").exists()
    finally:
        level1.chmod(0o755)


def test_level_directory_symlink_loop_is_an_error(replica: Path, run_ltxkit) -> None:
    loop = replica / "ltx" / "2"
    loop.symlink_to("2")
    code, doc = verify_json(run_ltxkit, replica)
    assert code == 1
    assert codes_at(doc) == [("unreadable-level", str(loop))]


def test_a_replicators_leftover_temporary_file_is_named_as_one(run_ltxkit) -> None:
    """Litestream writes `NAME.tmp` and renames it: a `kill -9` between the two leaves the file for
    good, a warning on every verify of a healthy replica. It says what the file is and what to do."""
    stray = ROOT / "fixtures" / "corrupt" / "replicas" / "stray-file"
    code, doc = verify_json(run_ltxkit, stray)
    [finding] = doc["findings"]
    assert code == 0 and finding["code"] == "stray-file" and finding["path"].endswith(".ltx.tmp")
    assert "a temporary file a replicator stopped in the middle of writing left behind" in finding["message"]
    assert "delete it" in finding["message"]
