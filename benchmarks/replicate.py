"""`ltxkit replicate` next to `litestream replicate`, in the same run, on the same workload.

Each tool gets its own fresh copy of the database and its own fresh replica directory, and the
two never run at the same time. Both sync every second (`--interval 1s`; Litestream's default
`sync-interval: 1s`); everything else is each tool's default. The replicators run as
subprocesses logging to files under WORK/replicate/logs/.

1. idle lag: a few-MB database, the replicator settled; 20 single-row commits 1.3–2.0 s apart
   (one seeded sequence for both). Lag = COMMIT returned → a new max TXID in `ltx/0/` (polled
   every 5 ms).
2. under load: ~200 one-row transactions per second for 20 s from a paced loop in this process
   (own connection, busy_timeout 5000, synchronous=NORMAL); the writer's commit latency and the
   replicator's CPU seconds over the window (/proc/<pid>/stat, its process tree).
3. initial snapshot: the ~300 MB benchmark database (a fresh copy per tool), a writer at ~50 tx/s;
   time from starting the replicator to the first L0 file, and the writer's longest stall then.

After each run the final replica is restored with `litestream restore` and its row counts are
compared with the source's (not timed).
"""

from __future__ import annotations

import json
import math
import os
import random
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchmarks.dataset import build_database
from benchmarks.report import Row
from harness.litestream import write_config

if TYPE_CHECKING:
    from benchmarks.run import Context

TOOLS = ("ltxkit", "litestream")
INTERVAL = "1s"
SEED = 20251125
POLL_S = 0.005  # how often the replica directory is looked at
ROW_BYTES = 200
WRITES_TABLE = "bench_writes"

SMALL_DB_MB = 4
IDLE_COMMITS = 20
IDLE_GAP_S = (1.3, 2.0)
LAG_TIMEOUT_S = 15.0
SETTLE_QUIET_S = 3.0

LOAD_TPS = 200
LOAD_S = 20.0
LOAD_S_SMALL = 4.0  # with --mb < 100, unless LTXKIT_BENCH_LOAD_S says otherwise
LOAD_ENV = "LTXKIT_BENCH_LOAD_S"

SNAPSHOT_TPS = 50
SNAPSHOT_WARMUP_S = 1.0
SNAPSHOT_TIMEOUT_S = 900.0

GOAL_LAG_SPEEDUP = 2.0  # ltxkit p50 <= 0.5 x Litestream's
GOAL_CPU_SPEEDUP = 0.5  # ltxkit CPU <= 2 x Litestream's
GOAL_P99_SPEEDUP = 1.0  # ltxkit writer p99 <= Litestream's

_LTX = re.compile(r"^([0-9a-f]{16})-([0-9a-f]{16})\.ltx$")
_CLK_TCK = os.sysconf("SC_CLK_TCK")


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ---- replica directory ------------------------------------------------------------------------------


def l0_max_txid(replica: Path) -> int:
    """Highest max TXID of a published L0 file (temp files do not match the name); 0 when none."""
    try:
        names = os.listdir(replica / "ltx" / "0")
    except FileNotFoundError:
        return 0
    best = 0
    for name in names:
        m = _LTX.match(name)
        if m:
            best = max(best, int(m.group(2), 16))
    return best


# ---- replicator processes ------------------------------------------------------------------------


@dataclass
class Daemon:
    tool: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    started: float  # perf_counter() just before the process was started

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            tail = self.log_path.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"{self.tool} replicate exited {self.proc.returncode}:\n{tail}")

    def cpu_s(self) -> float:
        return tree_cpu_s(self.proc.pid)

    def stop(self, timeout: float = 120) -> int:
        """SIGTERM (both tools sync once more, then exit); SIGKILL if that takes too long."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                log(f"  WARNING: {self.tool} did not exit {timeout:.0f} s after SIGTERM; killing it")
                self.proc.kill()
                self.proc.wait(10)
        return int(self.proc.returncode)


def start_replicator(ctx: Context, tool: str, db: Path, replica: Path, logs: Path, label: str) -> Daemon:
    log_path = logs / f"{label}.{tool}.log"
    if tool == "ltxkit":
        args = [ctx.ltxkit, "replicate", str(db), str(replica), "--interval", INTERVAL, "--log-format", "json"]
    else:
        # Litestream's defaults, only the (default) sync interval spelled out
        cfg = {"dbs": [{"path": str(db), "replica": {"type": "file", "path": str(replica), "sync-interval": INTERVAL}}]}
        args = [ctx.litestream, "replicate", "-config", str(write_config(logs / f"{label}.litestream.yml", cfg))]
    with open(log_path, "wb") as fh:
        started = time.perf_counter()
        proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=fh, stderr=subprocess.STDOUT)
    return Daemon(tool, proc, log_path, started)


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text.rsplit(")", 1)[1].split()  # [0] is field 3 (state): field n is at index n - 3


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            f = _stat_fields(int(entry))
            if f is not None:
                children.setdefault(int(f[1]), []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def tree_cpu_s(pid: int) -> float:
    """utime + stime of the process, its live descendants and its reaped children, in seconds."""
    ticks = 0
    for p in (pid, *_descendants(pid)):
        f = _stat_fields(p)
        if f is None:
            continue
        ticks += int(f[11]) + int(f[12])  # utime, stime (fields 14, 15)
        if p == pid:
            ticks += int(f[13]) + int(f[14])  # cutime, cstime (fields 16, 17)
    return ticks / _CLK_TCK


# ---- the application ---------------------------------------------------------------------------------


@dataclass
class Latencies:
    commit: list[float] = field(default_factory=list)  # the COMMIT call
    total: list[float] = field(default_factory=list)  # BEGIN IMMEDIATE .. COMMIT
    errors: int = 0

    def summary(self) -> dict[str, Any]:
        return {
            "transactions": len(self.total),
            "errors": self.errors,
            "commit_ms": _stats_ms(self.commit),
            "total_ms": _stats_ms(self.total),
        }


def _pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile."""
    s = sorted(values)
    return s[max(0, min(len(s) - 1, math.ceil(q * len(s)) - 1))]


def _stats_ms(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    return {k: round(_pct(values, q) * 1000, 3) for k, q in (("p50", 0.5), ("p99", 0.99), ("max", 1.0))}


class Writer:
    """One connection of the application's own; each transaction inserts one ~200-byte row."""

    def __init__(self, db: Path, seed: int = SEED) -> None:
        self.conn = sqlite3.connect(db, isolation_level=None, timeout=5)
        self.conn.execute("PRAGMA busy_timeout=5000")
        self.conn.execute("PRAGMA synchronous=NORMAL")
        self.rng = random.Random(seed)

    def commit_one(self, lat: Latencies | None = None) -> float:
        """One transaction; returns perf_counter() when COMMIT returned."""
        payload = self.rng.randbytes(ROW_BYTES)
        t0 = time.perf_counter()
        try:
            self.conn.execute("BEGIN IMMEDIATE")
            self.conn.execute(f"INSERT INTO {WRITES_TABLE}(at, payload) VALUES (?, ?)", (time.time(), payload))
            t1 = time.perf_counter()
            self.conn.execute("COMMIT")
        except sqlite3.OperationalError as exc:
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            if lat is not None:
                lat.errors += 1
                lat.total.append(time.perf_counter() - t0)
            log(f"  writer: {exc}")
            return time.perf_counter()
        t2 = time.perf_counter()
        if lat is not None:
            lat.commit.append(t2 - t1)
            lat.total.append(t2 - t0)
        return t2

    def paced(
        self, rate: float, *, seconds: float | None = None, stop: Callable[[], bool] | None = None
    ) -> tuple[Latencies, float]:
        """Transactions at `rate` per second (missed slots are dropped, not bunched) until `seconds`
        passed or `stop()` (looked at every 5 ms) is true. Returns the latencies and when it stopped."""
        period = 1.0 / rate
        lat = Latencies()
        start = nxt = time.perf_counter()
        end = start + seconds if seconds is not None else math.inf
        while True:
            now = time.perf_counter()
            if now >= end or (stop is not None and stop()):
                return lat, now
            if now >= nxt:
                self.commit_one(lat)
                nxt += period
                now = time.perf_counter()
                if now - nxt > period:
                    nxt = now
            wait = nxt - time.perf_counter()
            if stop is not None:
                wait = min(wait, POLL_S)
            if wait > 0:
                time.sleep(wait)

    def close(self) -> None:
        self.conn.close()


def _add_writes_table(db: Path) -> None:
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        conn.execute(f"CREATE TABLE IF NOT EXISTS {WRITES_TABLE}(id INTEGER PRIMARY KEY, at REAL, payload BLOB)")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
    finally:
        conn.close()
    if mode != "wal":
        raise RuntimeError(f"{db}: journal_mode {mode}, expected wal")


def _fresh_copy(src: Path, dst: Path) -> None:
    """A copy of `src` (checkpointed first, so the file alone is the database), in WAL mode."""
    shutil.rmtree(dst.parent, ignore_errors=True)
    dst.parent.mkdir(parents=True)
    conn = sqlite3.connect(src)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
    shutil.copyfile(src, dst)
    _add_writes_table(dst)
    os.sync()  # the copy's dirty pages are not written back while we measure


# ---- checks -----------------------------------------------------------------------------------------


def _counts(db: Path) -> dict[str, int]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return {t: int(conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]) for t in ("items", WRITES_TABLE)}
    finally:
        conn.close()


def restore_check(ctx: Context, source: Path, replica: Path, out: Path) -> dict[str, Any]:
    """`litestream restore` of the final replica; the row counts against the source's."""
    for suffix in ("", "-wal", "-shm"):
        Path(f"{out}{suffix}").unlink(missing_ok=True)
    res = subprocess.run(
        [ctx.litestream, "restore", "-o", str(out), f"file://{replica.resolve()}"],
        capture_output=True,
        text=True,
        timeout=900,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    want = _counts(source)
    if res.returncode != 0:
        log(f"  WARNING: litestream restore of {replica} failed ({res.returncode}): {res.stderr.strip()[-500:]}")
        return {"ok": False, "source": want, "error": res.stderr.strip()[-500:]}
    got = _counts(out)
    ok = got == want
    if not ok:
        log(f"  WARNING: restored {replica}: counts {got}, source {want}")
    for suffix in ("", "-wal", "-shm"):
        Path(f"{out}{suffix}").unlink(missing_ok=True)
    return {"ok": ok, "source": want, "restored": got}


def _settle(daemon: Daemon, replica: Path, timeout: float = 120) -> int:
    """Wait for the first L0 file, then until the replica's L0 max TXID has not moved for a while."""
    deadline = time.perf_counter() + timeout
    last, since = -1, time.perf_counter()
    while True:
        daemon.check_alive()
        now = time.perf_counter()
        cur = l0_max_txid(replica)
        if cur != last:
            last, since = cur, now
        elif cur > 0 and now - since >= SETTLE_QUIET_S:
            return cur
        if now > deadline:
            raise TimeoutError(f"{daemon.tool}: replica did not settle (L0 at {cur})")
        time.sleep(0.05)


def _ltxkit_events(path: Path, kind: str) -> list[dict[str, Any]]:
    out = []
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            try:
                e = json.loads(line)
            except ValueError:
                continue
            if e.get("event") == kind:
                out.append(e)
    return out


# ---- phases 1 and 2: a small database --------------------------------------------------------------


def _idle_lag(writer: Writer, daemon: Daemon, replica: Path, gaps: list[float]) -> dict[str, Any]:
    lags: list[float] = []
    txids: list[int] = []
    stretched = 0
    next_at = time.perf_counter()
    for gap in gaps:
        time.sleep(max(0.0, next_at - time.perf_counter()))
        before = l0_max_txid(replica)
        committed = writer.commit_one()
        deadline = committed + LAG_TIMEOUT_S
        while True:
            cur = l0_max_txid(replica)
            now = time.perf_counter()
            if cur > before:
                lags.append(now - committed)
                txids.append(cur)
                break
            if now > deadline:
                raise TimeoutError(f"{daemon.tool}: commit not in the replica after {LAG_TIMEOUT_S:.0f} s")
            daemon.check_alive()
            time.sleep(POLL_S)
        next_at = committed + gap
        if time.perf_counter() > next_at:
            stretched += 1
    return {"lags_s": lags, "txids": txids, "gaps_stretched": stretched}


def _under_load(writer: Writer, daemon: Daemon | None, replica: Path | None, seconds: float) -> dict[str, Any]:
    cpu0 = daemon.cpu_s() if daemon else 0.0
    lat, ended = writer.paced(LOAD_TPS, seconds=seconds)
    cpu1 = daemon.cpu_s() if daemon else 0.0
    out: dict[str, Any] = {"seconds": seconds, "latency": lat.summary(), "lat": lat, "cpu_s": cpu1 - cpu0}
    if daemon is not None and replica is not None:
        # how long after the last commit the replica stopped moving (it then holds it), and the CPU
        # including that catch-up
        last, changed = l0_max_txid(replica), ended
        while time.perf_counter() - max(changed, ended) < 2.5:
            daemon.check_alive()
            cur = l0_max_txid(replica)
            if cur != last:
                last, changed = cur, time.perf_counter()
            time.sleep(0.02)
        out["catch_up_s"] = max(0.0, changed - ended)
        out["cpu_with_catch_up_s"] = daemon.cpu_s() - cpu0
    return out


def _small_run(ctx: Context, tool: str, template: Path, root: Path, load_s: float) -> dict[str, Any]:
    d = root / tool
    db, replica = d / "db" / "small.db", d / "replica"
    _fresh_copy(template, db)
    shutil.rmtree(replica, ignore_errors=True)
    daemon = start_replicator(ctx, tool, db, replica, root / "logs", "small")
    result: dict[str, Any] = {}
    try:
        result["settled_txid"] = _settle(daemon, replica)
        writer = Writer(db)
        try:
            rng = random.Random(SEED)
            gaps = [rng.uniform(*IDLE_GAP_S) for _ in range(IDLE_COMMITS)]
            log(f"  {tool}: idle lag, {IDLE_COMMITS} commits")
            result["idle"] = _idle_lag(writer, daemon, replica, gaps)
            time.sleep(1.0)
            log(f"  {tool}: under load, {LOAD_TPS} tx/s for {load_s:g} s")
            result["load"] = _under_load(writer, daemon, replica, load_s)
        finally:
            writer.close()
    finally:
        result["exit_code"] = daemon.stop()
    if tool == "ltxkit":
        published = _ltxkit_events(daemon.log_path, "published")
        result["ltxkit_published"] = len(published)
        result["ltxkit_reported_lag_ms"] = [e.get("lag_ms") for e in published]
    result["restore"] = restore_check(ctx, db, replica, d / "restored.db")
    return result


def _floor_run(template: Path, root: Path, load_s: float) -> dict[str, Any]:
    db = root / "floor" / "db" / "small.db"
    _fresh_copy(template, db)
    writer = Writer(db)
    try:
        log(f"  no replicator: {LOAD_TPS} tx/s for {load_s:g} s")
        return _under_load(writer, None, None, load_s)
    finally:
        writer.close()


# ---- phase 3: the initial snapshot of the large database -------------------------------------------


def _snapshot_run(ctx: Context, tool: str, source: Path, root: Path, logs: Path) -> dict[str, Any]:
    d = root / tool
    db, replica = d / "db" / "big.db", d / "replica"
    _fresh_copy(source, db)
    shutil.rmtree(replica, ignore_errors=True)
    writer = Writer(db, seed=SEED + 1)
    result: dict[str, Any] = {"db_bytes": db.stat().st_size}
    try:
        before, _ = writer.paced(SNAPSHOT_TPS, seconds=SNAPSHOT_WARMUP_S)
        result["before"] = before.summary()
        daemon = start_replicator(ctx, tool, db, replica, logs, "snapshot")
        try:
            deadline = daemon.started + SNAPSHOT_TIMEOUT_S

            def first_file() -> bool:
                if l0_max_txid(replica) > 0:
                    return True
                if time.perf_counter() > deadline:
                    raise TimeoutError(f"{tool}: no L0 file after {SNAPSHOT_TIMEOUT_S:.0f} s")
                daemon.check_alive()
                return False

            during, seen = writer.paced(SNAPSHOT_TPS, stop=first_file)
            result["first_l0_s"] = seen - daemon.started
            result["during"] = during.summary()
            result["stall_s"] = max(during.total, default=0.0)
            result["cpu_s"] = daemon.cpu_s()
        finally:
            result["exit_code"] = daemon.stop()
    finally:
        writer.close()
    result["restore"] = restore_check(ctx, db, replica, d / "restored.db")
    if tool == "ltxkit":
        result["verify"] = _verify_own(ctx, replica)
    if result["restore"]["ok"]:
        shutil.rmtree(d, ignore_errors=True)  # 2 x the database's size
    return result


def _by_level(keys: list[str]) -> str:
    """'L0: 3, L9: 1' for keys `ltx/<level>/<name>`."""
    levels = Counter(int(k.split("/")[-2]) for k in keys)
    return ", ".join(f"L{level}: {n}" for level, n in sorted(levels.items()))


def _verify_own(ctx: Context, replica: Path) -> dict[str, Any]:
    """`ltxkit verify` of the replica `ltxkit replicate` wrote, whose ledger proves every restore
    point from the page checksums the file checks keep: structure only, then the default run."""
    from benchmarks.measure import run_child
    from benchmarks.run import _page_bytes

    out: dict[str, Any] = {
        "ledger_records": sum(1 for _ in (replica / "ledger").rglob("*.json")),
        "files": sorted(p.relative_to(replica).as_posix() for p in (replica / "ltx").rglob("*.ltx")),
        "page_bytes": _page_bytes(replica)[0],
    }
    for label, extra in (("structure", ["--structure-only"]), ("default", [])):
        run = run_child([ctx.ltxkit, "verify", str(replica), "--format", "json", *extra])
        report = json.loads(run.stdout) if run.stdout.strip() else {}
        if run.returncode != 0 or not report.get("ok"):
            log(f"  WARNING: ltxkit verify {' '.join(extra)} {replica}: exit {run.returncode}, {run.stderr[-300:]}")
        out[label] = {"s": run.seconds, "ok": bool(report.get("ok")), "rss_kib": run.max_rss_kib}
    return out


# ---- the benchmark -----------------------------------------------------------------------------------


def _ms(seconds: float) -> float:
    """Milliseconds, about three significant digits (the table prints them with %g)."""
    ms = seconds * 1000
    return round(ms) if ms >= 100 else round(ms, 1) if ms >= 10 else round(ms, 2) if ms >= 1 else round(ms, 3)


def _restores(runs: dict[str, dict[str, Any]]) -> str:
    return ", ".join(f"{t} {'ok' if runs[t]['restore']['ok'] else 'MISMATCH'}" for t in TOOLS)


def bench_replicate(ctx: Context) -> None:
    root = ctx.work / "replicate"
    shutil.rmtree(root, ignore_errors=True)
    (root / "logs").mkdir(parents=True)
    load_s = float(os.environ.get(LOAD_ENV) or (LOAD_S if ctx.mb >= 100 else LOAD_S_SMALL))
    log(f"replicate: ltxkit replicate vs litestream replicate, {INTERVAL} interval, logs in {root / 'logs'}")

    template = root / "template" / "small.db"
    build_database(template, SMALL_DB_MB)
    _add_writes_table(template)

    info: dict[str, Any] = {}
    ctx.info["replicate"] = info
    floor = _floor_run(template, root, load_s)
    small: dict[str, dict[str, Any]] = {}
    for tool in TOOLS:
        small[tool] = _small_run(ctx, tool, template, root, load_s)
    info.update(
        {
            "load_s": load_s,
            "floor": {k: v for k, v in floor.items() if k != "lat"},
            "small": {t: {**r, "load": {k: v for k, v in r["load"].items() if k != "lat"}} for t, r in small.items()},
        }
    )

    lags = {t: small[t]["idle"]["lags_s"] for t in TOOLS}
    stretched = {t: small[t]["idle"]["gaps_stretched"] for t in TOOLS}
    ctx.add(
        Row(
            "replicate",
            f"replicate idle lag p50: commit → new L0 file ({IDLE_COMMITS} commits, {INTERVAL} interval)",
            "ms",
            _ms(_pct(lags["ltxkit"], 0.5)),
            _ms(_pct(lags["litestream"], 0.5)),
            higher_is_better=False,
            goal=GOAL_LAG_SPEEDUP,
            goal_on="speedup",
            note=f"{SMALL_DB_MB} MB database, replica polled every {POLL_S * 1000:g} ms; restores of the "
            f"final replicas: {_restores(small)}",
            extra={"lags_ms": {t: [_ms(x) for x in lags[t]] for t in TOOLS}, "gaps_stretched": stretched},
        )
    )
    ctx.add(
        Row(
            "replicate",
            "  idle lag max",
            "ms",
            _ms(max(lags["ltxkit"])),
            _ms(max(lags["litestream"])),
            higher_is_better=False,
        )
    )

    loads = {t: small[t]["load"] for t in TOOLS}
    lat: dict[str, Latencies] = {t: loads[t]["lat"] for t in TOOLS}
    done = {t: len(lat[t].total) for t in TOOLS}
    ctx.add(
        Row(
            "replicate",
            f"under load ({LOAD_TPS} tx/s × {load_s:g} s): replicator CPU",
            "s",
            round(loads["ltxkit"]["cpu_s"], 3),
            round(loads["litestream"]["cpu_s"], 3),
            higher_is_better=False,
            goal=GOAL_CPU_SPEEDUP,
            goal_on="speedup",
            note=f"goal: ltxkit ≤ 2× Litestream's CPU; transactions done: ltxkit run {done['ltxkit']}, "
            f"litestream run {done['litestream']}; CPU incl. catch-up after the window: "
            f"{loads['ltxkit']['cpu_with_catch_up_s']:.2f} s vs {loads['litestream']['cpu_with_catch_up_s']:.2f} s",
            extra={t: {k: v for k, v in loads[t].items() if k != "lat"} for t in TOOLS},
        )
    )
    for label, attr in (("COMMIT call", "commit"), ("BEGIN IMMEDIATE..COMMIT", "total")):
        ctx.add(
            Row(
                "replicate",
                f"  writer p99, {label}",
                "ms",
                _ms(_pct(getattr(lat["ltxkit"], attr), 0.99)),
                _ms(_pct(getattr(lat["litestream"], attr), 0.99)),
                higher_is_better=False,
                goal=GOAL_P99_SPEEDUP,
                goal_on="speedup",
                note=f"p50 {label}: ltxkit {_ms(_pct(getattr(lat['ltxkit'], attr), 0.5))} ms, "
                f"litestream {_ms(_pct(getattr(lat['litestream'], attr), 0.5))} ms, no replicator "
                f"{_ms(_pct(getattr(floor['lat'], attr), 0.5))} ms"
                if attr == "commit"
                else "",
            )
        )
    ctx.add(
        Row(
            "replicate",
            "  writer max, BEGIN IMMEDIATE..COMMIT",
            "ms",
            _ms(max(lat["ltxkit"].total)),
            _ms(max(lat["litestream"].total)),
            higher_is_better=False,
            note=f"errors (busy after 5 s): ltxkit run {lat['ltxkit'].errors}, "
            f"litestream run {lat['litestream'].errors}",
        )
    )
    fl: Latencies = floor["lat"]
    ctx.add(
        Row(
            "replicate",
            "  floor: writer p99 / max BEGIN..COMMIT, no replicator",
            "ms",
            _ms(_pct(fl.total, 0.99)),
            note=f"same load, no replicator running: p99 {_ms(_pct(fl.total, 0.99))} ms, max {_ms(max(fl.total))} ms "
            "(this machine's noise floor)",
            extra=floor["latency"],
        )
    )

    source = ctx.replica.db
    size = source.stat().st_size
    log(f"  initial snapshot of the {size / 1e6:.0f} MB database with a writer at {SNAPSHOT_TPS} tx/s")
    snap: dict[str, dict[str, Any]] = {}
    for tool in TOOLS:
        snap[tool] = _snapshot_run(ctx, tool, source, root / "snapshot", root / "logs")
        log(f"    {tool}: first L0 file after {snap[tool]['first_l0_s']:.2f} s")
    info["snapshot"] = snap
    ctx.add(
        Row(
            "replicate",
            f"initial snapshot, {size / 1e6:.0f} MB db, writer at {SNAPSHOT_TPS} tx/s: start → first L0 file",
            "s",
            snap["ltxkit"]["first_l0_s"],
            snap["litestream"]["first_l0_s"],
            higher_is_better=False,
            note=f"process start included; replicator CPU until then: ltxkit {snap['ltxkit']['cpu_s']:.2f} s, "
            f"litestream {snap['litestream']['cpu_s']:.2f} s; restores: {_restores(snap)}",
        )
    )
    ctx.add(
        Row(
            "replicate",
            "  writer's longest stall (max BEGIN..COMMIT) meanwhile",
            "ms",
            _ms(snap["ltxkit"]["stall_s"]),
            _ms(snap["litestream"]["stall_s"]),
            higher_is_better=False,
            note=f"writer max before the replicator started: ltxkit run "
            f"{snap['ltxkit']['before']['total_ms'].get('max')} ms, litestream run "
            f"{snap['litestream']['before']['total_ms'].get('max')} ms",
        )
    )
    own = snap["ltxkit"]["verify"]
    ctx.add(
        Row(
            "replicate",
            "  ltxkit verify --structure-only of ltxkit's replica of it, ledger proved (CLI, 1 run)",
            "MB/s",
            own["page_bytes"] / 1e6 / own["structure"]["s"],
            note=f"{own['page_bytes'] / 1e6:.0f} MB of pages in {len(own['files'])} files ({_by_level(own['files'])}), "
            f"{own['ledger_records']} ledger records; {own['structure']['s']:.2f} s, ok: "
            f"{own['structure']['ok']}; the default verify (content check included): "
            f"{own['default']['s']:.2f} s, ok: {own['default']['ok']}",
            extra=own,
        )
    )
    for d in (*TOOLS, "floor", "template"):
        shutil.rmtree(root / d / "db", ignore_errors=True)
    shutil.rmtree(root / "template", ignore_errors=True)
