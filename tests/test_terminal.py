"""On a terminal: progress bars (verify, restore) appear there and never in pipes or logs; repair asks
before it moves anything."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import signal
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

from tests.replica_builder import simple_chain

CLI = [sys.executable, "-c", "from ltxkit.cli import main; main()"]
ESCAPES = re.compile(rb"\x1b\[[0-9;?]*[A-Za-z]")


def run_with_tty_stderr(*args: str) -> tuple[int, str, str]:
    """Run the CLI with stderr on a pseudo-terminal; return (exit code, stdout, terminal text)."""
    master, slave = pty.openpty()
    proc = subprocess.Popen([*CLI, *args], stdout=subprocess.PIPE, stderr=slave, stdin=subprocess.DEVNULL)
    os.close(slave)
    seen = b""
    while True:
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            seen += chunk
        elif proc.poll() is not None:
            break
    assert proc.stdout is not None
    out = proc.stdout.read().decode()
    proc.wait(timeout=60)
    os.close(master)
    return proc.returncode, out, ESCAPES.sub(b"", seen).decode(errors="replace")


def test_restore_shows_bytes_and_pages_on_a_terminal_only(tmp_path: Path) -> None:
    db = simple_chain(tmp_path / "r", n=5)
    rc, _out, tty = run_with_tty_stderr("restore", str(tmp_path / "r"), "-o", str(tmp_path / "a.db"))
    assert rc == 0
    assert "restoring" in tty and re.search(r"\d+ pages", tty), tty
    assert (tmp_path / "a.db").read_bytes() == db.image()
    piped = subprocess.run([*CLI, "restore", str(tmp_path / "r"), "-o", str(tmp_path / "b.db")],
                           capture_output=True, text=True, timeout=60)
    assert piped.returncode == 0
    assert "restoring" not in piped.stderr and "\x1b[" not in piped.stderr
    assert piped.stderr.startswith("restored TXID 0000000000000005")
    rc, _out, tty = run_with_tty_stderr("restore", str(tmp_path / "r"), "-o", str(tmp_path / "c.db"), "--quiet")
    assert rc == 0 and tty.strip() == ""


def test_verify_progress_on_a_terminal_only(tmp_path: Path) -> None:
    simple_chain(tmp_path / "r", n=5)
    rc, out, tty = run_with_tty_stderr("verify", str(tmp_path / "r"))
    assert rc == 0 and "no defects found" in out
    assert "verifying" in tty
    piped = subprocess.run([*CLI, "verify", str(tmp_path / "r")], capture_output=True, text=True, timeout=60)
    assert piped.returncode == 0 and piped.stderr == ""
    rc, out, tty = run_with_tty_stderr("verify", str(tmp_path / "r"), "--format", "json")
    assert rc == 0 and tty.strip() == ""  # machine output: no bar even on a terminal


def run_on_terminal(args: list[str], answer: bytes) -> tuple[int, str]:
    """Run the CLI with stdin, stdout and stderr on one pseudo-terminal, typing `answer` at the prompt.

    The terminal is the child's controlling terminal (its own session), so Ctrl-C typed there is
    a SIGINT and Ctrl-D an end of file, as for a person at a shell. SIGINT is set back to its
    default in the child: a test runner's worker may ignore it, and an ignored signal stays
    ignored across exec. A child still running after a minute is killed (the test then fails)."""

    def as_at_a_shell() -> None:
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [*CLI, *args], stdin=slave, stdout=slave, stderr=slave, start_new_session=True, preexec_fn=as_at_a_shell
    )
    os.close(slave)
    seen = b""
    typed = 0.0  # when the answer was typed
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        # A Ctrl-C that lands after the prompt is written but before the read starts only marks
        # the signal, which Python acts on once the read returns: as a person would, press it again.
        if typed and answer == b"\x03" and time.monotonic() - typed > 2 and proc.poll() is None:
            os.write(master, answer)
            typed = time.monotonic()
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
            if not typed and b"apply this repair?" in seen:
                time.sleep(0.2)  # a person reads the prompt first
                os.write(master, answer)
                typed = time.monotonic()
        elif proc.poll() is not None:
            break
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=60)
    os.close(master)
    return proc.returncode, ESCAPES.sub(b"", seen).decode(errors="replace")


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize(("key", "rc"), [(b"\x03", 130), (b"\x04", 1)], ids=["ctrl-c", "ctrl-d"])
def test_repair_prompt_ctrl_c_or_ctrl_d_changes_nothing(tmp_path: Path, key: bytes, rc: int) -> None:
    import shutil

    fixture = Path(__file__).resolve().parent.parent / "fixtures" / "corrupt" / "replicas" / "txid-gap"
    replica = tmp_path / "replica"
    shutil.copytree(fixture, replica)
    before = tree(replica)
    got, screen = run_on_terminal(["repair", str(replica), "--rebuild-snapshot"], key)
    assert got == rc, screen
    assert "nothing changed" in screen and "Traceback" not in screen and "internal error" not in screen
    assert tree(replica) == before
    assert not list(replica.glob(".ltxkit-staging-*"))  # the staged snapshot is gone too


def test_repair_asks_on_a_terminal_before_moving_anything(tmp_path: Path) -> None:
    import shutil

    fixture = Path(__file__).resolve().parent.parent / "fixtures" / "corrupt" / "replicas" / "txid-gap"
    replica = tmp_path / "replica"
    shutil.copytree(fixture, replica)
    before = tree(replica)
    rc, screen = run_on_terminal(["repair", str(replica), "--rebuild-snapshot"], b"n\n")
    assert "apply this repair?" in screen and "nothing changed" in screen
    assert rc == 2  # declined: not a defect, could not run by choice
    assert tree(replica) == before
    rc, screen = run_on_terminal(["repair", str(replica), "--rebuild-snapshot"], b"y\n")
    assert rc == 0, screen
    assert "repaired" in screen
    after = tree(replica)
    assert "ltx/9/0000000000000001-0000000000000002.ltx" in after
    moved = {k for k in after if k.startswith("quarantine/")}
    assert {k.rsplit("/", 1)[-1] for k in moved} >= {
        "0000000000000004-0000000000000004.ltx",
        "0000000000000005-0000000000000005.ltx",
    }
    for name, data in before.items():  # nothing was deleted: every original file is somewhere
        assert name in after or any(k.endswith(name.rsplit("/", 1)[-1]) and after[k] == data for k in moved)
