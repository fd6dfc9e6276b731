"""Replicas on S3 (a real SeaweedFS on 127.0.0.1): `ltxkit restore` next to `litestream restore`,
in the same run, from the same objects; `ltxkit verify` of one replica and of a fleet.

1. The replica: a ~100 MB snapshot at TXID 1 (`ltxkit snapshot --no-checksums` of a WAL-mode
   database) and ~2,000 single-TXID L0 increments on top, each rewriting 3 pages (page 1 with a
   new change counter, two b-tree pages with a byte changed in their unused area). Built once
   under WORK/s3/replica and reused while WORK/s3/meta.json matches; uploaded to a fresh SeaweedFS
   on every run (16 threads). Sizes: LTXKIT_BENCH_S3_MB (default 100), LTXKIT_BENCH_S3_FILES
   (increments, default 2000).
2. Restore: best of 3 each, interleaved; the two outputs must be byte-identical.
3. `ltxkit verify --structure-only` and `--quick` of the same replica (1 run each).
4. A fleet: 50 small replicas (20-page snapshot + 5 increments) under one prefix,
   `ltxkit verify --recursive --structure-only` of the prefix (1 run).
"""

from __future__ import annotations

import filecmp
import json
import os
import random
import shutil
import sqlite3
import statistics
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchmarks.dataset import build_database
from benchmarks.measure import ChildRun, run_child
from benchmarks.report import Row
from harness.seaweed import SeaweedFS
from ltxkit.format import FLAG_NO_CHECKSUM, Header, LTXWriter
from ltxkit.format.schema import format_filename, lock_pgno
from ltxkit.replica.storage import open_storage

if TYPE_CHECKING:
    from benchmarks.run import Context

MB_ENV = "LTXKIT_BENCH_S3_MB"
FILES_ENV = "LTXKIT_BENCH_S3_FILES"
DEFAULT_MB = 100
DEFAULT_FILES = 2000
PAGE_SIZE = 4096
PAGES_PER_INCREMENT = 3
FLEET = 50
FLEET_PAGES = 20
FLEET_INCREMENTS = 5
UPLOAD_THREADS = 16
META_VERSION = 1

GOAL_RESTORE_SPEEDUP = 4.0
GOAL_RESTORE_RSS_MB = 200.0


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _check(run: ChildRun, what: str) -> ChildRun:
    if run.returncode != 0:
        raise RuntimeError(f"{what} exited {run.returncode}:\n{run.stdout[-2000:]}\n{run.stderr[-2000:]}")
    return run


def _clean(path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    os.sync()


# ---- building the replicas ---------------------------------------------------------------------------


def _unused_area(page: bytes, pgno: int) -> tuple[int, int] | None:
    """[start, end) of a b-tree page's gap between its cell pointer array and its cell content."""
    base = 100 if pgno == 1 else 0
    kind = page[base]
    if kind not in (0x02, 0x05, 0x0A, 0x0D):
        return None
    hdr = 8 if kind in (0x0A, 0x0D) else 12
    ncells = int.from_bytes(page[base + 3 : base + 5], "big")
    content = int.from_bytes(page[base + 5 : base + 7], "big") or 65536
    start = base + hdr + 2 * ncells
    return (start, content) if content - start >= 8 else None


def _write_ltx(path: Path, pages: dict[int, bytes], commit: int, txid: int, timestamp: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    header = Header(
        flags=FLAG_NO_CHECKSUM,
        page_size=len(next(iter(pages.values()))),
        commit=commit,
        min_txid=txid,
        max_txid=txid,
        timestamp=timestamp,
    )
    with path.open("wb") as fh:
        w = LTXWriter(fh, header)
        for pgno in sorted(pages):
            w.write_page(pgno, pages[pgno])
        w.close()


def _build_replica(root: Path, mb: int, files: int, ltxkit: str) -> None:
    shutil.rmtree(root, ignore_errors=True)
    l0 = root / "replica" / "ltx" / "0"
    l0.mkdir(parents=True)
    db = root / "build" / "app.db"
    t = time.perf_counter()
    build_database(db, mb)
    log(f"  built a {db.stat().st_size / 1e6:.0f} MB database in {time.perf_counter() - t:.1f} s")
    conn = sqlite3.connect(db)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
    _check(
        run_child([ltxkit, "snapshot", str(db), "-o", str(l0 / format_filename(1, 1)), "--no-checksums"]),
        "ltxkit snapshot",
    )
    data = db.read_bytes()
    page_size = int.from_bytes(data[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    commit = len(data) // page_size
    lock = lock_pgno(page_size)
    current: dict[int, bytes] = {}

    def page(pgno: int) -> bytes:
        return current.get(pgno) or data[(pgno - 1) * page_size : pgno * page_size]

    rng = random.Random(20251201)
    candidates = [p for p in range(2, commit + 1) if p != lock and _unused_area(page(p), p)]
    ts = int(time.time() * 1000) - files - 10
    for txid in range(2, files + 2):
        changed: dict[int, bytes] = {}
        p1 = bytearray(page(1))
        p1[24:28] = txid.to_bytes(4, "big")  # file change counter
        p1[92:96] = txid.to_bytes(4, "big")  # version-valid-for
        changed[1] = bytes(p1)
        for pgno in rng.sample(candidates, PAGES_PER_INCREMENT - 1):
            buf = bytearray(page(pgno))
            start, end = _unused_area(bytes(buf), pgno)  # type: ignore[misc]
            off = rng.randrange(start, end - 4)
            buf[off : off + 4] = txid.to_bytes(4, "big")
            changed[pgno] = bytes(buf)
        current.update(changed)
        _write_ltx(l0 / format_filename(txid, txid), changed, commit, txid, ts + txid)
    shutil.rmtree(root / "build", ignore_errors=True)


def _build_fleet(root: Path) -> None:
    from tests.replica_builder import Db, write_ltx

    shutil.rmtree(root, ignore_errors=True)
    rng = random.Random(7)
    for i in range(FLEET):
        app = root / f"app{i:02d}"
        db = Db(page_size=PAGE_SIZE, sound=True)
        db.write(list(range(1, FLEET_PAGES + 1)))
        write_ltx(app, 0, 1, 1, dict(db.pages), db.commit, page_size=PAGE_SIZE)
        for txid in range(2, FLEET_INCREMENTS + 2):
            changed = db.write([1, rng.randrange(2, FLEET_PAGES + 1)])
            write_ltx(app, 0, txid, txid, changed, db.commit, page_size=PAGE_SIZE)


def _ensure(work: Path, mb: int, files: int, ltxkit: str) -> tuple[Path, Path, float | None]:
    root = work / "s3"
    meta_path = root / "meta.json"
    meta = {"version": META_VERSION, "mb": mb, "files": files, "page_size": PAGE_SIZE, "fleet": FLEET}
    if meta_path.exists() and json.loads(meta_path.read_text()) == meta and (root / "replica" / "ltx").is_dir():
        return root / "replica", root / "fleet", None
    meta_path.unlink(missing_ok=True)
    log(f"s3: building the replica ({mb} MB snapshot + {files} increments) and the fleet, once")
    t = time.perf_counter()
    _build_replica(root, mb, files, ltxkit)
    _build_fleet(root / "fleet")
    meta_path.write_text(json.dumps(meta, indent=2) + "\n")
    return root / "replica", root / "fleet", time.perf_counter() - t


# ---- upload -------------------------------------------------------------------------------------------


def _objects(replica: Path) -> list[tuple[str, Path]]:
    out = []
    for path in sorted((replica / "ltx").glob("*/*.ltx")):
        out.append((f"{int(path.parent.name):04x}/{path.name}", path))
    return out


def _upload(url: str, replica: Path, pool: ThreadPoolExecutor) -> tuple[int, int]:
    storage = open_storage(url, create=True)
    objects = _objects(replica)

    def put(item: tuple[str, Path]) -> int:
        data = item[1].read_bytes()
        storage.put_bytes(item[0], data)
        return len(data)

    return len(objects), sum(pool.map(put, objects))


# ---- the benchmark ------------------------------------------------------------------------------------


def _verify(ctx: Context, url: str, env: dict[str, str], *extra: str) -> tuple[ChildRun, dict[str, Any]]:
    run = run_child([ctx.ltxkit, "verify", url, "--format", "json", *extra], env=env)
    if run.returncode not in (0, 1):
        _check(run, f"ltxkit verify {' '.join(extra)}")
    report = json.loads(run.stdout)
    if not report.get("ok"):
        log(f"  WARNING: ltxkit verify {' '.join(extra)} reports defects: {str(report.get('findings'))[:1000]}")
    return run, report


_FETCH_ONLY = """
import sys
from concurrent.futures import ThreadPoolExecutor
from ltxkit.replica.storage import open_storage
storage = open_storage(sys.argv[1])
entries = storage.list("")
with ThreadPoolExecutor(16) as pool:
    print(sum(len(b) for b in pool.map(lambda e: storage.read_bytes(e.key, listed_size=e.size), entries)))
"""


def _cpu_seconds(pid: int) -> float:
    """User + system CPU a running process has used so far (from /proc; 0 where there is none)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _serving(seaweed: SeaweedFS, cpu: list[float], args: list[str], env: dict[str, str]) -> ChildRun:
    """Run `args` and add to `cpu` what SeaweedFS spent meanwhile (its idle cost is a few ms/s)."""
    assert seaweed.proc is not None
    before = _cpu_seconds(seaweed.proc.pid)
    run = run_child(args, env=env)
    cpu.append(_cpu_seconds(seaweed.proc.pid) - before)
    return run


def _median_row(label: str, ours: list[float], theirs: list[float]) -> Row:
    """A row of seconds: the median of each tool's runs, every run kept in the results file."""
    return Row(
        "s3",
        label,
        "s",
        statistics.median(ours),
        statistics.median(theirs),
        higher_is_better=False,
        extra={"ltxkit": ours, "litestream": theirs},
    )


def _timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t = time.perf_counter()
    result = fn()
    return time.perf_counter() - t, result


def bench_s3(ctx: Context) -> None:
    mb = int(os.environ.get(MB_ENV) or DEFAULT_MB)
    files = int(os.environ.get(FILES_ENV) or DEFAULT_FILES)
    replica, fleet, built_s = _ensure(ctx.work, mb, files, ctx.ltxkit)
    root = ctx.work / "s3"
    shutil.rmtree(root / "seaweed", ignore_errors=True)
    out = root / "out"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    seaweed = SeaweedFS(root / "seaweed").start()
    saved = dict(os.environ)
    try:
        env = seaweed.env
        os.environ.clear()
        os.environ.update(env)  # credentials for the in-process uploads
        url = seaweed.url("bench/app")
        with ThreadPoolExecutor(UPLOAD_THREADS) as pool:
            up_s, (n_obj, n_bytes) = _timed(lambda: _upload(url, replica, pool))
            log(f"s3: uploaded {n_obj} objects, {n_bytes / 1e6:.0f} MB in {up_s:.1f} s to {url}")
            fleet_url = seaweed.url("fleet")
            fleet_up_s, fleet_counts = _timed(
                lambda: [_upload(seaweed.url(f"fleet/{d.name}"), d, pool) for d in sorted(fleet.iterdir())]
            )
        os.environ.clear()
        os.environ.update(saved)
        ctx.info["s3"] = {
            "mb": mb,
            "increments": files,
            "objects": n_obj,
            "object_bytes": n_bytes,
            "upload_s": up_s,
            "fleet_upload_s": fleet_up_s,
            "fleet_objects": sum(c[0] for c in fleet_counts),
            "build_s": built_s,
        }

        floor = _check(run_child([sys.executable, "-c", _FETCH_ONLY, url], env=env), "fetch-only floor")
        ctx.add(
            Row(
                "s3",
                "  the object store's floor: list + GET every object, no decoding (16 threads)",
                "s",
                floor.seconds,
                higher_is_better=False,
                note="the same SeaweedFS on the same 2 cores: the time no restore of these objects can beat",
            )
        )
        ours_db, theirs_db = out / "ltxkit.db", out / "litestream.db"
        ours_args = [ctx.ltxkit, "restore", url, "-o", str(ours_db), "-q"]
        theirs_args = [ctx.litestream, "restore", "-o", str(theirs_db), url]
        log("s3 restore: ltxkit restore vs litestream restore, best of 3 each, interleaved")
        ours: list[ChildRun] = []
        theirs: list[ChildRun] = []
        server_cpu: dict[str, list[float]] = {"ltxkit": [], "litestream": []}
        for _ in range(3):
            _clean(ours_db)
            ours.append(_check(_serving(seaweed, server_cpu["ltxkit"], ours_args, env), "ltxkit restore (s3)"))
            _clean(theirs_db)
            theirs.append(
                _check(_serving(seaweed, server_cpu["litestream"], theirs_args, env), "litestream restore (s3)")
            )
        same = filecmp.cmp(ours_db, theirs_db, shallow=False)
        size = ours_db.stat().st_size
        ctx.add(
            Row(
                "s3",
                f"restore from S3, {n_obj:,} objects (CLI wall time, best of 3)",
                "s",
                min(r.seconds for r in ours),
                min(r.seconds for r in theirs),
                higher_is_better=False,
                goal=GOAL_RESTORE_SPEEDUP,
                goal_on="speedup",
                note=f"{size / 1e6:.0f} MB database, {n_bytes / 1e6:.0f} MB of objects on SeaweedFS (localhost); "
                f"outputs byte-identical: {'yes' if same else 'NO'}",
                extra={
                    "db_bytes": size,
                    "identical": same,
                    "ltxkit_s": [r.seconds for r in ours],
                    "litestream_s": [r.seconds for r in theirs],
                },
            )
        )
        ctx.add(
            _median_row(
                "  restore from S3, median of the 3 runs (how far one run's noise moves the best)",
                [r.seconds for r in ours],
                [r.seconds for r in theirs],
            )
        )
        # Both the client and SeaweedFS run on this machine's cores: their CPU seconds, added and
        # spread over every core, are a time no restore that makes these requests can beat.
        cores = os.cpu_count() or 1
        best = min(range(3), key=lambda i: ours[i].seconds)
        ctx.add(
            _median_row(
                "  CPU per restore: the restoring process, user + system (median of 3)",
                [r.cpu_seconds for r in ours],
                [r.cpu_seconds for r in theirs],
            )
        )
        ctx.add(
            _median_row(
                "  CPU per restore: SeaweedFS serving it (median of 3)", server_cpu["ltxkit"], server_cpu["litestream"]
            )
        )
        bound = (ours[best].cpu_seconds + server_cpu["ltxkit"][best]) / cores
        ctx.add(
            Row(
                "s3",
                f"  CPU-bound floor of ltxkit's fastest run: (client + server CPU) / {cores} cores",
                "s",
                bound,
                higher_is_better=False,
                note=f"no schedule of that run's work on {cores} cores finishes sooner; against Litestream's "
                f"best run it allows at most {min(r.seconds for r in theirs) / bound:.1f}× "
                f"(the run itself: {ours[best].seconds:.2f} s)",
            )
        )
        ctx.add(
            Row(
                "s3",
                "  restore from S3 peak RSS (max of 3)",
                "MB",
                max(r.max_rss_kib for r in ours) / 1024,
                max(r.max_rss_kib for r in theirs) / 1024,
                higher_is_better=False,
                goal=GOAL_RESTORE_RSS_MB,
                extra={
                    "ltxkit_rss_kib": [r.max_rss_kib for r in ours],
                    "litestream_rss_kib": [r.max_rss_kib for r in theirs],
                },
            )
        )
        if same:
            for p in (ours_db, theirs_db):
                _clean(p)
        else:
            log(f"  outputs differ: kept {ours_db} and {theirs_db}")

        for label, extra in (("--structure-only", ("--structure-only",)), ("--quick", ("--quick",))):
            run, report = _verify(ctx, url, env, *extra)
            ctx.add(
                Row(
                    "s3",
                    f"verify {label} of the S3 replica (CLI, 1 run)",
                    "s",
                    run.seconds,
                    higher_is_better=False,
                    note=f"ok: {report.get('ok')}",
                    extra={"ok": report.get("ok"), "rss_kib": run.max_rss_kib},
                )
            )

        run, report = _verify(ctx, fleet_url, env, "--recursive", "--structure-only")
        found = len(report.get("replicas", []))
        ctx.add(
            Row(
                "s3",
                f"verify --recursive --structure-only, fleet of {FLEET} small replicas (CLI, 1 run)",
                "s",
                run.seconds,
                higher_is_better=False,
                note=f"replicas found: {found}; ok: {report.get('ok')}",
                extra={"ok": report.get("ok"), "replicas": found, "rss_kib": run.max_rss_kib},
            )
        )
    finally:
        os.environ.clear()
        os.environ.update(saved)
        seaweed.stop()
        shutil.rmtree(out, ignore_errors=True)
