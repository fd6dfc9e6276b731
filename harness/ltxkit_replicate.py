"""`ltxkit replicate` as a managed subprocess, and an application writing to its database.

Tests kill it with SIGKILL, stop it with SIGTERM (it then syncs once more and exits 0), or let a
test hook (`LTXKIT_TEST_CRASH_AT`) kill it at a named step. Its log is JSON lines in
`<db>.ltxkit.log`, appended across restarts.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from harness.common import TABLE
from harness.db import row_payload


class LtxkitReplicator:
    def __init__(
        self,
        db_path: str | os.PathLike[str],
        replica: str | os.PathLike[str],
        *,
        interval: str = "50ms",
        args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.db_path = Path(db_path)
        self.replica = str(replica)
        self.args = ["--interval", interval, "--log-format", "json", *args]
        self.env = dict(env or {})
        self.log_path = self.db_path.parent / f"{self.db_path.name}.ltxkit.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def command(self, *extra: str) -> list[str]:
        return [sys.executable, "-m", "ltxkit", "replicate", str(self.db_path), self.replica, *self.args, *extra]

    def start(self, *, env: Mapping[str, str] | None = None, timeout: float = 15) -> LtxkitReplicator:
        """Start it and wait for its first sync to finish (or for it to die)."""
        before = len(self.events())
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                self.command(),
                stdout=log,
                stderr=log,
                stdin=subprocess.DEVNULL,
                env={**os.environ, "PYTHONFAULTHANDLER": "1", **self.env, **(env or {})},
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(e["event"] != "started" for e in self.events()[before:]) or self.proc.poll() is not None:
                return self
            time.sleep(0.02)
        raise TimeoutError(f"ltxkit replicate did not start:\n{self.log_text()[-3000:]}")

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 60) -> int:
        """SIGTERM: one last sync, then exit (0 expected). A replicator that does not stop in time
        is dumped (faulthandler: where it was stuck) and killed, and the test fails saying so."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.send_signal(signal.SIGABRT)  # PYTHONFAULTHANDLER prints every thread's stack
            self.proc.wait(10)
            raise RuntimeError(f"ltxkit replicate did not stop in {timeout} s:\n{self.log_text()[-5000:]}") from None

    def kill9(self) -> int:
        assert self.proc is not None
        self.proc.kill()
        return self.proc.wait(10)

    def wait_dead(self, timeout: float = 30) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def events(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log_text().splitlines():
            if line.startswith("{"):
                out.append(json.loads(line))
        return out

    def published(self) -> list[dict[str, Any]]:
        return [e for e in self.events() if e["event"] == "published"]

    def wait_for(self, predicate: Any, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise TimeoutError(f"condition not met; log:\n{self.log_text()[-3000:]}")
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"ltxkit replicate exited {self.proc.returncode}:\n{self.log_text()[-3000:]}")
            time.sleep(0.02)

    def publish_while(self, write: Any, commits: int, files: int = 3, *, pause: float = 0.3) -> None:
        """Commit `commits` times (`write()`, `pause` s apart), then wait until it has published
        `files` files: a replica with a few files of this replicator's, for tests that damage one."""
        for _ in range(commits):
            write()
            time.sleep(pause)
        self.wait_for(lambda: len(self.published()) >= files)

    def commit_until_it_stops(self, write: Any, seconds: float, pause: float = 0.3) -> None:
        """Commit (`write()`, `pause` s apart) until it exits or `seconds` pass."""
        deadline = time.monotonic() + seconds
        while self.alive and time.monotonic() < deadline:
            write()
            time.sleep(pause)

    def __enter__(self) -> LtxkitReplicator:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.alive:
            self.kill9()


def run_once(
    db_path: str | os.PathLike[str], replica: str | os.PathLike[str], *extra: str, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`ltxkit replicate DB REPLICA --once`; never raises on a failed run."""
    return subprocess.run(
        [sys.executable, "-m", "ltxkit", "replicate", str(db_path), str(replica), "--once", *extra],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
        env={**os.environ, **(env or {})},
    )


class Writer:
    """An application: one connection of its own, small transactions in a thread while running.

    It uses SQLite's defaults (autocheckpoint on), as an application would. `run_for(s)` writes
    for `s` seconds; `checkpoint(mode)` runs a checkpoint on its connection between writes.
    """

    def __init__(self, db_path: str | os.PathLike[str], *, row_bytes: int = 300, per_txn: int = 3) -> None:
        self.db_path = Path(db_path)
        self.conn = sqlite3.connect(str(db_path), isolation_level=None, timeout=30, check_same_thread=False)
        self.row_bytes = row_bytes
        self.per_txn = per_txn
        self.next_id = int(self.conn.execute(f"SELECT coalesce(max(id), 0) FROM {TABLE}").fetchone()[0]) + 1
        self.commits = 0

    def write(self, transactions: int = 1) -> None:
        for _ in range(transactions):
            ids = range(self.next_id, self.next_id + self.per_txn)
            self.conn.execute("BEGIN IMMEDIATE")
            self.conn.executemany(
                f"INSERT INTO {TABLE}(id, k, v) VALUES (?, ?, ?)",
                ((j, f"row-{j}", row_payload(j, self.row_bytes)) for j in ids),
            )
            if self.commits % 7 == 3:  # some updates and deletes too: pages change, not only grow
                self.conn.execute(f"UPDATE {TABLE} SET k = k || '+' WHERE id % 5 = ?", (self.commits % 5,))
                self.conn.execute(f"DELETE FROM {TABLE} WHERE id = ?", (self.next_id - 7,))
            self.conn.execute("COMMIT")
            self.next_id += self.per_txn
            self.commits += 1

    def run_for(self, seconds: float, *, pause: float = 0.005) -> None:
        stop = threading.Event()

        def loop() -> None:
            while not stop.is_set():
                self.write()
                time.sleep(pause)

        t = threading.Thread(target=loop)
        t.start()
        time.sleep(seconds)
        stop.set()
        t.join()

    def checkpoint(self, mode: str) -> tuple[int, int, int]:
        row = self.conn.execute(f"PRAGMA wal_checkpoint({mode})").fetchone()
        return int(row[0]), int(row[1]), int(row[2])

    def close(self) -> None:
        self.conn.close()
