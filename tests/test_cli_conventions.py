"""Issue 14 (9, 13, 15): conventions every command shares. The exit-code table in `--help` is the
one in `ltxkit.errors` (and the README's); verify's JSON names its schema version and mode, and
the text says which check ran; `-o -`; `--json` is `--format json` everywhere; counts read as
numbers."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

import harness as H
from ltxkit.errors import EXIT_TABLE

ROOT = Path(__file__).resolve().parent.parent
HEALTHY = ROOT / "fixtures" / "corrupt" / "replicas" / "healthy"
COMMANDS = ["inspect", "verify", "restore", "replicate", "snapshot", "checksum", "repair"]


def ltxkit(*args: object, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ltxkit", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=cwd,
        env={**os.environ, "COLUMNS": "200", "PYTHONPATH": str(ROOT)},
    )


def words(text: str) -> str:
    return " ".join(text.replace("│", " ").split())


# ---- (9) one exit-code table ----------------------------------------------------------------------


def test_help_paragraphs_are_wrapped_by_the_terminal_not_by_the_source() -> None:
    """Typer keeps a docstring's line breaks: source wrapped at 100 columns came out ragged in an
    80-column terminal (`...files are` / `sound but` / `whose restores...`)."""
    from ltxkit.cli import reflowed

    doc = """First line.

    A paragraph wrapped
    in the source.

    Examples:  ltxkit a
               ltxkit b
    - an item
    - another"""
    assert reflowed(doc) == "First line.\n\nA paragraph wrapped in the source.\n\n" + (
        "Examples:  ltxkit a\n           ltxkit b\n- an item\n- another"
    )
    r = subprocess.run([sys.executable, "-m", "ltxkit", "repair", "--help"], capture_output=True, text=True,
                       timeout=60, env={**os.environ, "COLUMNS": "80", "PYTHONPATH": str(ROOT)})
    lines = [line.strip() for line in r.stdout.splitlines()]
    start = lines.index("Make a broken replica restorable again. Deletes nothing.")
    paragraph = lines[start + 2 : lines.index("", start + 2)]
    assert all(len(line) > 60 for line in paragraph[:-1]), paragraph  # filled, not ragged


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_help_shows_the_one_exit_code_table(command: str | None) -> None:
    r = ltxkit(*([command] if command else []), "--help")
    assert r.returncode == 0, r.stderr
    text = words(r.stdout)
    for code, meaning, example in EXIT_TABLE:
        assert words(f"{code} {meaning}: {example.replace('`', '')}") in text, (command, code)


def test_readme_table_is_the_same_table() -> None:
    readme = (ROOT / "README.md").read_text()
    rows = re.findall(r"^\| (\d+) \| ([^|]+) \| ([^|]+) \|$", readme, re.M)
    assert [(int(c), m.strip(), e.strip()) for c, m, e in rows] == list(EXIT_TABLE)


# ---- (13) the JSON's version and mode; what ran is said ------------------------------------------


@pytest.mark.parametrize(
    ("flags", "mode"),
    [((), "full"), (("--quick",), "quick"), (("--structure-only",), "structure"), (("--deep",), "deep")],
)
def test_verify_json_names_schema_version_and_mode(flags: tuple[str, ...], mode: str) -> None:
    r = ltxkit("verify", HEALTHY, "--format", "json", *flags)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["schema_version"] == 1 and doc["mode"] == mode
    content = doc["replicas"][0]["content"]
    if mode in ("full", "deep"):
        assert content["checked"] and content["check"] == ("integrity_check" if mode == "deep" else "quick_check")
    else:
        assert content["checked"] is False


def test_deep_and_integrity_check_say_they_ran(tmp_path: Path) -> None:
    r = ltxkit("verify", HEALTHY, "--deep")
    assert r.returncode == 0
    assert "mode: deep (every file decoded; the latest restore point checked with PRAGMA integrity_check)" in r.stdout
    assert "content: integrity_check of the latest restore point (TXID 0000000000000004): ok" in r.stdout
    r = ltxkit("restore", HEALTHY, "-o", tmp_path / "x.db", "--integrity-check", "full")
    assert r.returncode == 0, r.stderr
    assert "PRAGMA integrity_check ran on it before it was published: ok" in r.stderr
    r = ltxkit("restore", HEALTHY, "-o", tmp_path / "y.db", "--integrity-check", "quick")
    assert "PRAGMA quick_check ran on it before it was published: ok" in r.stderr


def test_json_shapes_are_documented() -> None:
    doc = (ROOT / "docs" / "json.md").read_text()
    assert "schema_version" in doc and "](docs/json.md)" in (ROOT / "README.md").read_text()
    for mode in ("quick", "structure", "full", "deep"):
        assert f"`{mode}`" in doc


# ---- (15) -o -, one format convention, numbers -----------------------------------------------------


def test_verify_output_dash_is_stdout(tmp_path: Path) -> None:
    r = ltxkit("verify", HEALTHY, "--format", "json", "-o", "-", cwd=tmp_path)
    assert r.returncode == 0 and json.loads(r.stdout)["ok"] is True
    assert list(tmp_path.iterdir()) == []  # no file named "-"


def test_restore_output_dash_writes_the_database_to_a_pipe(tmp_path: Path) -> None:
    ref = tmp_path / "ref.db"
    assert ltxkit("restore", HEALTHY, "-o", ref, "--quiet").returncode == 0
    r = subprocess.run(
        [sys.executable, "-m", "ltxkit", "restore", str(HEALTHY), "-o", "-"], capture_output=True, timeout=120, cwd=ROOT
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout == ref.read_bytes()
    assert b"to standard output" in r.stderr


def test_restore_to_stdout_sends_every_byte_or_says_it_did_not(tmp_path: Path) -> None:
    from tests.replica_builder import Db, write_ltx

    db = Db(page_size=4096, sound=True)  # 1.2 MB: far more than a pipe holds, so the writer must wait for the reader
    write_ltx(tmp_path / "r", 9, 1, 1, db.write(list(range(1, 301))), db.commit, page_size=4096)
    ref = tmp_path / "ref.db"
    assert ltxkit("restore", tmp_path / "r", "-o", ref, "--quiet").returncode == 0
    cmd = [sys.executable, "-m", "ltxkit", "restore", str(tmp_path / "r"), "-o", "-", "--quiet"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}  # a raw stdout, whose writes may be short

    # a non-blocking pipe: writes come back short or refused (EAGAIN), and every byte still arrives
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)
    proc = subprocess.Popen(cmd, stdout=write_end, stderr=subprocess.PIPE, env=env, cwd=ROOT)
    os.close(write_end)
    received = bytearray()
    while chunk := os.read(read_end, 4096):
        received += chunk
    os.close(read_end)
    assert proc.wait(timeout=120) == 0, proc.stderr.read() if proc.stderr else ""
    assert bytes(received) == ref.read_bytes()

    # a reader that goes away, and a full disk: exit 2, one line naming standard output, never 0
    with open(os.devnull, "rb") as nothing:
        early = subprocess.run(
            f"{shlex.join(cmd)} | head -c 10 >/dev/null; exit ${{PIPESTATUS[0]}}",
            shell=True,
            executable="/bin/bash",
            capture_output=True,
            text=True,
            env=env,
            stdin=nothing,
            cwd=ROOT,
        )
    with open("/dev/full", "wb") as full:
        no_space = subprocess.run(cmd, stdout=full, stderr=subprocess.PIPE, text=True, env=env, timeout=120, cwd=ROOT)
    for r, why in ((early, "the reader closed the pipe"), (no_space, "No space left on device")):
        assert r.returncode == 2, r.stderr
        assert r.stderr == f"ltxkit: standard output: {why}; the database was not written whole\n"


def test_restore_output_dash_refuses_a_terminal(tmp_path: Path) -> None:
    primary, secondary = os.openpty()
    try:
        r = subprocess.run(
            [sys.executable, "-m", "ltxkit", "restore", str(HEALTHY), "-o", "-"],
            stdout=secondary,
            stderr=subprocess.PIPE,
            timeout=60,
            cwd=tmp_path,
        )
    finally:
        os.close(secondary)
        os.close(primary)
    assert r.returncode == 2
    assert b"standard output is a terminal" in r.stderr
    assert list(tmp_path.iterdir()) == []


def test_json_is_format_json_everywhere(tmp_path: Path) -> None:
    ltx = next((HEALTHY / "ltx" / "9").iterdir())
    db = H.make_db(tmp_path / "app.db", rows=10)
    for args in (("inspect", ltx), ("checksum", db), ("verify", HEALTHY)):
        a, b = ltxkit(*args, "--json"), ltxkit(*args, "--format", "json")
        assert a.returncode == b.returncode == 0, (args, a.stderr, b.stderr)
        da, db_ = json.loads(a.stdout), json.loads(b.stdout)
        for d in (da, db_):
            d.pop("started", None)
            for r in d.get("replicas", []):
                r.pop("seconds", None)
        assert da.keys() == db_.keys(), args
    clash = ltxkit("verify", HEALTHY, "--json", "--format", "junit")
    assert clash.returncode == 2 and "--json and --format junit" in clash.stderr
    # replicate's log format answers to --format too (--log-format stays)
    assert "--format" in words(ltxkit("replicate", "--help").stdout)


def test_counts_have_thousands_separators_and_plurals(tmp_path: Path) -> None:
    db = H.make_db(tmp_path / "app.db", rows=10)  # 4096-byte pages
    r = ltxkit("snapshot", db, "-o", tmp_path / "s.ltx")
    assert r.returncode == 0 and "pages of 4,096 bytes" in r.stderr
    r = ltxkit("restore", HEALTHY, "-o", tmp_path / "x.db")
    assert "from 1 file in" in r.stderr  # the L9 snapshot alone
    v = ltxkit("verify", HEALTHY)
    assert "6 files, " in v.stdout and "1 snapshot;" in v.stdout


# ---- (12) getting started -------------------------------------------------------------------------


def test_demo_prints_commands_a_user_can_paste(tmp_path: Path) -> None:

    from demo.run import pasteable

    replica = tmp_path / "my replica"
    shown = pasteable([sys.executable, "-m", "ltxkit", "verify", str(replica)])
    assert shown == f"ltxkit verify {shlex.quote(str(replica))}"
    assert shlex.split(shown)[2] == str(replica)  # absolute, and survives the shell
    lit = pasteable(["/opt/bin/litestream", "restore", "-o", "/tmp/x.db", f"file://{replica}"])
    assert shlex.split(lit)[-1] == f"file://{replica}"


def test_readme_says_how_to_put_ltxkit_on_path() -> None:
    readme = (ROOT / "README.md").read_text()
    start = readme.index("## Getting started")
    section = readme[start : readme.index("\n## ", start + 1)]
    for how in (".venv/bin", "pip install .", "pipx install ."):
        assert how in section, how
