"""One error model: every failure is an `LtxkitError` with a message, an exit code and (where the
data is at fault) a defect code; errors raised on top of another keep it as their cause."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from ltxkit.errors import EXIT_DEFECTS, EXIT_USAGE, LtxkitError
from ltxkit.format.errors import Code, LTXError
from ltxkit.repair import RepairError
from ltxkit.replica.layout import PlanError
from ltxkit.replica.storage import LocalStorage, OutputExists, ReplicaNotFound, atomic_output
from ltxkit.restore import RestoreError, restore_to_path
from ltxkit.sqlite import DatabaseError
from ltxkit.verify.engine import VerifyUsageError
from tests.replica_builder import simple_chain


@pytest.mark.parametrize(
    ("error", "exit_code"),
    [
        (LTXError(Code.TRUNCATED, "x"), EXIT_DEFECTS),
        (PlanError(Code.TXID_GAP, "x"), EXIT_DEFECTS),
        (RestoreError(Code.TRUNCATED, "x"), EXIT_DEFECTS),
        (RepairError("x"), EXIT_DEFECTS),
        (DatabaseError("x"), EXIT_DEFECTS),
        (OutputExists(Path("x")), EXIT_USAGE),  # could not run: not a defect in any data
        (ReplicaNotFound("x"), EXIT_USAGE),
        (VerifyUsageError("x"), EXIT_USAGE),
    ],
)
def test_every_error_is_an_ltxkit_error_with_its_exit_code(error: LtxkitError, exit_code: int) -> None:
    assert isinstance(error, LtxkitError)
    assert error.exit_code == exit_code


def test_a_restore_error_keeps_the_defect_as_its_cause_and_names_its_code_once(tmp_path: Path, run_ltxkit) -> None:
    simple_chain(tmp_path / "r", n=4)
    victim = tmp_path / "r" / "ltx" / "0" / f"{4:016x}-{4:016x}.ltx"
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) - 40])
    with pytest.raises(RestoreError) as info:
        restore_to_path(LocalStorage(tmp_path / "r"), tmp_path / "out.db")
    err = info.value
    cause = err.__cause__
    assert isinstance(cause, LTXError) and cause.code == err.code
    assert str(err).count(str(err.code)) == 1, str(err)
    assert cause.where in str(err)
    assert not (tmp_path / "out.db").exists()
    r = run_ltxkit("restore", tmp_path / "r", "-o", tmp_path / "out.db")
    assert r.returncode == 1
    [line] = r.stderr.splitlines()
    assert line.startswith(f"ltxkit: {tmp_path / 'r'}: {err.code}: ltx/0/") and line.count(str(err.code)) == 1, line


def test_an_output_is_replaced_only_when_asked_even_if_it_appears_late(tmp_path: Path) -> None:
    out = tmp_path / "out.db"
    out.write_bytes(b"precious")
    with pytest.raises(OutputExists, match="use --force"), atomic_output(out) as fh:
        fh.write(b"new")
    late = tmp_path / "late.db"
    with pytest.raises(OutputExists), atomic_output(late) as fh:
        fh.write(b"new")
        late.write_bytes(b"someone else's")  # appears while we write
    assert late.read_bytes() == b"someone else's" and out.read_bytes() == b"precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["late.db", "out.db"]  # no temp file left
    with atomic_output(out, replace=True) as fh:
        fh.write(b"new")
    assert out.read_bytes() == b"new"


def test_ctrl_c_the_moment_the_temp_file_is_made_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The signal can land as `open` returns, before the cleanup's try begins (the race
    test_limits' Ctrl-C test hits now and then): the new temp file still goes."""
    import builtins

    import ltxkit.replica.storage as storage

    def open_then_interrupted(*args: Any, **kwargs: Any) -> Any:
        builtins.open(*args, **kwargs).close()
        raise KeyboardInterrupt

    monkeypatch.setattr(storage, "open", open_then_interrupted, raising=False)
    with pytest.raises(KeyboardInterrupt), atomic_output(tmp_path / "out.db") as fh:
        fh.write(b"never")
    assert list(tmp_path.iterdir()) == []
    # an existing temp file that `open` refuses is someone else's: left alone
    monkeypatch.undo()
    stale = tmp_path / f".late.db.{os.getpid()}.tmp"
    stale.write_bytes(b"not ours")
    with pytest.raises(FileExistsError), atomic_output(tmp_path / "late.db") as fh:
        fh.write(b"never")
    assert stale.read_bytes() == b"not ours"
