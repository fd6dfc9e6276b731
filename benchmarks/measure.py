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
    cpu_seconds: float = 0.0  # user + system CPU of the command and the children it reaped


# A child forked from this (large) benchmark process inherits its peak RSS on Linux: the kernel
# carries the parent's high-water mark through fork and exec into the child's ru_maxrss. So the
# measured command is started by a small trampoline interpreter instead; it times the command
# itself and reaps it with wait4, and its own footprint (~10 MB) is the floor of what it reports.
_TRAMPOLINE = """
import json, os, subprocess, sys, time
report, args = sys.argv[1], sys.argv[2:]
t = time.perf_counter()
proc = subprocess.Popen(args)
_pid, status, usage = os.wait4(proc.pid, 0)
seconds = time.perf_counter() - t
proc.returncode = os.waitstatus_to_exitcode(status)
with open(report, "w") as fh:
    json.dump({"seconds": seconds, "rc": proc.returncode, "maxrss_kib": usage.ru_maxrss,
               "cpu": usage.ru_utime + usage.ru_stime}, fh)
"""


def run_child(args: Sequence[str], *, env: dict[str, str] | None = None, cwd: str | None = None) -> ChildRun:
    """Run `args` (through the trampoline), timing it and taking that command's own peak RSS."""
    import json
    import sys

    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, tempfile.TemporaryDirectory() as tmp:
        report = os.path.join(tmp, "report.json")
        subprocess.run(
            [sys.executable, "-S", "-c", _TRAMPOLINE, report, *args],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            env=env,
            cwd=cwd,
            check=False,
        )
        with open(report) as fh:
            measured = json.load(fh)
        out.seek(0)
        err.seek(0)
        return ChildRun(
            list(args),
            measured["seconds"],
            measured["rc"],
            int(measured["maxrss_kib"]),
            out.read().decode(errors="replace"),
            err.read().decode(errors="replace"),
            float(measured["cpu"]),
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
