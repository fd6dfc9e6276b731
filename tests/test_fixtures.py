"""The corrupt fixtures in fixtures/corrupt/: the checked-in bytes are what make_fixtures.py writes,
and `ltxkit verify` reports exactly the codes manifest.json lists for each one, in the right place,
without writing anything.

The per-fixture matrix drives the CLI in-process (typer's CliRunner: a subprocess per fixture would
cost ~0.4 s each); the mixed-input and read-only tests run the real command as a subprocess.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from ltxkit.cli import app
from ltxkit.format.errors import Code
from ltxkit.verify.engine import verify_paths

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures" / "corrupt"
GENERATOR = FIXTURES / "make_fixtures.py"
MANIFEST: dict[str, dict[str, Any]] = json.loads((FIXTURES / "manifest.json").read_text())["fixtures"]
FILE_FIXTURES = sorted(k for k, v in MANIFEST.items() if v["level"] == "file")
REPLICA_FIXTURES = sorted(k for k, v in MANIFEST.items() if v["level"] == "replica")
CONTROLS = ["files/valid-increment.ltx", "files/valid-snapshot.ltx"]

#: Codes verify reports as warnings only (exit 0 unless --fail-on warning).
WARNING_ONLY = {"stray-file", "txid-gap-bridged", "ledger-gap"}


def _l0(lo: int, hi: int, suffix: str = "") -> str:
    return f"ltx/0/{lo:016x}-{hi:016x}.ltx{suffix}"


#: For each replica fixture: code -> where it may be reported, relative to the replica ("." = the
#: replica itself, for chain/plan findings). Taken from the fixture descriptions in README.md.
REPLICA_WHERE: dict[str, dict[str, set[str]]] = {
    "replicas/checksum-chain-break": {"checksum-chain-break": {_l0(3, 3)}, "tracked-plan-end": {"."}},
    "replicas/compaction-mismatch": {"compaction-mismatch": {"ltx/1/0000000000000001-0000000000000003.ltx"}},
    "replicas/snapshot-mismatch": {"snapshot-mismatch": {"ltx/9/0000000000000001-0000000000000004.ltx"}},
    "replicas/filename-mismatch": {"filename-mismatch": {_l0(3, 3)}},
    "replicas/growth-pages-missing": {"growth-pages-missing": {_l0(2, 2)}, "unrestorable": {"."}},
    "replicas/healthy": {},
    "replicas/ledger-proven": {},
    "replicas/ledger-mismatch": {"ledger-mismatch": {"."}},
    "replicas/ledger-damaged": {"ledger-damaged": {"."}},
    "replicas/ledger-gap": {"ledger-gap": {"."}},
    "replicas/ledger-ahead": {"ledger-ahead": {"."}},
    "replicas/no-snapshot": {"no-snapshot": {"."}, "unrestorable": {"."}},
    # which side of a page-size split is "wrong" is a policy; it must be one of the files
    "replicas/page-size-mismatch": {"page-size-mismatch": {_l0(1, 1), _l0(2, 2), _l0(3, 3)}},
    "replicas/snapshot-hole": {"snapshot-nonsequential-pages": {_l0(1, 1)}, "unrestorable": {"."}},
    "replicas/stray-file": {"stray-file": {_l0(4, 4, ".tmp")}},
    "replicas/truncated-increment": {"truncated": {_l0(3, 3)}, "unrestorable": {"."}},
    "replicas/txid-gap": {"txid-gap": {"."}, "unrestorable": {"."}},
    "replicas/txid-overlap": {"txid-overlap": {_l0(2, 3), _l0(3, 4)}},
    "replicas/tracked-plan-end": {"tracked-plan-end": {"."}},
}


def expected_exit(name: str) -> int:
    codes = set(MANIFEST[name]["codes"])
    return 1 if codes - WARNING_ONLY else 0


def tree(root: Path) -> dict[str, bytes]:
    """Relative path -> bytes of every file under root (bytecode caches left out)."""
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file() and "__pycache__" not in p.parts:
            out[p.relative_to(root).as_posix()] = p.read_bytes()
    return out


def snapshot_tree(root: Path) -> dict[str, tuple[bool, int, int, str]]:
    """Everything under root, directories included: path -> (is_dir, mtime_ns, size, sha256)."""
    out = {}
    for p in sorted(root.rglob("*")):
        st = p.stat()
        sha = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else ""
        out[p.relative_to(root).as_posix()] = (p.is_dir(), st.st_mtime_ns, st.st_size, sha)
    return out


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from ltxkit.cli import main; main()", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )


# ---- the checked-in bytes are reproducible ------------------------------------------------------


def test_checked_in_fixtures_match_a_fresh_run(tmp_path: Path) -> None:
    out = tmp_path / "fresh"
    r = subprocess.run(
        [sys.executable, "-B", str(GENERATOR), "--out", str(out)], capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 0, r.stderr
    fresh = tree(out)
    checked_in = tree(FIXTURES)
    checked_in.pop("make_fixtures.py")
    assert "manifest.json" in fresh and "README.md" in fresh
    assert sorted(fresh) == sorted(checked_in), "files missing from or extra to the checked-in fixtures"
    differ = sorted(k for k in fresh if fresh[k] != checked_in[k])
    assert differ == [], f"checked-in fixtures differ from a fresh run of make_fixtures.py: {differ}"
    # the manifest names exactly the fixtures that exist
    files = {k for k in fresh if k.startswith("files/")}
    replicas = {"/".join(k.split("/")[:2]) for k in fresh if k.startswith("replicas/")}
    assert set(MANIFEST) == files | replicas


def test_every_replica_fixture_has_expected_locations() -> None:
    assert set(REPLICA_WHERE) == set(REPLICA_FIXTURES)
    for name, where in REPLICA_WHERE.items():
        entry = MANIFEST[name]
        assert set(where) == set(entry["codes"]) | set(entry["may_also"]), name


# ---- verify reports the manifest's codes --------------------------------------------------------


def _verify_json(path: Path, *extra: str) -> tuple[int, dict[str, Any]]:
    res = CliRunner().invoke(app, ["verify", str(path), "--format", "json", *extra])
    assert res.exception is None or isinstance(res.exception, SystemExit), res.exception
    return res.exit_code, json.loads(res.stdout)


@pytest.mark.parametrize("name", sorted(MANIFEST), ids=lambda n: n.split("/", 1)[1])
def test_verify_reports_manifest_codes(name: str) -> None:
    entry = MANIFEST[name]
    path = FIXTURES / name
    code, doc = _verify_json(path)
    found = [f["code"] for f in doc["findings"]]
    want, allowed = set(entry["codes"]), set(entry["codes"]) | set(entry["may_also"])
    assert want <= set(found), f"{name}: missing {sorted(want - set(found))}; got {found}"
    assert set(found) <= allowed, f"{name}: unexpected {sorted(set(found) - allowed)}; got {found}"
    if entry["level"] == "file":
        assert set(found) == want  # file fixtures: exactly the codes listed
    assert code == expected_exit(name), doc["findings"]
    assert doc["ok"] is (code == 0)
    if entry["level"] == "file":
        assert [fc["path"] for fc in doc["files"]] == [str(path)] and doc["replicas"] == []
        assert all(f["path"] == str(path) for f in doc["findings"]), doc["findings"]
        assert doc["files"][0]["ok"] is (not want)
    else:
        assert doc["files"] == [] and [r["path"] for r in doc["replicas"]] == [str(path)]
        for f in doc["findings"]:
            p = Path(f["path"])
            assert p == path or path in p.parents, f
            rel = "." if p == path else p.relative_to(path).as_posix()
            assert rel in REPLICA_WHERE[name][f["code"]], f"{name}: {f['code']} reported at {rel}"


@pytest.mark.parametrize("name", [n for n in sorted(MANIFEST) if MANIFEST[n]["codes"]], ids=lambda n: n.split("/")[1])
def test_fail_on_warning_fails_every_damaged_fixture(name: str) -> None:
    code, doc = _verify_json(FIXTURES / name, "--fail-on", "warning")
    assert code == 1 and doc["ok"] is False


def test_verify_paths_api_over_all_fixtures() -> None:
    """One in-process call over every fixture: a regression shows as a dict diff."""
    report = verify_paths([str(FIXTURES / n) for n in sorted(MANIFEST)])
    assert len(report.files) == len(FILE_FIXTURES) and len(report.replicas) == len(REPLICA_FIXTURES)
    got: dict[str, list[str]] = {}
    for fc in report.files:
        got[Path(fc.path).relative_to(FIXTURES).as_posix()] = sorted({str(f.code) for f in fc.findings})
    for r in report.replicas:
        codes = {str(f.code) for f in r.findings} | {str(f.code) for fc in r.files for f in fc.findings}
        got[Path(r.path).relative_to(FIXTURES).as_posix()] = sorted(codes)
    expected = {
        name: sorted(set(e["codes"]) | (set(got.get(name, [])) & set(e["may_also"]))) for name, e in MANIFEST.items()
    }
    assert got == expected


# ---- the real command, several inputs at once --------------------------------------------------


@pytest.mark.parametrize("damaged", ["files/multiple-defects.ltx", "files/truncated-header.ltx"])
def test_mixed_damaged_and_valid_files(damaged: str) -> None:
    paths = [str(FIXTURES / CONTROLS[0]), str(FIXTURES / damaged), str(FIXTURES / CONTROLS[1])]
    r = run_cli("verify", *paths, "--format", "json")
    assert r.returncode == 1, r.stderr
    doc = json.loads(r.stdout)
    assert [fc["path"] for fc in doc["files"]] == paths
    assert [fc["ok"] for fc in doc["files"]] == [True, False, True]
    assert {f["path"] for f in doc["findings"]} == {paths[1]}
    assert sorted({f["code"] for f in doc["findings"]}) == sorted(MANIFEST[damaged]["codes"])


def test_verify_never_writes_into_the_fixtures(tmp_path: Path) -> None:
    everything = [str(FIXTURES / n) for n in sorted(MANIFEST)]
    before = snapshot_tree(FIXTURES)
    runs = [
        ("--deep", "--format", "json"),
        ("--quick",),
        ("--format", "junit", "--output", str(tmp_path / "report.xml")),
    ]
    for extra in runs:
        r = run_cli("verify", *everything, *extra)
        assert r.returncode == 1, (extra, r.stderr)
        assert "Traceback" not in r.stderr
    assert (tmp_path / "report.xml").stat().st_size > 0
    report = verify_paths(everything, deep=True)
    assert report.failed()
    assert snapshot_tree(FIXTURES) == before
    assert not [p for p in FIXTURES.rglob("*") if p.name.startswith(".") or p.suffix == ".db"]
    assert os.listdir(tmp_path) == ["report.xml"]


@pytest.mark.parametrize("name", ["truncated-page", "truncated-index", "truncated-trailer", "legacy-frame-truncated"])
def test_quick_verify_calls_a_cut_file_truncated_as_the_full_check_does(name: str) -> None:
    """Both read the file's ends through one reader (`read_ends`), so a cut file is `truncated`
    whether or not its pages are read."""
    from ltxkit.verify.files import check_loose_file

    path = FIXTURES / "files" / f"{name}.ltx"
    full = [f.code for f in check_loose_file(path, quick=False).findings]
    quick = [f.code for f in check_loose_file(path, quick=True).findings]
    assert full == quick == [Code.TRUNCATED]
