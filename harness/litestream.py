"""Driving real Litestream: configs, `replicate -once`, the daemon with its control socket, `restore`."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from harness.binary import _LIVE, _LIVE_LOCK, _SOCKDIRS, litestream_bin
from harness.common import FAST_LEVELS, FAST_MONITOR, FAST_SNAPSHOT, FAST_SYNC
from harness.files import local_max_txid, max_txid


def _deep_merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """Recursive dict merge; a ``None`` value in ``over`` deletes the key."""
    out = dict(base)
    for k, v in over.items():
        if v is None:
            out.pop(k, None)
        elif isinstance(v, Mapping) and isinstance(out.get(k), dict):
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = v
    return out


def base_config(
    db_path: str | os.PathLike[str],
    replica_dir: str | os.PathLike[str],
    *,
    socket_path: str | None = None,
    levels: Sequence[str] = FAST_LEVELS,
    snapshot_interval: str = FAST_SNAPSHOT,
    l0_retention: str | None = None,
    l0_retention_check_interval: str | None = None,
    log_level: str = "info",
) -> dict[str, Any]:
    """Config dict for one database replicated to a ``file`` replica, tuned for tests.

    Keys, as read from cmd/litestream/main.go of 0.5.17:

    * ``levels: [{interval: 1s}, ...]`` - L1..Ln compaction intervals (default 30s/5m/1h).  The
      list *replaces* the default; ``[]`` leaves only L0 (no compaction at all).
    * ``snapshot: {interval, retention}`` - L9 snapshots.  The snapshot monitor always takes one
      snapshot about 1 s after start when level 9 is empty, whatever the interval.
    * ``l0-retention`` / ``l0-retention-check-interval`` - L0 files older than this that are
      already covered by L1 are deleted (default 5m / 15s).
    * per db: ``monitor-interval`` (WAL poll); checkpoints, all run by Litestream itself after a
      sync: ``min-checkpoint-page-count`` (PASSIVE once the WAL holds that many pages, default
      1000), ``checkpoint-interval`` (PASSIVE when the db file is older than this and the WAL
      is non-empty, default 1m; set to 1h here), ``truncate-page-n`` (TRUNCATE above that many
      pages, default 121359), ``busy-timeout``; per replica: ``sync-interval``.
    * ``socket: {enabled, path}`` - control socket used by :meth:`Replicator.sync`.
    """
    cfg: dict[str, Any] = {
        "logging": {"level": log_level, "type": "text"},
        "levels": [{"interval": iv} for iv in levels],
        "snapshot": {"interval": snapshot_interval, "retention": "24h"},
        "dbs": [
            {
                "path": str(Path(db_path).resolve()),
                "monitor-interval": FAST_MONITOR,
                "checkpoint-interval": "1h",
                "replica": {
                    "type": "file",
                    "path": str(Path(replica_dir).resolve()),
                    "sync-interval": FAST_SYNC,
                },
            }
        ],
    }
    if l0_retention is not None:
        cfg["l0-retention"] = l0_retention
    if l0_retention_check_interval is not None:
        cfg["l0-retention-check-interval"] = l0_retention_check_interval
    if socket_path is not None:
        cfg["socket"] = {"enabled": True, "path": socket_path}
    return cfg


def write_config(path: str | os.PathLike[str], cfg: Mapping[str, Any]) -> Path:
    """Write ``cfg`` as YAML.  JSON is valid YAML, so no YAML emitter is needed."""
    path = Path(path)
    path.write_text(json.dumps(cfg, indent=2) + "\n")
    return path


def _build_config(
    db_path: str | os.PathLike[str],
    replica_dir: str | os.PathLike[str],
    config_overrides: Mapping[str, Any] | None,
    db_overrides: Mapping[str, Any] | None,
    **kw: Any,
) -> dict[str, Any]:
    cfg = base_config(db_path, replica_dir, **kw)
    if db_overrides:
        cfg["dbs"][0] = _deep_merge(cfg["dbs"][0], db_overrides)
    if config_overrides:
        cfg = _deep_merge(cfg, config_overrides)
    return cfg


def replicate_once(
    db_path: str | os.PathLike[str],
    replica_dir: str | os.PathLike[str],
    *,
    force_snapshot: bool = False,
    config_overrides: Mapping[str, Any] | None = None,
    db_overrides: Mapping[str, Any] | None = None,
    check: bool = True,
    timeout: float = 60,
) -> subprocess.CompletedProcess[str]:
    """``litestream replicate -once [-force-snapshot] -config <yml>``: one sync, then exit.

    Works with a config file (verified on 0.5.17).  One call -> one L0 file holding everything new
    in the WAL (nothing when nothing changed); ``-force-snapshot`` adds an L9 file
    ``0000000000000001-<txid>.ltx``.  No compaction and no L0 retention run in this mode.  Use
    :func:`pin_wal` around a sequence of calls (see module docstring).
    """
    db_path = Path(db_path)
    cfg = _build_config(db_path, replica_dir, config_overrides, db_overrides, levels=())
    cfg_path = write_config(db_path.parent / f"{db_path.name}.once.yml", cfg)
    args = [litestream_bin(), "replicate", "-once"]
    if force_snapshot:
        args.append("-force-snapshot")
    args += ["-config", str(cfg_path)]
    res = subprocess.run(args, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    if check and res.returncode != 0:
        raise RuntimeError(f"litestream replicate -once failed ({res.returncode}):\n{res.stdout}\n{res.stderr}")
    return res


class _UnixHTTPConnection(http.client.HTTPConnection):
    """HTTP over Litestream's control socket (AF_UNIX; no network involved)."""

    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self._path)
        self.sock = s


class Replicator:
    """``litestream replicate -config <generated yml>`` as a managed subprocess.

    Use as a context manager; leaving the block stops the daemon with SIGTERM (Litestream then
    does a final sync) and kills it if that takes too long.  The generated config lives beside
    the database (``<db>.litestream.yml``), the log in ``<db>.litestream.log`` unless
    ``log_path`` is given.  The control socket lives in a short private dir under ``/tmp``
    because AF_UNIX paths are limited to 108 bytes and pytest tmp paths can be longer.

    ``config_overrides`` is deep-merged into the top level (``None`` values delete keys),
    ``db_overrides`` into ``dbs[0]`` (``{"replica": {...}}`` reaches the replica section); the
    other keyword arguments go to :func:`base_config`.
    """

    def __init__(
        self,
        db_path: str | os.PathLike[str],
        replica_dir: str | os.PathLike[str],
        *,
        config_overrides: Mapping[str, Any] | None = None,
        db_overrides: Mapping[str, Any] | None = None,
        log_path: str | os.PathLike[str] | None = None,
        **config_kw: Any,
    ) -> None:
        self.db_path = Path(db_path).resolve()
        self.replica_dir = Path(replica_dir).resolve()
        self._sockdir = tempfile.mkdtemp(prefix="lsh", dir="/tmp")
        _SOCKDIRS.add(self._sockdir)
        self.socket_path = os.path.join(self._sockdir, "ctl.sock")
        self.config = _build_config(
            self.db_path,
            self.replica_dir,
            config_overrides,
            db_overrides,
            socket_path=self.socket_path,
            **config_kw,
        )
        self.config_path = write_config(self.db_path.parent / f"{self.db_path.name}.litestream.yml", self.config)
        self.log_path = Path(log_path) if log_path else self.db_path.parent / f"{self.db_path.name}.litestream.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.returncode: int | None = None

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self, timeout: float = 15) -> Replicator:
        """Launch the daemon and wait until its control socket answers."""
        if self.alive:
            raise RuntimeError("already running")
        os.makedirs(self._sockdir, exist_ok=True)
        _SOCKDIRS.add(self._sockdir)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.socket_path)
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child, closed below
        try:
            self.proc = subprocess.Popen(
                [litestream_bin(), "replicate", "-config", str(self.config_path)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            log.close()
        with _LIVE_LOCK:
            _LIVE.add(self.proc)
        self.returncode = None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self._forget()
                raise RuntimeError(f"litestream exited early ({self.proc.returncode}):\n{self.log_text()}")
            if os.path.exists(self.socket_path):
                try:
                    self._request("GET", "/list", None, 2)
                    return self
                except OSError:
                    pass
            time.sleep(0.02)
        self.kill9()
        raise TimeoutError(f"litestream control socket never came up:\n{self.log_text()}")

    def __enter__(self) -> Replicator:
        return self.start() if not self.alive else self

    def __exit__(self, *exc: object) -> None:
        try:
            if self.alive:
                self.stop()
        finally:
            shutil.rmtree(self._sockdir, ignore_errors=True)
            _SOCKDIRS.discard(self._sockdir)

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def _forget(self) -> None:
        if self.proc is not None:
            with _LIVE_LOCK:
                _LIVE.discard(self.proc)
            self.returncode = self.proc.returncode

    def stop(self, timeout: float = 15) -> int:
        """SIGTERM and wait (Litestream syncs once more on the way out); SIGKILL on timeout."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._forget()
        return int(self.proc.returncode)

    def kill9(self) -> int:
        """Real ``kill -9``: no final sync, no cleanup, exactly like a crashed host process."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        self._forget()
        return int(self.proc.returncode)

    def restart(self) -> Replicator:
        """Start again with the same config (after :meth:`stop` or :meth:`kill9`)."""
        if self.alive:
            self.stop()
        return self.start()

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    # -- control -------------------------------------------------------------------------------

    def _request(self, method: str, url: str, body: Mapping[str, Any] | None, timeout: float) -> dict[str, Any]:
        conn = _UnixHTTPConnection(self.socket_path, timeout)
        try:
            payload = json.dumps(body).encode() if body is not None else None
            headers = {"Content-Type": "application/json"} if payload is not None else {}
            conn.request(method, url, body=payload, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
        finally:
            conn.close()
        if resp.status != 200:
            raise RuntimeError(f"litestream {method} {url} -> {resp.status}: {data.decode(errors='replace')}")
        return json.loads(data) if data else {}

    def sync(self, timeout: float = 15) -> tuple[int, int]:
        """Force WAL->L0 and L0->replica now (control socket ``/sync`` with ``wait``).

        Returns ``(db_txid, replicated_txid)``.  This is the same as ``litestream sync -wait``,
        only without spawning a process.  Compactions/snapshots still follow their own clocks;
        use :meth:`wait_for_level` for those.
        """
        if not self.alive:
            raise RuntimeError(f"litestream is not running:\n{self.log_text()[-4000:]}")
        res = self._request(
            "POST", "/sync", {"path": str(self.db_path), "wait": True, "timeout": int(timeout)}, timeout + 5
        )
        return int(res.get("txid", 0)), int(res.get("replicated_txid", 0))

    def wait_for_txid(self, n: int, timeout: float = 15, level: int = 0) -> int:
        """Poll the replica directory until ``level`` holds a file reaching TXID ``n``."""
        deadline = time.monotonic() + timeout
        while True:
            got = max_txid(self.replica_dir, level)
            if got >= n:
                return got
            if not self.alive:
                raise RuntimeError(f"litestream died while waiting for txid {n}:\n{self.log_text()[-4000:]}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"level {level} reached txid {got}, wanted {n}\n{self.log_text()[-4000:]}")
            time.sleep(0.05)

    def wait_for_level(self, level: int, txid: int | None = None, timeout: float = 15) -> int:
        """Wait until compaction/snapshot ``level`` reaches ``txid`` (default: the current L0 max)."""
        if txid is None:
            txid = max_txid(self.replica_dir, 0)
        return self.wait_for_txid(txid, timeout=timeout, level=level)

    def wait_until_caught_up(self, timeout: float = 15, settle: float = 0.3) -> int:
        """Sync, then poll until the replica's max TXID equals Litestream's local position and
        has not changed for ``settle`` seconds.  Returns that TXID."""
        deadline = time.monotonic() + timeout
        self.sync(timeout)
        last, since = -1, time.monotonic()
        while True:
            remote = max_txid(self.replica_dir, 0)
            local = local_max_txid(self.db_path)
            if remote != last:
                last, since = remote, time.monotonic()
            elif remote >= local and time.monotonic() - since >= settle:
                return remote
            if not self.alive:
                raise RuntimeError(f"litestream died:\n{self.log_text()[-4000:]}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"replica at {remote}, local at {local}")
            time.sleep(0.05)


def restore(
    replica_dir: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    txid: int | None = None,
    timestamp: str | None = None,
    *,
    extra_args: Sequence[str] = (),
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    """Real ``litestream restore -o out [-txid %016x] [-timestamp ts] file://replica_dir``.

    Never raises on a failed restore: tests inspect ``returncode``/``stderr``.  On failure 0.5.17
    exits 1 with a single ``Error: <message>`` line on stderr and leaves no output file.
    ``-txid`` must be 16 hex digits; the output path must not exist unless
    ``extra_args=("-force",)``.
    """
    args = [litestream_bin(), "restore", "-o", str(out_path)]
    if txid is not None:
        args += ["-txid", f"{txid:016x}"]
    if timestamp is not None:
        args += ["-timestamp", timestamp]
    args += list(extra_args)
    args.append("file://" + str(Path(replica_dir).resolve()))
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
