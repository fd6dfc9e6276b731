"""The `ltxkit` command line as a user sees it: real subprocesses, exit codes, stdout/stderr, files.

Exit codes: 0 ok, 1 defects / refused for a reason about the data, 2 could not run. Errors are one
line on stderr starting "ltxkit: ", never a traceback (unless --debug).
"""

from __future__ import annotations

import json
import os
import random
import sqlite3
import struct
import subprocess
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest

from ltxkit import __version__
from ltxkit.format.checksum import CHECKSUM_FLAG, crc64
from tests.filespec import FileSpec, page_bytes, random_page
from tests.replica_builder import simple_chain

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures" / "corrupt"
FILES = FIXTURES / "files"
REPLICAS = FIXTURES / "replicas"

Run = Callable[..., subprocess.CompletedProcess[str]]


def run_all(run: Run, commands: Sequence[Sequence[object]]) -> list[subprocess.CompletedProcess[str]]:
    """Run independent CLI invocations concurrently (each is still its own subprocess)."""
    with ThreadPoolExecutor(max_workers=4) as pool:
        return list(pool.map(lambda args: run(*args), commands))


def assert_one_line_error(r: subprocess.CompletedProcess[str], *, naming: str | None = None) -> None:
    where = f"{r.args[3:]}: rc={r.returncode} stdout={r.stdout!r} stderr={r.stderr!r}"
    assert r.returncode != 0, where
    assert "Traceback" not in r.stdout + r.stderr, where
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("ltxkit: "), where
    if naming is not None:
        assert naming in lines[0], where


# ---- inspect ------------------------------------------------------------------------------------

PAGE = 1024
PAGES = {
    2: random_page(PAGE, 7),  # incompressible: the LZ4 block is larger than the page
    5: page_bytes(5, PAGE, salt=3),
    9: bytes(range(256)) * (PAGE // 256),
}
SPEC = FileSpec(
    page_size=PAGE,
    min_txid=0x1A2B,
    max_txid=0x1A2F,
    commit=12,
    pages=sorted(PAGES.items()),
    flags=0,  # checksum tracking on: the pre-apply checksum is set
    timestamp=1_767_225_600_123,
    pre_apply_checksum=CHECKSUM_FLAG | 0x0123_4567_89AB_CDEF,
    wal_offset=32 + 7 * (24 + PAGE),
    wal_size=3 * (24 + PAGE),
    wal_salt1=0xA1B2C3D4,
    wal_salt2=0x0BADF00D,
    node_id=0xFEED_0000_0000_BEEF,
)


@pytest.fixture(scope="module")
def ltx_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("inspect") / f"{SPEC.min_txid:016x}-{SPEC.max_txid:016x}.ltx"
    path.write_bytes(SPEC.build(valid=True))
    return path


def frames_of(data: bytes) -> list[tuple[int, int, int]]:
    """(pgno, offset, frame length) of every frame, walking the page block by hand."""
    out, off = [], 100
    while True:
        pgno, flags = struct.unpack_from(">IH", data, off)
        if pgno == 0 and flags == 0:
            return out
        (size,) = struct.unpack_from(">I", data, off + 6)
        out.append((pgno, off, 10 + size))
        off += 10 + size


def test_inspect_valid_file(run_ltxkit: Run, ltx_file: Path) -> None:
    data = ltx_file.read_bytes()
    text, full, absent = run_all(
        run_ltxkit,
        [
            ("inspect", ltx_file),
            ("inspect", ltx_file, "--json", "--pages", "--page", 2),
            ("inspect", ltx_file, "--page", 3),
        ],
    )
    # text: the TXID range, the kind
    assert text.returncode == 0, text.stderr
    assert "0000000000001a2b" in text.stdout and "0000000000001a2f" in text.stdout
    assert "increment" in text.stdout and text.stderr == ""

    # --json: every header field, the trailer, the page count
    assert full.returncode == 0, full.stderr
    doc = json.loads(full.stdout)
    assert doc["header"] == {
        "flags": 0,
        "page_size": PAGE,
        "commit": 12,
        "min_txid": "0000000000001a2b",
        "max_txid": "0000000000001a2f",
        "timestamp": 1_767_225_600_123,
        "pre_apply_checksum": "8123456789abcdef",
        "wal_offset": SPEC.wal_offset,
        "wal_size": SPEC.wal_size,
        "wal_salt1": 0xA1B2C3D4,
        "wal_salt2": 0x0BADF00D,
        "node_id": "feed00000000beef",
    }
    post, file_sum = struct.unpack(">QQ", data[-16:])
    assert doc["trailer"] == {"post_apply_checksum": f"{post:016x}", "file_checksum": f"{file_sum:016x}"}
    assert post & CHECKSUM_FLAG and file_sum & CHECKSUM_FLAG
    assert doc["page_count"] == len(PAGES)
    assert doc["size"] == len(data) and doc["ok"] is True and doc["defects"] == []
    assert doc["is_snapshot"] is False and doc["timestamp_iso"] == "2026-01-01T00:00:00.123Z"

    # --pages: where each frame really is
    listed = [(p["pgno"], p["offset"], p["size"]) for p in doc["pages"]]
    assert listed == frames_of(data)
    assert [p for p, _, _ in listed] == sorted(PAGES) and listed[0][1] == 100
    assert listed[0][2] > PAGE  # the incompressible page is stored as written

    # --page N: the decoded bytes
    assert doc["page"] == {"pgno": 2, "hex": PAGES[2].hex()}

    # --page for a page the file does not hold: the argument is at fault, not the file
    assert absent.returncode == 2
    assert_one_line_error(absent, naming=str(ltx_file))
    assert "page 3" in absent.stderr


def test_inspect_damaged_fixtures(run_ltxkit: Run) -> None:
    manifest = json.loads((FIXTURES / "manifest.json").read_text())["fixtures"]
    names = ["truncated-page", "bad-magic", "ltx-v1-litefs"]
    *texts, as_json = run_all(
        run_ltxkit,
        [("inspect", FILES / f"{n}.ltx") for n in names] + [("inspect", FILES / "multiple-defects.ltx", "--json")],
    )
    for name, r in zip(names, texts, strict=True):
        assert r.returncode == 1, (name, r.stderr)
        assert "Traceback" not in r.stdout + r.stderr
        for code in manifest[f"files/{name}.ltx"]["codes"]:
            assert f"{code}:" in r.stdout + r.stderr, (name, code, r.stdout, r.stderr)
    assert "LTX v1 (LiteFS) is not supported" in texts[2].stderr and len(texts[2].stderr.splitlines()) == 1
    assert as_json.returncode == 1
    doc = json.loads(as_json.stdout)
    assert doc["ok"] is False and doc["page_count"] == 3
    assert [(d["code"], d["offset"]) for d in doc["defects"]] == [("page-order", 140), ("page-beyond-commit", 180)]
    # a header that does not decode is a document too: JSON consumers got an empty stdout
    bad = run_ltxkit("inspect", FILES / "bad-magic.ltx", "--json")
    assert bad.returncode == 1 and bad.stderr == ""
    doc = json.loads(bad.stdout)
    assert doc["ok"] is False and doc["header"] is None and doc["page_count"] == 0
    assert [(d["code"], d["offset"]) for d in doc["defects"]] == [("bad-magic", 0)]


def test_inspect_unreadable_inputs(run_ltxkit: Run, tmp_path: Path) -> None:
    empty = tmp_path / "empty.ltx"
    empty.write_bytes(b"")
    noise = tmp_path / "noise.ltx"
    noise.write_bytes(b"\x00" + random.Random(1).randbytes(4095))
    adir = tmp_path / "adir"
    adir.mkdir()
    paths = [tmp_path / "missing.ltx", adir, empty, noise]
    for path, r in zip(paths, run_all(run_ltxkit, [("inspect", p) for p in paths]), strict=True):
        assert_one_line_error(r, naming=str(path))
        assert r.stdout == ""


# ---- one-line errors everywhere -----------------------------------------------------------------


def test_errors_are_one_line_without_traceback(run_ltxkit: Run, tmp_path: Path) -> None:
    simple_chain(tmp_path / "r", n=2)
    notdb = tmp_path / "not.db"
    notdb.write_bytes(b"this is not a database" * 50)
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "readme.txt").write_text("no replica here")
    damaged_header = tmp_path / "damaged.db"  # SQLite's magic, then garbage: SQLite says "not a database"
    damaged_header.write_bytes(b"SQLite format 3\x00" + bytes(range(256)) * 20)
    binary = tmp_path / "bin.yml"
    binary.write_bytes(bytes(range(256)))
    wal_db = tmp_path / "wal.db"
    with sqlite3.connect(wal_db) as conn:
        conn.execute("PRAGMA journal_mode=WAL")
    cases: list[tuple[tuple[object, ...], int | None, str | None]] = [
        (("verify", tmp_path / "missing"), 2, str(tmp_path / "missing")),
        (("verify", tmp_path / "a:smile:b"), 2, str(tmp_path / "a:smile:b")),  # printed as is, no emoji
        (("restore", tmp_path / "r", "-o", tmp_path / "o1.db", "--txid", "zz"), 2, "--txid"),
        (("restore", plain, "-o", tmp_path / "o2.db"), None, None),
        (("snapshot", notdb, "-o", tmp_path / "s.ltx"), None, str(notdb)),
        (("checksum", tmp_path / "missing.db"), None, str(tmp_path / "missing.db")),
        (("repair", tmp_path / "r"), 2, "--rebuild-snapshot"),
        (("verify", FILES / "valid-snapshot.ltx", "--quick", "--deep"), 2, "--quick"),
        (("verify", FILES / "valid-snapshot.ltx", "--quick", "--structure-only"), 2, "--structure-only"),
        (("restore", tmp_path / "nope", "-o", tmp_path / "o3.db"), 2, f"{tmp_path / 'nope'}: no such directory"),
        (("restore", "file://", "-o", tmp_path / "o4.db"), 2, "file://: a file:// URL names a path"),
        (("replicate", wal_db, "file://", "--once"), 2, "file://: a file:// URL names a path"),  # not the cwd
        (("checksum", damaged_header), 2, f"{damaged_header}: not a SQLite database (its header is damaged)"),
        (("replicate", "--config", binary), 2, f"{binary}: not a text file"),
        (("inspect", FILES / "valid-snapshot.ltx", "--page", "-1"), 2, "--page"),
        (("restore", tmp_path / "r", "-o", tmp_path / "o5.db", "--timestamp", "2026-11-28Z"), 2, "RFC 3339 time"),
        # a refused restore names the replica, not only the file inside it
        (("restore", REPLICAS / "txid-gap", "-o", tmp_path / "o6.db"), 1, f"{REPLICAS / 'txid-gap'}: txid-gap: "),
    ]
    results = run_all(run_ltxkit, [args for args, _, _ in cases])
    for (args, code, naming), r in zip(cases, results, strict=True):
        assert_one_line_error(r, naming=naming)
        if code is not None:
            assert r.returncode == code, (args, r.stderr)
    # nothing was written by the refused commands
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bin.yml", "damaged.db", "not.db", "plain", "r", "wal.db"]
    assert not (ROOT / "ltx").exists()  # `file://` once made a replica in the directory it ran in


def test_debug_shows_traceback(run_ltxkit: Run, tmp_path: Path) -> None:
    r = run_ltxkit("--debug", "checksum", tmp_path / "missing.db")
    assert r.returncode == 2  # the traceback explains; the exit code stays the documented one
    assert r.stderr.splitlines()[-1] == f"ltxkit: {tmp_path / 'missing.db'}: no such database file"
    assert "Traceback" in r.stderr and "missing.db" in r.stderr


def test_debug_shows_the_traceback_of_a_path_verify_could_not_check(run_ltxkit: Run, tmp_path: Path) -> None:
    """verify goes on past a path it cannot check (the others are still checked), so that error
    never reached the one place --debug printed tracebacks: --debug showed nothing more."""
    missing = tmp_path / "missing"
    plain = run_ltxkit("verify", missing)
    debug = run_ltxkit("--debug", "verify", missing)
    assert plain.returncode == debug.returncode == 2
    assert "Traceback" not in plain.stderr
    assert "Traceback" in debug.stderr and "VerifyUsageError" in debug.stderr
    said = f"ltxkit: {missing}: no such file or directory"
    assert debug.stderr.splitlines()[-1] == plain.stderr.splitlines()[-1] == said
    assert debug.stdout == plain.stdout  # the report itself is the same


def test_missing_database_is_exit_2(run_ltxkit: Run, tmp_path: Path) -> None:
    r = run_ltxkit("checksum", tmp_path / "missing.db")
    assert r.returncode == 2, r.stderr


def test_restore_non_replica_names_the_directory(run_ltxkit: Run, tmp_path: Path) -> None:
    r = run_ltxkit("restore", tmp_path, "-o", tmp_path / "out.db")
    assert_one_line_error(r, naming=str(tmp_path))


# ---- verify ---------------------------------------------------------------------------------------


def test_verify_healthy_and_damaged_synthetic_replica(run_ltxkit: Run, tmp_path: Path) -> None:
    simple_chain(tmp_path / "r", n=5)
    r = run_ltxkit("verify", tmp_path / "r")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "latest restorable TXID: 0000000000000005" in r.stdout
    assert "content: quick_check of the latest restore point (TXID 0000000000000005): ok" in r.stdout
    victim = tmp_path / "r" / "ltx" / "0" / f"{3:016x}-{3:016x}.ltx"
    data = bytearray(victim.read_bytes())
    data[-1] ^= 0x01  # file checksum
    victim.write_bytes(bytes(data))
    r = run_ltxkit("verify", tmp_path / "r", "--format", "json")
    assert r.returncode == 1
    doc = json.loads(r.stdout)
    by_code = {f["code"]: f["path"] for f in doc["findings"]}
    assert by_code["file-checksum-mismatch"] == str(victim)
    assert set(by_code) <= {"file-checksum-mismatch", "unrestorable"}


def test_fail_on_warning(run_ltxkit: Run) -> None:
    default, strict = run_all(
        run_ltxkit,
        [("verify", REPLICAS / "stray-file"), ("verify", REPLICAS / "stray-file", "--fail-on", "warning")],
    )
    assert default.returncode == 0 and "stray-file" in default.stdout
    assert strict.returncode == 1 and "stray-file" in strict.stdout


def test_junit_report(run_ltxkit: Run, tmp_path: Path) -> None:
    simple_chain(tmp_path / "r", n=3)
    files = [FILES / "bad-magic.ltx", FILES / "valid-snapshot.ltx"]
    replicas = [REPLICAS / "healthy", REPLICAS / "txid-gap", REPLICAS / "stray-file", tmp_path / "r"]
    r = run_ltxkit("verify", *files, *replicas, "--format", "junit")
    assert r.returncode == 1, r.stderr
    suites = ET.fromstring(r.stdout)
    cases = [(s.get("name"), c.get("name"), c.find("failure") is not None) for s in suites for c in s]
    expected = [("files", str(f), f.name == "bad-magic.ltx") for f in files]
    for rep in replicas:
        expected.append((str(rep), "replica", rep.name == "txid-gap"))
        keys = sorted(p.relative_to(rep).as_posix() for p in (rep / "ltx").rglob("*.ltx"))
        expected += [(str(rep), key, False) for key in keys]
    assert sorted(cases) == sorted(expected)
    for s in suites:
        assert int(s.get("tests")) == len(s) and int(s.get("failures")) == sum(c.find("failure") is not None for c in s)
    failure = suites.find("testsuite[@name='files']/testcase/failure")
    assert failure is not None and failure.get("type") == "bad-magic"


def test_output_file(run_ltxkit: Run, tmp_path: Path) -> None:
    args = ("verify", REPLICAS / "healthy", REPLICAS / "txid-gap")
    as_json, as_text = run_all(
        run_ltxkit,
        [(*args, "--format", "json", "--output", tmp_path / "v.json"), (*args, "-o", tmp_path / "v.txt")],
    )
    for r, out in ((as_json, tmp_path / "v.json"), (as_text, tmp_path / "v.txt")):
        # nothing on stdout; on stderr only the verdict, so a CI log shows why the job failed
        assert r.returncode == 1 and r.stdout == ""
        assert r.stderr == f"ltxkit verify: FAILED: 1 error, 0 warnings (report in {out})\n"
    doc = json.loads((tmp_path / "v.json").read_text())
    assert [f["code"] for f in doc["findings"]] == ["txid-gap"]
    text = (tmp_path / "v.txt").read_text()
    assert "txid-gap" in text and "FAILED" in text


def test_report_file_is_replaced_whole_and_bad_destinations_are_refused_first(run_ltxkit: Run, tmp_path: Path) -> None:
    report = tmp_path / "v.xml"
    report.write_text("the previous run's report\n")
    report.chmod(0o640)
    old_inode = report.stat().st_ino
    r = run_ltxkit("verify", REPLICAS / "txid-gap", "-f", "junit", "-o", report)
    assert r.returncode == 1, r.stderr
    assert ET.fromstring(report.read_text()).get("failures") == "1"
    # a new file renamed over the old one (never the old one truncated and rewritten), with its mode
    assert report.stat().st_ino != old_inode and report.stat().st_mode & 0o777 == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v.xml"]  # no temp file left beside it

    link = tmp_path / "link.xml"
    link.symlink_to(report)
    before = report.read_bytes()
    missing = tmp_path / "no-such-dir" / "v.json"
    for dest, problem in ((missing, "no such directory"), (tmp_path, "not a regular file"), (link, "symbolic link")):
        r = run_ltxkit("verify", REPLICAS / "txid-gap", "-f", "json", "-o", dest)
        # refused before verifying: one line, no verdict, nothing written anywhere
        assert r.returncode == 2 and r.stdout == "", r.stderr
        assert r.stderr.count("\n") == 1 and r.stderr.startswith(f"ltxkit: {dest}") and problem in r.stderr
    assert not missing.parent.exists() and report.read_bytes() == before


def test_report_never_replaces_what_it_checks_or_user_data(run_ltxkit: Run, tmp_path: Path) -> None:
    replica = tmp_path / "replica"
    simple_chain(replica, n=2)
    db = tmp_path / "app.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE t(x)")
    ltx = next((replica / "ltx").rglob("*.ltx"))
    lone = tmp_path / "copy.ltx"
    lone.write_bytes(ltx.read_bytes())
    before = {p: p.read_bytes() for p in (db, ltx, lone)}
    names = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))
    cases = [
        ((replica,), db, "SQLite database"),  # a mistyped -o app.db
        ((replica,), lone, "LTX file"),
        ((replica,), ltx, "which verify checks"),  # a file of the replica being checked
        ((replica,), replica / "ltx" / "report.json", "which verify checks"),  # a new file inside it
        ((f"file://{replica}",), replica / "report.json", "which verify checks"),
        ((lone,), lone, "which verify checks"),
    ]
    for inputs, dest, problem in cases:
        r = run_ltxkit("verify", *inputs, "-f", "json", "-o", dest)
        assert r.returncode == 2 and r.stdout == "", (dest, r.stderr)
        assert r.stderr.count("\n") == 1 and r.stderr.startswith(f"ltxkit: {dest}") and problem in r.stderr, r.stderr
    assert {p: p.read_bytes() for p in before} == before
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")) == names


def test_report_goes_to_a_pipe_as_a_stream(run_ltxkit: Run, tmp_path: Path) -> None:
    fifo = tmp_path / "report.fifo"
    os.mkfifo(fifo)
    with ThreadPoolExecutor(1) as pool:
        received = pool.submit(lambda: fifo.read_text())
        r = run_ltxkit("verify", REPLICAS / "txid-gap", "-f", "json", "-o", fifo)
        assert r.returncode == 1, r.stderr
        assert [f["code"] for f in json.loads(received.result(timeout=30))["findings"]] == ["txid-gap"]


def test_quick_still_finds_structural_defects(run_ltxkit: Run) -> None:
    paths = [REPLICAS / "txid-gap", FILES / "bad-magic.ltx", FILES / "page-order.ltx", FILES / "valid-snapshot.ltx"]
    r = run_ltxkit("verify", "--quick", *paths, "--format", "json")
    assert r.returncode == 1, r.stderr
    found = sorted((f["code"], f["path"]) for f in json.loads(r.stdout)["findings"])
    assert found == sorted([("txid-gap", str(paths[0])), ("bad-magic", str(paths[1])), ("page-order", str(paths[2]))])


# ---- checksum and snapshot on a real database ---------------------------------------------------


def db_checksum_of_file(data: bytes) -> tuple[int, int]:
    """(LTX database checksum, page count) of a SQLite file, computed from FORMAT.md."""
    page_size = int.from_bytes(data[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    assert len(data) % page_size == 0
    lock = 0x40000000 // page_size + 1
    total = CHECKSUM_FLAG
    for i in range(len(data) // page_size):
        pgno = i + 1
        if pgno != lock:
            page = data[i * page_size : pgno * page_size]
            total = CHECKSUM_FLAG | (total ^ (CHECKSUM_FLAG | crc64(page, crc64(pgno.to_bytes(4, "big")))))
    return total, len(data) // page_size


def test_checksum_and_snapshot_of_a_wal_database(run_ltxkit: Run, tmp_path: Path) -> None:
    assert crc64(b"123456789") == 0xB90956C775A41001  # CRC-64/GO-ISO check value
    db = tmp_path / "app.db"
    db.touch()
    # Read the file through one descriptor opened before SQLite's: closing any descriptor of a file
    # drops this process's POSIX locks on it, and the CLI would then checkpoint and delete the WAL.
    fd = os.open(db, os.O_RDONLY)
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA journal_mode=WAL").fetchone()[0] == "wal"
        conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT)")
        conn.executemany("INSERT INTO t (body) VALUES (?)", [(f"row {i} " * 20,) for i in range(300)])
        conn.commit()
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.executemany("UPDATE t SET body = ? WHERE id = ?", [(f"new {i}", i) for i in range(1, 300, 7)])
        conn.executemany("INSERT INTO t (body) VALUES (?)", [("x" * 900,) for _ in range(40)])
        conn.commit()
        assert Path(f"{db}-wal").stat().st_size > 0  # the latest state lives partly in the WAL
        stale, _ = db_checksum_of_file(os.pread(fd, 1 << 24, 0))

        r = run_ltxkit("checksum", db)
        assert r.returncode == 0, r.stderr
        value = r.stdout.strip()
        assert len(value) == 16 and int(value, 16) & CHECKSUM_FLAG and value == value.lower()

        out = tmp_path / "snap.ltx"
        r = run_ltxkit("snapshot", db, "-o", out, "--txid", "2a")
        assert r.returncode == 0, r.stderr

        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        assert Path(f"{db}-wal").stat().st_size == 0
        page_count = conn.execute("PRAGMA page_count").fetchone()[0]
    finally:
        conn.close()
        os.close(fd)
    want, pages = db_checksum_of_file(db.read_bytes())
    assert pages == page_count
    assert int(value, 16) == want
    assert stale != want  # so the checksum really read the WAL

    r = run_ltxkit("inspect", out, "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["is_snapshot"] is True and doc["ok"] is True
    assert doc["header"]["commit"] == page_count and doc["page_count"] == page_count
    assert doc["header"]["min_txid"] == "0000000000000001" and doc["header"]["max_txid"] == "000000000000002a"
    assert doc["trailer"]["post_apply_checksum"] == value


def test_snapshot_never_replaces_its_database_and_streams_to_a_pipe(run_ltxkit: Run, tmp_path: Path) -> None:
    db = tmp_path / "app.db"
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA wal_autocheckpoint=0")
    conn.execute("CREATE TABLE t (x)")
    conn.executemany("INSERT INTO t VALUES (?)", [(os.urandom(100),) for _ in range(200)])
    link = tmp_path / "link.db"
    link.symlink_to(db)
    try:
        before = {p: p.read_bytes() for p in (db, Path(f"{db}-wal"), Path(f"{db}-shm"))}
        for source, dest in ((db, db), (link, db), (db, link), (db, Path(f"{db}-wal")), (link, Path(f"{db}-shm"))):
            r = run_ltxkit("snapshot", source, "-o", dest, "--force")
            assert r.returncode == 2, (source, dest, r.stderr)
            why = f"is the database {source} or its WAL; refusing to write a snapshot over it"
            assert r.stderr == f"ltxkit: {dest}: {why}\n"
        assert {p: p.read_bytes() for p in before} == before

        to_file = tmp_path / "s.ltx"
        assert run_ltxkit("snapshot", db, "-o", to_file).returncode == 0
        piped = subprocess.run(
            [sys.executable, "-m", "ltxkit", "snapshot", str(db), "-o", "-"],
            capture_output=True,
            cwd=tmp_path,
            timeout=120,
        )
        assert piped.returncode == 0, piped.stderr
        assert b"wrote standard output" in piped.stderr and not (tmp_path / "-").exists()
        # the same file but for its timestamp (header bytes 32..40) and the file checksum over it
        same = to_file.read_bytes()
        assert piped.stdout[:32] + piped.stdout[40:-8] == same[:32] + same[40:-8]
    finally:
        conn.close()


def test_snapshot_refuses_existing_output(run_ltxkit: Run, tmp_path: Path) -> None:
    db = tmp_path / "small.db"
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE t (x)")
    conn.execute("INSERT INTO t VALUES (1)")
    conn.commit()
    conn.close()
    out = tmp_path / "out.ltx"
    out.write_bytes(b"precious")
    r = run_ltxkit("snapshot", db, "-o", out)
    assert r.returncode == 2  # could not run: not a defect in any data
    assert_one_line_error(r, naming=str(out))
    assert "already exists" in r.stderr
    assert out.read_bytes() == b"precious"

    r = run_ltxkit("snapshot", db, "-o", out, "--force")
    assert r.returncode == 0, r.stderr
    data = out.read_bytes()
    assert data[:4] == b"LTX1" and struct.unpack_from(">I", data, 12)[0] == 2  # commit: 2 pages
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.ltx", "small.db"]  # no temp file left


# ---- help and version ---------------------------------------------------------------------------

HELP = {
    "inspect": ["--json", "--pages", "--page"],
    "verify": ["--format", "--output", "--fail-on", "--quick", "--structure-only", "--deep", "quick_check"],
    "restore": ["--output", "--txid", "--timestamp", "--force", "--dry-run", "--integrity-check"],
    "snapshot": ["--output", "--txid", "--force", "--checksums"],
    "checksum": ["--json"],
    "repair": ["--rebuild-snapshot", "--from-db", "--dry-run", "--yes"],
}


def test_help_and_version(run_ltxkit: Run) -> None:
    commands = [(cmd, "--help") for cmd in HELP] + [("--version",)]
    *per_command, version = run_all(run_ltxkit, commands)
    for (cmd, options), r in zip(HELP.items(), per_command, strict=True):
        assert r.returncode == 0, (cmd, r.stderr)
        for option in options:
            assert option in r.stdout, (cmd, option)
    assert version.returncode == 0 and version.stdout.strip() == f"ltxkit {__version__}"


def test_verify_summary_says_when_the_latest_restore_point_does_not_restore(run_ltxkit: Run) -> None:
    bad = run_ltxkit("verify", FIXTURES / "replicas" / "growth-pages-missing")
    assert bad.returncode == 1
    assert "TXID 0000000000000002, does not restore" in bad.stdout
    assert "latest restorable TXID" not in bad.stdout
    good = run_ltxkit("verify", FIXTURES / "replicas" / "healthy")
    assert "1 snapshot;" in good.stdout and "latest restorable TXID: 0000000000000004" in good.stdout


def test_usage_errors_are_one_line(run_ltxkit: Run) -> None:
    """The parser's own errors follow the rule every other error does: one line, exit 2."""
    cases = {
        ("restore",): ("Missing argument 'replica'", "ltxkit restore -h"),
        ("verify", "--bogus", "x"): ("No such option: --bogus", "ltxkit verify -h"),
        ("restore", "r", "-o", "x.db", "--jobs", "0"): ("0 is not in the range", "ltxkit restore -h"),
        ("verify", "r", "--jobs", "10000"): ("10000 is not in the range 1<=x<=64", "ltxkit verify -h"),
        ("checksum", "x.db", "-j", "65"): ("65 is not in the range 1<=x<=64", "ltxkit checksum -h"),
        ("frob",): ("No such command 'frob'", "ltxkit -h"),
    }
    for args, (problem, helped) in cases.items():
        r = run_ltxkit(*args)
        assert r.returncode == 2 and r.stdout == "", (args, r.stderr)
        assert r.stderr.count("\n") == 1 and r.stderr.startswith("ltxkit: "), (args, r.stderr)
        assert problem in r.stderr and f"'{helped}'" in r.stderr, (args, r.stderr)
    bare = run_ltxkit()  # no command: the help is the answer, as before
    assert bare.returncode == 2 and "Usage:" in bare.stdout and bare.stderr == ""


def test_short_help_and_debug_after_the_command(run_ltxkit: Run, tmp_path: Path) -> None:
    for args in (("-h",), ("verify", "-h"), ("restore", "-h")):
        r = run_ltxkit(*args)
        assert r.returncode == 0 and "Usage:" in r.stdout, (args, r.stderr)
    r = run_ltxkit("inspect", tmp_path / "missing.ltx", "--debug")
    assert r.returncode != 0 and "Traceback" in r.stderr  # --debug after the command still shows it


def test_junit_report_is_valid_and_complete_even_when_a_path_cannot_be_checked(run_ltxkit: Run, tmp_path: Path) -> None:
    """CI's view: the JUnit report validates against `tests/junit.xsd` (totals on <testsuites>),
    a missing path does not stop the others or the report, the verdict goes to stderr, and a
    file name that is not UTF-8 does not break the XML."""
    from lxml import etree

    schema = etree.XMLSchema(etree.parse(str(Path(__file__).parent / "junit.xsd")))
    odd = tmp_path / os.fsdecode(b"bad-\xff-name.ltx")
    odd.write_bytes((FILES / "page-order.ltx").read_bytes())
    report = tmp_path / "verify.xml"
    r = run_ltxkit(
        "verify", REPLICAS / "healthy", tmp_path / "missing", REPLICAS / "txid-gap", odd, "-f", "junit", "-o", report
    )
    assert r.returncode == 2  # could not check everything
    assert "ltxkit verify: FAILED: 2 errors, 0 warnings, 1 path could not be checked" in r.stderr
    assert f"ltxkit: {tmp_path / 'missing'}: no such file or directory" in r.stderr
    doc = etree.parse(str(report))
    schema.assertValid(doc)
    root = doc.getroot()
    suites = root.findall("testsuite")
    assert [s.get("name") for s in suites][:3] == ["files", str(REPLICAS / "healthy"), str(REPLICAS / "txid-gap")]
    assert int(root.get("tests")) == sum(int(s.get("tests")) for s in suites)
    assert (root.get("failures"), root.get("errors")) == ("2", "1")
    assert suites[-1].get("name") == "could not check" and suites[-1].find("testcase/error") is not None
