"""Paths nobody walked: a header claiming billions of pages, file names that are not UTF-8, a full
disk, Ctrl-C, and a user who is not root. Each runs the CLI in a subprocess, as a user would, and
asserts the outcome: exit code, one line on stderr, and nothing left behind."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ltxkit import restore as restore_mod
from ltxkit.errors import EXIT_DEFECTS, EXIT_INTERRUPTED, EXIT_TERMINATED, EXIT_USAGE
from ltxkit.format.schema import missing_among, missing_pages
from tests.conftest import examples
from tests.replica_builder import Db, page_bytes, simple_chain, write_ltx

ROOT = Path(__file__).resolve().parent.parent
NOBODY = 65534


def run(
    *args: str | Path,
    prelude: str = "",
    timeout: float = 120,
    **kwargs: object,
) -> subprocess.CompletedProcess[str]:
    """`ltxkit ARGS` in a fresh interpreter; `prelude` runs first (limits, privileges)."""
    code = f"import sys\n{prelude}\nfrom ltxkit.cli import main\nmain()"
    return subprocess.run(
        [sys.executable, "-c", code, *map(str, args)],
        capture_output=True, text=True, timeout=timeout, cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)}, **kwargs,  # type: ignore[arg-type]
    )


def one_error_line(r: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in r.stderr, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("ltxkit: "), r.stderr
    return lines[0]


# ---- a commit of billions of pages -------------------------------------------------------------

MEMORY_LIMIT = 400 << 20  # the interpreter and its imports need about 150 MB of address space
RLIMIT_AS = f"import resource\nresource.setrlimit(resource.RLIMIT_AS, ({MEMORY_LIMIT}, {MEMORY_LIMIT}))"
HUGE = 3_000_000_000


@pytest.mark.parametrize("high_page", [False, True], ids=["one-low-page", "a-page-near-the-top"])
def test_an_increment_claiming_billions_of_pages_is_named_within_bounded_memory(
    tmp_path: Path, high_page: bool
) -> None:
    replica = tmp_path / "r"
    simple_chain(replica, n=3)
    pages = {11: page_bytes(11, 4)}
    if high_page:
        pages[HUGE - 1] = page_bytes(HUGE - 1, 4)
    write_ltx(replica, 0, 4, 4, pages, HUGE)
    r = run("verify", replica, "--format", "json", prelude=RLIMIT_AS)
    assert r.returncode == EXIT_DEFECTS, r.stderr
    report = json.loads(r.stdout)
    findings = {f["code"]: f["message"] for f in report["findings"]}
    # pages 11.. HUGE are new; the file holds 11 (and HUGE - 1); the lock page is never stored
    lacking = HUGE - 11 - 1 - (1 if high_page else 0)
    assert f"lacks {lacking} of {HUGE} pages (first: page 12)" in findings["unrestorable"]
    assert f"raises commit from 10 to {HUGE} but lacks {lacking} of the new pages" in findings["growth-pages-missing"]
    # restore writes the pages it gets (the one near the top into a sparse temp file), then refuses
    out = tmp_path / "out" / "x.db"
    out.parent.mkdir()
    r = run("restore", replica, "-o", out, "-q", prelude=RLIMIT_AS)
    assert r.returncode == EXIT_DEFECTS
    line = one_error_line(r)
    assert line.startswith(f"ltxkit: {replica}: unrestorable: ") and f"({lacking} pages missing)" in line
    assert list(out.parent.iterdir()) == []


# ---- names that are not UTF-8 ------------------------------------------------------------------


def test_json_report_names_non_utf8_files_in_valid_unicode(tmp_path: Path) -> None:
    replica = tmp_path / "r"
    simple_chain(replica, n=2)
    (replica / "ltx" / "0").joinpath(os.fsdecode(b"caf\xe9.ltx")).write_bytes(b"x")
    loose = tmp_path / os.fsdecode(b"bad\xff.ltx")
    loose.write_bytes(b"LTX1 not much")
    r = subprocess.run(
        [sys.executable, "-m", "ltxkit", "verify", "r", os.fsdecode(b"bad\xff.ltx"), "--format", "json", "--quick"],
        capture_output=True, cwd=tmp_path, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert r.returncode == EXIT_DEFECTS, r.stderr
    text = r.stdout.decode("utf-8")  # strict: valid UTF-8
    report = json.loads(text)

    def strings(value: object) -> Iterator[str]:
        if isinstance(value, str):
            yield value
        elif isinstance(value, dict):
            for k, v in value.items():
                yield from strings(k)
                yield from strings(v)
        elif isinstance(value, list):
            for v in value:
                yield from strings(v)

    for s in strings(report):
        s.encode("utf-8")  # no lone surrogate: strict JSON readers take every string
    paths = {f["path"]: f["code"] for f in report["findings"]}
    assert paths["bad\\xff.ltx"] == "truncated"
    assert paths["r/ltx/0/caf\\xe9.ltx"] == "stray-file"


def test_a_replica_whose_own_name_is_not_utf8_verifies_and_restores(tmp_path: Path) -> None:
    name = os.fsdecode(b"backup\xff")
    simple_chain(tmp_path / name, n=3)
    # no file:// URL names it: Litestream escapes the byte, and so does ltxkit (`file_url_path`)
    (tmp_path / "backup%FF").symlink_to(tmp_path / name)
    url = f"file://{tmp_path}/{name}"
    for args in (("verify", name), ("restore", name, "-o", "out.db", "-q"), ("restore", url, "-o", "out2.db", "-q")):
        r = subprocess.run(
            [sys.executable, "-m", "ltxkit", *args], capture_output=True, cwd=tmp_path, timeout=120,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        assert r.returncode == 0, (args, r.stderr)
    assert (tmp_path / "out.db").read_bytes() == (tmp_path / "out2.db").read_bytes()


# ---- a full disk -------------------------------------------------------------------------------


@contextlib.contextmanager
def small_tmpfs(size: str) -> Iterator[Path]:
    where = Path(tempfile.mkdtemp(prefix="ltxkit-full-"))
    try:
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                              capture_output=True, timeout=30)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
        try:
            yield where
        finally:
            subprocess.run(["umount", str(where)], check=True, timeout=30)
    finally:
        where.rmdir()


def big_replica(root: Path, pages: int = 600) -> None:
    """A 4 KiB-page database of `pages` pages of random bytes (about 2.4 MB restored)."""
    db = Db(page_size=4096)
    db.write(list(range(1, pages + 1)))
    write_ltx(root, 0, 1, 1, {p: os.urandom(4096) for p in db.pages}, pages, page_size=4096)


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_a_full_disk_during_restore_leaves_nothing(tmp_path: Path, jobs: str) -> None:
    big_replica(tmp_path / "r")
    with small_tmpfs("1m") as disk:
        r = run("restore", tmp_path / "r", "-o", disk / "x.db", "-q", "--jobs", jobs)
        assert r.returncode == EXIT_USAGE
        assert "No space left on device" in one_error_line(r)
        assert list(disk.iterdir()) == []


def test_a_file_size_limit_during_restore_leaves_nothing(tmp_path: Path) -> None:
    """The same without root: RLIMIT_FSIZE (SIGXFSZ ignored, so writes fail with EFBIG)."""
    big_replica(tmp_path / "r")
    out = tmp_path / "out"
    out.mkdir()
    prelude = ("import resource, signal\nsignal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
               "resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))")
    r = run("restore", tmp_path / "r", "-o", out / "x.db", "-q", "--jobs", "1", prelude=prelude)
    assert r.returncode == EXIT_USAGE
    assert "File too large" in one_error_line(r)
    assert list(out.iterdir()) == []


# ---- Ctrl-C ------------------------------------------------------------------------------------

# every file read takes a while: a restore long enough to interrupt, without a big replica
SLOW_READS = """
import time
from ltxkit.replica import storage as _s
_read = _s.LocalStorage.read_bytes
def _slow(self, key, **kw):
    time.sleep(0.05)
    return _read(self, key, **kw)
_s.LocalStorage.read_bytes = _slow
"""


def interrupt_when(
    cmd: list[str],
    ready: callable,  # type: ignore[valid-type]
    timeout: float = 60,
    how: str = "ctrl-c",
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Start `cmd` in its own process group, wait for `ready()`, then stop it: "ctrl-c" sends
    SIGINT to the whole group, as a terminal does; "sigterm" sends SIGTERM to the command alone,
    as `kill`, a service manager or a CI timeout does — its workers hear nothing. Either way, once
    it has exited no process of the group may be left running."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}, start_new_session=True)
    try:
        deadline = time.monotonic() + timeout
        while not ready():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "never got going"
            time.sleep(0.02)
        if how == "ctrl-c":
            os.killpg(proc.pid, signal.SIGINT)
        else:
            os.kill(proc.pid, signal.SIGTERM)
        out, err = proc.communicate(timeout=timeout)
        for _ in range(100):  # a worker told to end takes a moment to go
            try:
                os.killpg(proc.pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.05)
        else:
            raise AssertionError("a worker outlived the command")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


STOPPED = {"ctrl-c": (EXIT_INTERRUPTED, "ltxkit: interrupted"), "sigterm": (EXIT_TERMINATED, "ltxkit: terminated")}


@pytest.mark.parametrize("how", ["ctrl-c", "sigterm"])
def test_ctrl_c_during_restore_leaves_nothing(tmp_path: Path, how: str) -> None:
    replica = tmp_path / "r"
    simple_chain(replica, n=100)
    out = tmp_path / "out"
    out.mkdir()
    code = f"import sys\n{SLOW_READS}\nfrom ltxkit.cli import main\nmain()"
    cmd = [sys.executable, "-c", code, "restore", str(replica), "-o", str(out / "x.db"), "-q"]
    r = interrupt_when(cmd, lambda: any(out.iterdir()), how=how)  # the temp file is there: pages are being written
    assert (r.returncode, one_error_line(r)) == STOPPED[how], r.stderr
    assert list(out.iterdir()) == []


def test_sigterm_during_verify_removes_its_restore_point(tmp_path: Path) -> None:
    """verify's content check restores into $TMPDIR: SIGTERM removes that restore."""
    replica = tmp_path / "r"
    simple_chain(replica, n=100)
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    code = f"import sys\n{SLOW_READS}\nfrom ltxkit.cli import main\nmain()"
    cmd = [sys.executable, "-c", code, "verify", str(replica)]
    # the restore point's file itself: before it, the first use of $TMPDIR writes and removes a
    # probe file (tempfile's own check), and a signal landing inside that check leaves the probe
    restoring = lambda: any(scratch.glob("ltxkit-verify-*/point-*/restore-point.db"))  # noqa: E731
    r = interrupt_when(cmd, restoring, how="sigterm", env={"TMPDIR": str(scratch)})
    assert (r.returncode, one_error_line(r)) == STOPPED["sigterm"], r.stderr
    assert list(scratch.rglob("*")) == []


def test_sigterm_stops_verify_workers_instead_of_waiting_for_them(tmp_path: Path) -> None:
    """Workers that would read for minutes: SIGTERM reaches verify alone, which ends them and
    exits at once (before: it waited for every queued file, then left nothing to say)."""
    replica = tmp_path / "r"
    simple_chain(replica, n=40)
    started = tmp_path / "started"
    started.mkdir()
    slow = f"""
import os, time
import ltxkit.verify.engine as _e
_e.PARALLEL_MIN_BYTES = 0
from ltxkit.replica import storage as _s
_open = _s.LocalStorage.open
def _slow(self, key):
    open(os.path.join({str(started)!r}, str(os.getpid())), "w").close()
    time.sleep(10)
    return _open(self, key)
_s.LocalStorage.open = _slow
"""
    code = f"import sys\n{slow}\nfrom ltxkit.cli import main\nmain()"
    cmd = [sys.executable, "-c", code, "verify", str(replica), "--jobs", "2"]
    # 40 files of 10 s each on 2 workers: 200 s of work, well past interrupt_when's 60 s
    r = interrupt_when(cmd, lambda: len(list(started.iterdir())) >= 2, how="sigterm")
    assert (r.returncode, one_error_line(r)) == STOPPED["sigterm"], r.stderr
    assert len(list(started.iterdir())) == 2  # nothing was started after the signal


# ---- not root ----------------------------------------------------------------------------------

# the interpreter lives where `nobody` may not look (/root): start as root, import what the
# command needs, then drop every privilege before it touches a file
AS_NOBODY = f"""
import os
import ltxkit.cli, ltxkit.restore, ltxkit.replica.storage, ltxkit.workers, ltxkit.format.decoder
import rich.console, rich.table, rich.progress
os.setgroups([])
os.setgid({NOBODY})
os.setuid({NOBODY})
assert os.geteuid() == {NOBODY}
"""


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory `nobody` can reach (pytest's tmp_path sits below a root-only directory)."""
    where = Path(tempfile.mkdtemp(prefix="ltxkit-nobody-"))
    where.chmod(0o755)
    try:
        yield where
    finally:
        subprocess.run(["rm", "-rf", str(where)], check=True)


@pytest.mark.skipif(os.geteuid() != 0, reason="becoming nobody needs root; test_restore_synthetic runs it as you")
def test_restore_into_a_directory_nobody_may_write(shared_dir: Path) -> None:
    replica = shared_dir / "r"
    simple_chain(replica, n=2)
    for dirpath, dirs, files in os.walk(replica):
        for name in dirs + files:
            os.chmod(os.path.join(dirpath, name), 0o755 if name in dirs else 0o644)
    ro = shared_dir / "ro"
    ro.mkdir(mode=0o755)  # root's: nobody may read it, not write it
    r = run("restore", replica, "-o", ro / "x.db", "-q", prelude=AS_NOBODY)
    assert r.returncode == EXIT_USAGE
    assert "Permission denied" in one_error_line(r)
    assert list(ro.iterdir()) == []
    # and the same user can restore where it may write
    mine = shared_dir / "mine"
    mine.mkdir()
    os.chown(mine, NOBODY, NOBODY)
    r = run("restore", replica, "-o", mine / "x.db", "-q", prelude=AS_NOBODY)
    assert r.returncode == 0, r.stderr
    assert (mine / "x.db").stat().st_uid == NOBODY


@pytest.mark.skipif(os.geteuid() != 0, reason="becoming nobody needs root")
def test_checksum_of_a_database_another_user_owns_is_one_line_exit_2(shared_dir: Path) -> None:
    """A consistent read takes the write lock, which a user who may not write the database (nor
    create its -wal/-shm beside it) cannot: one line saying so, exit 2, nothing changed."""
    import sqlite3

    db = shared_dir / "app.db"
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE t(x)")
    conn.commit()
    conn.close()  # the last connection: its -wal and -shm go, and nobody may create them again
    db.chmod(0o644)
    before = sorted(p.name for p in shared_dir.iterdir()), db.read_bytes()
    r = run("checksum", db, prelude="import sqlite3, ltxkit.sqlite, ltxkit.cli.snapshot\n" + AS_NOBODY)
    assert r.returncode == EXIT_USAGE, r.stderr
    line = one_error_line(r)
    assert line.startswith(f"ltxkit: {db}: cannot take the write lock a consistent read needs"), line
    assert (sorted(p.name for p in shared_dir.iterdir()), db.read_bytes()) == before


# ---- Ctrl-C during repair ----------------------------------------------------------------------


def tree(root: Path) -> dict[str, bytes]:
    """Every file below `root` (directories too, as empty values), relative path -> bytes."""
    out: dict[str, bytes] = {}
    for dirpath, dirs, names in os.walk(root):
        for d in dirs:
            out[Path(dirpath, d).relative_to(root).as_posix() + "/"] = b""
        for n in names:
            out[Path(dirpath, n).relative_to(root).as_posix()] = Path(dirpath, n).read_bytes()
    return out


def damaged_replica(root: Path) -> None:
    """A sound chain of 8 TXIDs whose TXID-6 file has a flipped byte: repair rebuilds a snapshot
    from the chain up to 5, moves 6.. aside."""
    simple_chain(root, n=8)
    victim = root / "ltx" / "0" / f"{6:016x}-{6:016x}.ltx"
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0x40
    victim.write_bytes(bytes(data))


# a slow step at each phase of a repair, so Ctrl-C lands inside it
SLOW_STAGING = """
import time
from ltxkit.format import encoder as _e
_write = _e.LTXWriter.write_page
def _slow(self, pgno, data):
    time.sleep(0.3)
    return _write(self, pgno, data)
_e.LTXWriter.write_page = _slow
"""
SLOW_MOVES = """
import time
from ltxkit.replica import storage as _s
_move = _s.LocalStorage.quarantine
def _slow(self, key, new_key):
    _move(self, key, new_key)
    time.sleep(2)
_s.LocalStorage.quarantine = _slow
"""


@pytest.mark.parametrize("phase", ["building", "moving"])
def test_ctrl_c_during_repair_leaves_the_replica_as_it_was(tmp_path: Path, phase: str) -> None:
    replica = tmp_path / "r"
    damaged_replica(replica)
    before = tree(replica)
    slow = SLOW_STAGING if phase == "building" else SLOW_MOVES

    def ready() -> bool:
        if phase == "building":  # the new snapshot is being written in staging
            return any(p.is_file() for p in replica.glob(".ltxkit-staging-*/*"))
        return any(p.is_file() for p in replica.glob("quarantine/*/ltx/*/*"))  # a file was moved aside

    code = f"import sys\n{slow}\nfrom ltxkit.cli import main\nmain()"
    r = interrupt_when([sys.executable, "-c", code, "repair", str(replica), "--rebuild-snapshot", "--yes"], ready)
    assert r.returncode == EXIT_INTERRUPTED, r.stdout + r.stderr
    last = r.stderr.strip().splitlines()[-1]
    if phase == "building":
        assert last == "ltxkit: interrupted"
    else:  # what it was doing, and that the back-out finished
        assert last.startswith(f"ltxkit: {replica}: interrupted while moving ltx/"), last
        assert last.endswith(" to quarantine; everything was put back"), last
    assert "Traceback" not in r.stderr
    after = tree(replica)
    assert {k: v for k, v in after.items() if not k.startswith("quarantine")} == before  # no staging, files back
    assert [k for k, v in after.items() if k.startswith("quarantine") and not k.endswith("/")] == []


@pytest.mark.parametrize("how", ["ctrl-c", "sigterm"])
def test_ctrl_c_during_a_restore_in_spans_leaves_nothing(tmp_path: Path, how: str) -> None:
    """With --jobs 2 a big file is decoded by forked workers; Ctrl-C reaches them all (one
    process group); SIGTERM reaches the command alone, and its workers end with it. Nobody hangs,
    nobody writes on, nothing is left."""
    replica = tmp_path / "r"
    big_replica(replica, pages=120)
    write_ltx(replica, 0, 2, 2, {3: os.urandom(4096)}, 120, page_size=4096)
    write_ltx(replica, 0, 3, 3, {p: os.urandom(4096) for p in range(1, 121)}, 120, page_size=4096)
    out = tmp_path / "out"
    out.mkdir()
    slow = """
import time
import ltxkit.restore as _r
_r.SPLIT_MIN_BYTES = 1 << 16
from ltxkit.pagesink import PageSink
_write = PageSink.write
def _slow(self, pgno, page):
    time.sleep(0.02)
    return _write(self, pgno, page)
PageSink.write = _slow
"""
    code = f"import sys\n{slow}\nfrom ltxkit.cli import main\nmain()"
    cmd = [sys.executable, "-c", code, "restore", str(replica), "-o", str(out / "x.db"), "-q", "--jobs", "2"]
    r = interrupt_when(cmd, lambda: any(p.stat().st_size > 0 for p in out.iterdir()), timeout=30, how=how)
    assert (r.returncode, one_error_line(r)) == STOPPED[how], r.stderr
    time.sleep(0.5)  # a worker left behind would still be writing
    assert list(out.iterdir()) == []


# ---- the counting behind both ------------------------------------------------------------------


@settings(max_examples=examples(300), deadline=None)
@given(
    st.lists(st.integers(1, 60), max_size=40),
    st.integers(0, 70),
    st.integers(1, 72),
    st.integers(0, 40),
)
def test_missing_page_counts_match_a_plain_listing(held: list[int], commit: int, lock: int, flags: int) -> None:
    """`missing_pages`, `missing_among` and restore's flags-plus-far-set give what listing every
    missing page would, without doing it."""
    want_list = [p for p in range(1, commit + 1) if p != lock and p not in held]
    want = (len(want_list), want_list[0] if want_list else 0)
    assert missing_among(set(held), 1, commit, lock) == want
    covered = bytearray(flags + 1)
    far = set()
    for p in held:
        if p <= flags:
            covered[p] = 1
        else:
            far.add(p)
    assert restore_mod._missing(bytearray(covered), far, commit, lock) == want
    if not far:
        assert missing_pages(covered, commit, lock) == want
