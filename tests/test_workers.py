"""fork_call: one call in a forked child, its value or its exception handed back, the child always reaped."""

from __future__ import annotations

import os
import pickle
import signal
import time

import pytest

from ltxkit.format.errors import Code, LTXError
from ltxkit.workers import WorkerDied, fork_call

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")


def _pid_and_sum(*xs: int) -> tuple[int, int]:
    return os.getpid(), sum(xs)


def _raise_ltx() -> None:
    raise LTXError(Code.FILE_CHECKSUM_MISMATCH, "file checksum mismatch", offset=12)


def _exit_hard() -> None:
    os._exit(5)


def _kill_self() -> None:
    os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(10)


def _unpicklable() -> object:
    return lambda: None


def test_the_value_comes_back_from_another_process() -> None:
    pid, total = fork_call(_pid_and_sum, 1, 2, 3).result()
    assert total == 6
    assert pid != os.getpid()


def test_an_exception_comes_back_with_its_code() -> None:
    with pytest.raises(LTXError) as err:
        fork_call(_raise_ltx).result()
    assert err.value.code == Code.FILE_CHECKSUM_MISMATCH


@pytest.mark.parametrize("fn", [_exit_hard, _kill_self])
def test_a_child_that_dies_is_a_worker_died(fn) -> None:  # type: ignore[no-untyped-def]
    child = fork_call(fn)
    with pytest.raises(WorkerDied):
        child.result()
    with pytest.raises(ChildProcessError):  # already reaped: no zombie left
        os.waitpid(child._pid, os.WNOHANG)


def test_a_result_that_will_not_pickle_is_reported() -> None:
    with pytest.raises((AttributeError, pickle.PicklingError), match="pickle"):
        fork_call(_unpicklable).result()


def test_wait_never_raises_and_result_can_follow() -> None:
    child = fork_call(_raise_ltx)
    child.wait()
    child.wait()
    with pytest.raises(LTXError):
        child.result()
