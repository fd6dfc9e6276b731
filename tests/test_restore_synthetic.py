"""ltxkit restore on replicas built in-test: merge semantics, safety of the output, failure paths.

Byte-identity with the real `litestream restore` is in test_interop_litestream.py.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ltxkit import restore as restore_mod
from ltxkit.format.errors import Code
from ltxkit.replica.storage import LocalStorage
from ltxkit.restore import RestoreError, plan_for, restore_into, restore_to_path
from tests.replica_builder import Db, simple_chain, write_ltx

LTXKIT = [sys.executable, "-m", "ltxkit.cli"]


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", "from ltxkit.cli import main; main()", *args],
                          capture_output=True, text=True, timeout=120)


@pytest.fixture(params=["whole", "streamed"])
def read_mode(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Both ways a planned file is read: whole in one call (small files) or streamed (large ones)."""
    if request.param == "streamed":
        monkeypatch.setattr(restore_mod, "WHOLE_READ_MAX_BYTES", -1)
    return str(request.param)


@pytest.mark.usefixtures("read_mode")
def test_restore_latest_matches_model(tmp_path: Path) -> None:
    db = simple_chain(tmp_path / "r", n=6)
    out = tmp_path / "out.db"
    res = restore_to_path(LocalStorage(tmp_path / "r"), out)
    assert res.txid == 6
    assert out.read_bytes() == db.image()


@pytest.mark.usefixtures("read_mode")
def test_restore_into_any_file_object(tmp_path: Path) -> None:
    db = simple_chain(tmp_path / "r", n=4)
    storage = LocalStorage(tmp_path / "r")
    buf = io.BytesIO()
    restore_into(storage, plan_for(storage), buf)
    assert buf.getvalue() == db.image()


@pytest.mark.usefixtures("read_mode")
def test_shrink_drops_pages_above_final_commit(tmp_path: Path) -> None:
    root = tmp_path / "r"
    db = Db()
    db.write(list(range(1, 21)))
    write_ltx(root, 0, 1, 1, dict(db.pages), db.commit)
    changed = db.write([1, 2], commit=10)  # VACUUM-like shrink
    write_ltx(root, 0, 2, 2, changed, 10)
    changed = db.write([1, 11, 12], commit=12)  # grows again, writing its new pages
    write_ltx(root, 0, 3, 3, changed, 12)
    out = tmp_path / "o.db"
    restore_to_path(LocalStorage(root), out)
    assert out.read_bytes() == db.image()
    assert len(out.read_bytes()) == 12 * 512


@pytest.mark.usefixtures("read_mode")
def test_point_in_time_txid(tmp_path: Path) -> None:
    root = tmp_path / "r"
    db = Db()
    images = {}
    db.write(list(range(1, 9)))
    write_ltx(root, 0, 1, 1, dict(db.pages), db.commit)
    images[1] = db.image()
    for i in range(2, 6):
        write_ltx(root, 0, i, i, db.write([i, 7 + i]), db.commit)
        images[i] = db.image()
    for t in range(1, 6):
        out = tmp_path / f"t{t}.db"
        restore_to_path(LocalStorage(root), out, txid=t)
        assert out.read_bytes() == images[t], t


@pytest.mark.usefixtures("read_mode")
def test_damaged_file_in_plan_leaves_nothing(tmp_path: Path) -> None:
    simple_chain(tmp_path / "r", n=4)
    victim = tmp_path / "r" / "ltx" / "0" / f"{3:016x}-{3:016x}.ltx"
    data = bytearray(victim.read_bytes())
    data[-3] ^= 0xFF  # file checksum
    victim.write_bytes(bytes(data))
    out = tmp_path / "out.db"
    with pytest.raises(RestoreError) as exc:
        restore_to_path(LocalStorage(tmp_path / "r"), out)
    assert exc.value.code == Code.FILE_CHECKSUM_MISMATCH
    assert exc.value.key == "ltx/0/0000000000000003-0000000000000003.ltx"
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["r"]  # no temp file left behind


def test_cli_failure_paths(tmp_path: Path) -> None:
    simple_chain(tmp_path / "r", n=3)
    replica = str(tmp_path / "r")
    out = tmp_path / "out.db"
    # existing output refused, untouched
    out.write_bytes(b"precious")
    r = run_cli("restore", replica, "-o", str(out))
    assert r.returncode == 2 and "already exists" in r.stderr and "Traceback" not in r.stderr
    assert out.read_bytes() == b"precious"
    assert len(r.stderr.strip().splitlines()) == 1
    # --force replaces it
    r = run_cli("restore", replica, "-o", str(out), "--force", "--quiet")
    assert r.returncode == 0, r.stderr
    assert out.read_bytes() != b"precious"
    # unwritable / missing directory
    r = run_cli("restore", replica, "-o", str(tmp_path / "nope" / "x.db"))
    assert r.returncode == 2 and "no such directory" in r.stderr and "Traceback" not in r.stderr
    # gap: same words verify uses, exit 1
    os.unlink(tmp_path / "r" / "ltx" / "0" / f"{2:016x}-{2:016x}.ltx")
    r = run_cli("restore", replica, "-o", str(tmp_path / "g.db"))
    assert r.returncode == 1 and "txid-gap" in r.stderr and "non-contiguous" in r.stderr
    assert not (tmp_path / "g.db").exists()
    # not a replica
    r = run_cli("restore", str(tmp_path / "missing"), "-o", str(tmp_path / "m.db"))
    assert r.returncode == 2 and "Traceback" not in r.stderr


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions: test_limits runs it as nobody")
def test_cli_unwritable_directory(tmp_path: Path) -> None:
    simple_chain(tmp_path / "r", n=2)
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    r = run_cli("restore", str(tmp_path / "r"), "-o", str(ro / "x.db"))
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert list(ro.iterdir()) == []


def test_cli_dry_run_writes_nothing(tmp_path: Path) -> None:
    simple_chain(tmp_path / "r", n=3)
    r = run_cli("restore", str(tmp_path / "r"), "-o", str(tmp_path / "x.db"), "--dry-run")
    assert r.returncode == 0, r.stderr
    assert "0000000000000003" in r.stdout
    assert not (tmp_path / "x.db").exists()


def test_bad_txid_argument(tmp_path: Path) -> None:
    simple_chain(tmp_path / "r", n=2)
    r = run_cli("restore", str(tmp_path / "r"), "-o", str(tmp_path / "x.db"), "--txid", "zz")
    assert r.returncode == 2 and "--txid" in r.stderr and "Traceback" not in r.stderr
