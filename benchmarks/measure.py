"""Timing helpers: in-process best-of-N, and child processes with their own peak RSS (os.wait4)."""

from __future__ import annotations

import os
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass
class ChildRun:
    args: list[str]
    seconds: float
    returncode: int
    max_rss_kib: int  # ru_maxrss of the child itself (KiB on Linux)
    stdout: str
    stderr: str


def run_child(args: Sequence[str], *, env: dict[str, str] | None = None, cwd: str | None = None) -> ChildRun:
    """Run `args`, wall-clock timed, and reap it with os.wait4 to get that child's own peak RSS."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t = time.perf_counter()
        proc = subprocess.Popen(list(args), stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=env, cwd=cwd)
        _pid, status, usage = os.wait4(proc.pid, 0)
        elapsed = time.perf_counter() - t
        proc.returncode = os.waitstatus_to_exitcode(status)  # already reaped: keep Popen from waiting again
        out.seek(0)
        err.seek(0)
        return ChildRun(
            list(args),
            elapsed,
            proc.returncode,
            int(usage.ru_maxrss),
            out.read().decode(errors="replace"),
            err.read().decode(errors="replace"),
        )


@dataclass
class Timings:
    seconds: list[float] = field(default_factory=list)

    @property
    def best(self) -> float:
        return min(self.seconds)

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)


def best_of(n: int, fn: Callable[[], Any]) -> tuple[Timings, Any]:
    """Call `fn` n times; return the timings and the last result."""
    t = Timings()
    result = None
    for _ in range(n):
        start = time.perf_counter()
        result = fn()
        t.seconds.append(time.perf_counter() - start)
    return t, result


def mb_per_s(nbytes: int, seconds: float) -> float:
    return nbytes / 1e6 / seconds if seconds > 0 else float("inf")
