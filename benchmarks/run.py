"""ltxkit throughput and latency, next to the real Litestream binary in the same run.

    python -m benchmarks.run [--mb 300] [--work bench-work] [--quick-files 10000] [--only decode,restore]

Prints one table (ltxkit, Litestream, ltxkit's speedup, the goal, how much of it is reached) and
writes every number to WORK/results.json. A benchmark, not a test: it exits 0 whether or not the
goals are met, and non-zero only when something crashes. MB = 10^6 bytes; throughput counts
decompressed page data (pages × page size).
"""

from __future__ import annotations

import argparse
import contextlib
import filecmp
import io
import json
import os
import platform
import shutil
import sqlite3
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import lz4.block

from benchmarks.dataset import PAGE_SIZE, ensure_replica, ensure_small_replica
from benchmarks.lifecycle import bench_lifecycle
from benchmarks.measure import ChildRun, best_of, mb_per_s, run_child
from benchmarks.replicate import bench_replicate
from benchmarks.report import Row, render
from benchmarks.s3 import bench_s3
from ltxkit.format import FLAG_NO_CHECKSUM, Header, LTXReader, LTXWriter, crc64, read_header, read_page_index
from ltxkit.format.schema import FRAME_PREFIX_SIZE
from ltxkit.replica.layout import list_replica
from ltxkit.replica.storage import open_storage
from ltxkit.sqlite import consistent_view

REPO = Path(__file__).resolve().parent.parent
BENCHMARKS = (
    "decode",
    "encode",
    "snapshot",
    "verify",
    "verify-file",
    "checksum",
    "quick",
    "restore",
    "replicate",
    "s3",
    "lifecycle",
)

GOAL_DECODE_MBS = 1000.0
GOAL_ENCODE_MBS = 300.0
GOAL_QUICK_S = 10.0
GOAL_RESTORE_SPEEDUP = 4.0
GOAL_RESTORE_RSS_MB = 150.0
# issue #16: 1.3x the Go reference tools (superfly/ltx `ltx verify` / `ltx checksum`, measured by
# hand on this machine, one core; the Go tool stays out of the repository), and 1 GB/s of pages
# for a whole replica
GOAL_VERIFY_FILE_MBS = 500.0
GOAL_CHECKSUM_MBS = 1000.0
GOAL_REPLICA_VERIFY_MBS = 1000.0
GO_VERIFY_FILE = "Go `ltx verify`: 0.83–0.88 s for a 297 MB snapshot file, 323 MB of pages (≈ 370–390 MB/s)"
GO_CHECKSUM = "Go `ltx checksum`: 0.42 s for the ~300 MB database (≈ 0.7–0.75 GB/s)"


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _bin(name: str) -> str:
    here = Path(sys.executable).parent / name
    if here.exists():
        return str(here)
    found = shutil.which(name)
    if found is None:
        raise SystemExit(f"{name}: not found next to {sys.executable} nor on PATH")
    return found


@dataclass
class Context:
    work: Path
    mb: int
    quick_files: int
    ltxkit: str
    litestream: str
    rows: list[Row] = field(default_factory=list)
    info: dict[str, object] = field(default_factory=dict)
    _replica: object = None

    def add(self, row: Row) -> None:
        self.rows.append(row)
        theirs = f", litestream {row.litestream:.3f}" if row.litestream is not None else ""
        ours = f"{row.ltxkit:.3f}" if row.ltxkit is not None else "—"
        log(f"  {row.name.strip()}: ltxkit {ours} {row.unit}{theirs}")

    @property
    def replica(self):  # type: ignore[no-untyped-def]
        if self._replica is None:
            self._replica = ensure_replica(self.work, self.mb, self.litestream, log)
            r = self._replica
            self.info["dataset"] = {
                "db": str(r.db),
                "db_bytes": r.db.stat().st_size,
                "replica": str(r.replica),
                "replica_files": _replica_files(r.replica),
                "build_s": r.built_s,
                "litestream_initial_once_s": r.initial_once_s,
            }
        return self._replica


def _replica_files(replica: Path) -> list[dict[str, object]]:
    out = []
    storage = open_storage(str(replica))
    for f in list_replica(storage).files:
        with storage.open(f.key) as fh:
            hdr = read_header(fh)
            entries, _ = read_page_index(fh, f.size)
        out.append({"key": f.key, "bytes": f.size, "pages": len(entries), "commit": hdr.commit})
    return out


def _page_bytes(replica: Path) -> tuple[int, int]:
    """(decompressed page bytes, file bytes) of every LTX file in the replica."""
    pages = size = 0
    for f in _replica_files(replica):
        pages += int(f["pages"]) * PAGE_SIZE  # type: ignore[call-overload]
        size += int(f["bytes"])  # type: ignore[call-overload]
    return pages, size


def _check(run: ChildRun, what: str) -> ChildRun:
    if run.returncode != 0:
        raise RuntimeError(f"{what} exited {run.returncode}:\n{run.stdout[-2000:]}\n{run.stderr[-2000:]}")
    return run


# ---- 2. decode + verify ---------------------------------------------------------------------------


def _snapshot_file(replica: Path) -> Path:
    files = sorted((replica / "ltx" / "0").glob("0000000000000001-*.ltx"), key=lambda p: p.stat().st_size)
    if not files:
        files = sorted((replica / "ltx").rglob("0000000000000001-*.ltx"), key=lambda p: p.stat().st_size)
    return files[-1]


def bench_decode(ctx: Context) -> None:
    path = _snapshot_file(ctx.replica.replica)
    log(f"decode+verify: LTXReader.read_all() on {path.relative_to(ctx.work)} ({path.stat().st_size / 1e6:.0f} MB)")

    def decode():  # type: ignore[no-untyped-def]
        with open(path, "rb") as fh:
            return LTXReader(fh).read_all()

    t, info = best_of(3, decode)
    nbytes = info.page_count * info.header.page_size
    ctx.add(
        Row(
            "decode",
            "decode+verify snapshot (in-process, best of 3)",
            "MB/s",
            mb_per_s(nbytes, t.best),
            goal=GOAL_DECODE_MBS,
            extra={"file": str(path), "file_bytes": path.stat().st_size, "page_bytes": nbytes, "seconds": t.seconds},
        )
    )

    # The floor of this design: only the per-page library calls (LZ4 block decompress + CRC-64 of the
    # frame prefix and page), no parsing, no checks, file already in memory.
    data = path.read_bytes()
    entries = [(e.offset, e.size) for e in read_page_index(io.BytesIO(data), len(data))[0]]
    ps = info.header.page_size
    decompress = lz4.block.decompress

    def floor() -> None:
        crc = 0
        for off, size in entries:
            page = decompress(data[off + FRAME_PREFIX_SIZE : off + size], uncompressed_size=ps)
            crc = crc64(page, crc64(data[off : off + FRAME_PREFIX_SIZE], crc))

    tf, _ = best_of(2, floor)
    ctx.add(
        Row(
            "decode",
            "  floor: lz4 decompress + crc64 calls only",
            "MB/s",
            mb_per_s(nbytes, tf.best),
            note="same pages, file preloaded, bare library calls in a Python loop: the best a per-page "
            "Python loop can do",
            extra={"seconds": tf.seconds},
        )
    )


# ---- 3. encode ----------------------------------------------------------------------------------------


def _devnull() -> io.BufferedWriter:
    return io.BufferedWriter(open(os.devnull, "wb"))


def _header(page_size: int, commit: int, flags: int) -> Header:
    return Header(
        flags=flags, page_size=page_size, commit=commit, min_txid=1, max_txid=1, timestamp=int(time.time() * 1000)
    )


def _encode(pages, header: Header) -> int:  # type: ignore[no-untyped-def]
    with _devnull() as sink:
        w = LTXWriter(sink, header)
        for pgno, page in pages:
            w.write_page(pgno, page)
        w.close()
        return w.bytes_written


def bench_encode(ctx: Context) -> None:
    db = ctx.replica.db
    log(f"encode: consistent_view({db.name}).pages() -> LTXWriter -> {os.devnull}")

    def from_db() -> int:
        with consistent_view(db) as view:
            return _encode(view.pages(), _header(view.page_size, view.commit, FLAG_NO_CHECKSUM))

    t, out_bytes = best_of(2, from_db)
    with consistent_view(db) as view:
        page_size, commit = view.page_size, view.commit
        tr, pages = best_of(1, lambda: list(view.pages()))
    nbytes = len(pages) * page_size
    ctx.add(
        Row(
            "encode",
            "encode live db: consistent_view → LTXWriter (best of 2)",
            "MB/s",
            mb_per_s(nbytes, t.best),
            goal=GOAL_ENCODE_MBS,
            extra={"page_bytes": nbytes, "ltx_bytes": out_bytes, "seconds": t.seconds},
        )
    )
    ctx.add(
        Row(
            "encode",
            "  of which: consistent_view page reads alone",
            "MB/s",
            mb_per_s(nbytes, tr.best),
            extra={"seconds": tr.seconds},
        )
    )
    tp, _ = best_of(3, lambda: _encode(pages, _header(page_size, commit, FLAG_NO_CHECKSUM)))
    ctx.add(
        Row(
            "encode",
            "encode preloaded pages, no-checksum flag (best of 3)",
            "MB/s",
            mb_per_s(nbytes, tp.best),
            goal=GOAL_ENCODE_MBS,
            extra={"seconds": tp.seconds},
        )
    )
    tt, _ = best_of(2, lambda: _encode(pages, _header(page_size, commit, 0)))
    ctx.add(
        Row(
            "encode",
            "encode preloaded pages, checksum tracking (best of 2)",
            "MB/s",
            mb_per_s(nbytes, tt.best),
            note="what `ltxkit snapshot` and repair write: adds a page checksum per page",
            extra={"seconds": tt.seconds},
        )
    )
    pages.clear()
    tf, _ = best_of(2, lambda: _compress_floor(db, page_size))
    ctx.add(
        Row(
            "encode",
            "  floor: lz4 compress + crc64 calls only",
            "MB/s",
            mb_per_s(nbytes, tf.best),
            note="bare library calls over the same pages held in one buffer",
            extra={"seconds": tf.seconds},
        )
    )


def _compress_floor(db: Path, page_size: int) -> None:
    data = db.read_bytes()
    compress = lz4.block.compress
    crc = 0
    mv = memoryview(data)
    for off in range(0, len(data) - page_size + 1, page_size):
        page = mv[off : off + page_size]
        compress(page, store_size=False)
        crc = crc64(page, crc)


# ---- snapshot CLI: ltxkit snapshot vs litestream replicate -once --------------------------------------


def bench_snapshot(ctx: Context) -> None:
    src = ctx.replica.db
    d = ctx.work / "snapshot"
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    copy = d / "copy.db"
    conn = sqlite3.connect(src)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
    shutil.copyfile(src, copy)
    nbytes = copy.stat().st_size
    log(f"snapshot CLI: ltxkit snapshot vs litestream replicate -once on a fresh copy ({nbytes / 1e6:.0f} MB)")
    # ltxkit first: Litestream adds its own tables to the database it replicates
    ours = _check(run_child([ctx.ltxkit, "snapshot", str(copy), "-o", str(d / "ltxkit.ltx")]), "ltxkit snapshot")
    theirs = _check(
        run_child([ctx.litestream, "replicate", "-once", str(copy), f"file://{(d / 'replica').resolve()}"]),
        "litestream replicate -once",
    )
    ctx.add(
        Row(
            "snapshot",
            "snapshot CLI: `ltxkit snapshot` vs `litestream replicate -once` (1 run)",
            "MB/s",
            mb_per_s(nbytes, ours.seconds),
            mb_per_s(nbytes, theirs.seconds),
            note="whole CLI process on a fresh copy; ltxkit also tracks checksums and decodes the file "
            "again before publishing it, Litestream writes a no-checksum L0 file",
            extra={
                "db_bytes": nbytes,
                "ltxkit_s": ours.seconds,
                "litestream_s": theirs.seconds,
                "ltxkit_rss_kib": ours.max_rss_kib,
                "litestream_rss_kib": theirs.max_rss_kib,
            },
        )
    )
    shutil.rmtree(d, ignore_errors=True)


# ---- 4. full verify -----------------------------------------------------------------------------------


def _verify(ctx: Context, path: Path, *extra: str) -> tuple[ChildRun, dict]:  # type: ignore[type-arg]
    run = run_child([ctx.ltxkit, "verify", str(path), "--format", "json", *extra])
    if run.returncode not in (0, 1):
        _check(run, f"ltxkit verify {' '.join(extra)}")
    report = json.loads(run.stdout)
    if not report.get("ok"):
        log(f"  WARNING: ltxkit verify {path} reports defects: {report.get('findings')}")
    return run, report


def bench_verify(ctx: Context) -> None:
    replica = ctx.replica.replica
    page_bytes, file_bytes = _page_bytes(replica)
    log(f"full verify: ltxkit verify {replica.name} --format json ({file_bytes / 1e6:.0f} MB of LTX files)")
    structure_s: list[float] = []
    for label, extra in (
        ("one process per core", ("--structure-only",)),
        ("one process (-j 1)", ("--structure-only", "-j", "1")),
    ):
        runs = [_verify(ctx, replica, *extra) for _ in range(2)]
        structure_s = structure_s or [r[0].seconds for r in runs]
        best = min(runs, key=lambda r: r[0].seconds)
        ctx.add(
            Row(
                "verify",
                f"structure verify of the replica, {label} (CLI, best of 2)",
                "MB/s",
                mb_per_s(page_bytes, best[0].seconds),
                goal=GOAL_DECODE_MBS,
                note=f"{page_bytes / 1e6:.0f} MB of pages in {file_bytes / 1e6:.0f} MB of LTX files; "
                "the goal is the decoder's, CLI start-up included",
                extra={
                    "page_bytes": page_bytes,
                    "file_bytes": file_bytes,
                    "seconds": [r[0].seconds for r in runs],
                    "ok": best[1].get("ok"),
                    "rss_kib": best[0].max_rss_kib,
                    "args": list(extra),
                },
            )
        )
    bench_content(ctx, min(structure_s))


def bench_content(ctx: Context, structure_s: float) -> None:
    """The default verify (structure + restore + quick_check) beside Litestream's nearest
    equivalent, `litestream restore -integrity-check quick`, on the same replica."""
    replica = ctx.replica.replica
    out = ctx.work / "content"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    theirs_db = out / "litestream.db"
    theirs_args = [
        ctx.litestream,
        "restore",
        "-integrity-check",
        "quick",
        "-o",
        str(theirs_db),
        f"file://{replica.resolve()}",
    ]
    log("default verify (content checked) vs litestream restore -integrity-check quick, best of 2, interleaved")
    ours: list[tuple[ChildRun, dict]] = []  # type: ignore[type-arg]
    theirs: list[ChildRun] = []
    for _ in range(2):
        ours.append(_verify(ctx, replica))
        _clean(theirs_db)
        theirs.append(_check(run_child(theirs_args), "litestream restore -integrity-check quick"))
    best = min(ours, key=lambda r: r[0].seconds)
    content = best[1]["replicas"][0]["content"]
    ctx.add(
        Row(
            "verify",
            "default verify: structure + content (restore + quick_check) (CLI, best of 2)",
            "s",
            best[0].seconds,
            min(r.seconds for r in theirs),
            higher_is_better=False,
            note=f"Litestream: restore -integrity-check quick (no structure report); content ok: {content.get('ok')}",
            extra={
                "ltxkit_s": [r[0].seconds for r in ours],
                "litestream_s": [r.seconds for r in theirs],
                "rss_kib": best[0].max_rss_kib,
                "content": content,
            },
        )
    )
    ctx.add(
        Row(
            "verify",
            "  of which content (default minus --structure-only)",
            "s",
            max(best[0].seconds - structure_s, 0.0),
            higher_is_better=False,
            note=f"--structure-only alone: {structure_s:.2f} s",
        )
    )
    shutil.rmtree(out, ignore_errors=True)


# ---- 5. many small files ------------------------------------------------------------------------------


def bench_quick(ctx: Context) -> None:
    path, built = ensure_small_replica(ctx.work, ctx.quick_files, log)
    n = ctx.quick_files
    log(f"quick verify: ltxkit verify --quick on {n} small L0 files")
    quick, qrep = _verify(ctx, path, "--quick")
    ctx.add(
        Row(
            "quick",
            f"verify --quick, {n:,} small L0 files (CLI)",
            "s",
            quick.seconds,
            higher_is_better=False,
            goal=GOAL_QUICK_S,
            extra={"files": n, "ok": qrep.get("ok"), "rss_kib": quick.max_rss_kib, "build_s": built},
        )
    )
    full, frep = _verify(ctx, path)
    ctx.add(
        Row(
            "quick",
            f"full verify, {n:,} small L0 files (CLI)",
            "s",
            full.seconds,
            higher_is_better=False,
            extra={"files": n, "ok": frep.get("ok"), "rss_kib": full.max_rss_kib},
        )
    )
    out = ctx.work / "restore-small"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    log(f"restore of {n} small L0 files: ltxkit vs litestream")
    ours = _check(run_child([ctx.ltxkit, "restore", str(path), "-o", str(out / "ltxkit.db"), "--quiet"]), "ltxkit")
    theirs = _check(
        run_child([ctx.litestream, "restore", "-o", str(out / "litestream.db"), f"file://{path.resolve()}"]),
        "litestream restore",
    )
    same = filecmp.cmp(out / "ltxkit.db", out / "litestream.db", shallow=False)
    ctx.add(
        Row(
            "quick",
            f"restore through {n:,} small L0 files (1 run)",
            "s",
            ours.seconds,
            theirs.seconds,
            higher_is_better=False,
            note=f"outputs byte-identical: {'yes' if same else 'NO'}",
            extra={"identical": same, "ltxkit_rss_kib": ours.max_rss_kib, "litestream_rss_kib": theirs.max_rss_kib},
        )
    )
    shutil.rmtree(out, ignore_errors=True)


# ---- 6. restore -----------------------------------------------------------------------------------------


# What any restore must at least do: put the database's bytes in a new file, durably. The source
# is read in 4 MiB pieces from the page cache (Litestream's output, just written).
_WRITE_FLOOR = """
import os, sys
src, dst = sys.argv[1], sys.argv[2]
with open(src, "rb", buffering=0) as f, open(dst, "xb", buffering=0) as g:
    while chunk := f.read(4 << 20):
        g.write(chunk)
    os.fsync(g.fileno())
"""


def _clean(path: Path) -> None:
    """Remove the last run's output, then let the disk settle: both tools fsync what they write, so
    each run should start with nothing of the previous run (its blocks' release included) queued."""
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    os.sync()


def bench_restore(ctx: Context) -> None:
    replica = ctx.replica.replica
    out = ctx.work / "restore"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    ours_db, theirs_db = out / "ltxkit.db", out / "litestream.db"
    ours_args = [ctx.ltxkit, "restore", str(replica), "-o", str(ours_db), "--quiet"]
    theirs_args = [ctx.litestream, "restore", "-o", str(theirs_db), f"file://{replica.resolve()}"]
    plan = run_child([ctx.ltxkit, "restore", str(replica), "-o", str(ours_db), "--dry-run"]).stdout.strip()
    log(f"restore: ltxkit restore vs litestream restore, median of 3 each, interleaved\n{plan}")
    ours: list[ChildRun] = []
    theirs: list[ChildRun] = []
    floor: list[ChildRun] = []
    copy_db = out / "copy.db"
    for _ in range(3):
        _clean(ours_db)
        ours.append(_check(run_child(ours_args), "ltxkit restore"))
        _clean(theirs_db)
        theirs.append(_check(run_child(theirs_args), "litestream restore"))
        _clean(copy_db)
        copy_args = [sys.executable, "-S", "-c", _WRITE_FLOOR, str(theirs_db), str(copy_db)]
        floor.append(_check(run_child(copy_args), "plain copy"))
    same = filecmp.cmp(ours_db, theirs_db, shallow=False)
    size = ours_db.stat().st_size

    def med(runs: list[ChildRun]) -> float:
        return sorted(r.seconds for r in runs)[len(runs) // 2]

    ctx.add(
        Row(
            "restore",
            "restore (CLI wall time, median of 3)",
            "s",
            med(ours),
            med(theirs),
            higher_is_better=False,
            goal=GOAL_RESTORE_SPEEDUP,
            goal_on="speedup",
            note=f"{size / 1e6:.0f} MB database; outputs byte-identical: {'yes' if same else 'NO'}",
            extra={
                "db_bytes": size,
                "identical": same,
                "ltxkit_s": [r.seconds for r in ours],
                "litestream_s": [r.seconds for r in theirs],
            },
        )
    )
    ctx.add(
        Row(
            "restore",
            "restore peak RSS (max of 3)",
            "MB",
            max(r.max_rss_kib for r in ours) / 1024,
            max(r.max_rss_kib for r in theirs) / 1024,
            higher_is_better=False,
            goal=GOAL_RESTORE_RSS_MB,
            extra={"ltxkit_kib": [r.max_rss_kib for r in ours], "litestream_kib": [r.max_rss_kib for r in theirs]},
        )
    )
    ctx.add(
        Row(
            "restore",
            "restore throughput (database bytes / median time)",
            "MB/s",
            mb_per_s(size, med(ours)),
            mb_per_s(size, med(theirs)),
        )
    )
    ctx.add(
        Row(
            "restore",
            "  floor: write the same bytes to a new file + fsync (median of 3)",
            "s",
            med(floor),
            higher_is_better=False,
            note=f"no decoding at all: {mb_per_s(size, med(floor)):.0f} MB/s of durable writes on this disk; "
            f"a restore cannot beat it, so the best ratio this run allows is about "
            f"{med(theirs) / med(floor):.1f}×",
            extra={"seconds": [r.seconds for r in floor]},
        )
    )
    startup = [run_child([ctx.ltxkit, "--version"]) for _ in range(3)]
    ctx.add(
        Row(
            "restore",
            "  ltxkit CLI start-up alone (`ltxkit --version`, median of 3)",
            "s",
            sorted(r.seconds for r in startup)[1],
            higher_is_better=False,
            note="fixed cost inside every CLI number above",
        )
    )
    if same:
        shutil.rmtree(out, ignore_errors=True)
    else:
        log(f"  outputs differ: kept {ours_db} and {theirs_db}")


# ---- verify FILE, checksum DB: the two commands a cron job runs, against the Go reference tools ------


def _median(values: list[float]) -> float:
    return sorted(values)[len(values) // 2]


def _spin(n: int = 3_000_000) -> None:
    x = 0
    for i in range(n):
        x += i


def _cores_free() -> float:
    """About how many cores this run could have used just now (1.0 to 2.0 on two cores): a Python
    loop alone, then the same loop in two processes at once. On a shared machine the split rows
    below can only be as fast as this allows, so each of them says what it was."""
    t = time.perf_counter()
    _spin()
    one = time.perf_counter() - t
    t = time.perf_counter()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child only spins
        _spin()
        os._exit(0)
    _spin()
    os.waitpid(pid, 0)
    return min(2.0, 2 * one / (time.perf_counter() - t))


def _interleaved(ctx: Context, variants: dict[str, list[str]], runs: int, what: str) -> dict[str, list[ChildRun]]:
    """Each variant's command `runs` times, alternating, so a busy spell hurts them alike."""
    out: dict[str, list[ChildRun]] = {name: [] for name in variants}
    free: list[float] = []
    for _ in range(runs):
        free.append(_cores_free())
        for name, args in variants.items():
            out[name].append(_check(run_child(args), f"{what} {name}"))
    ctx.info.setdefault("cores_free", {})[what] = free  # type: ignore[union-attr]
    log(f"  cores free during {what}: {', '.join(f'{f:.1f}' for f in free)}")
    return out


def _free_note(ctx: Context, what: str) -> str:
    free = ctx.info.get("cores_free", {}).get(what, [])  # type: ignore[union-attr]
    return f"cores free (median of {len(free)} probes): {_median(free):.1f} of 2" if free else ""


def bench_verify_file(ctx: Context) -> None:
    """`ltxkit verify FILE` on the replica's snapshot (one large file: spans on every core), and
    the whole replica's structure verify, as MB/s of page data with peak RSS."""
    replica = ctx.replica.replica
    path = _snapshot_file(replica)
    with open(path, "rb") as fh:
        entries, _ = read_page_index(fh, path.stat().st_size)
    page_bytes = len(entries) * PAGE_SIZE
    size = path.stat().st_size
    log(f"verify FILE: ltxkit verify {path.name} ({size / 1e6:.0f} MB, {page_bytes / 1e6:.0f} MB of pages)")
    base = [ctx.ltxkit, "verify", str(path), "--format", "json"]
    runs = _interleaved(ctx, {"cores": base, "one": [*base, "-j", "1"]}, 5, "ltxkit verify FILE")
    for name, label in (("cores", "one process per core"), ("one", "one process (-j 1)")):
        rs = runs[name]
        ctx.add(
            Row(
                "verify-file",
                f"`ltxkit verify FILE`, one snapshot file, {label} (CLI, median of 5)",
                "MB/s",
                mb_per_s(page_bytes, _median([r.seconds for r in rs])),
                goal=GOAL_VERIFY_FILE_MBS if name == "cores" else None,
                note=f"peak RSS {max(r.max_rss_kib for r in rs) / 1024:.0f} MB; "
                f"{_free_note(ctx, 'ltxkit verify FILE')}; reference: {GO_VERIFY_FILE}",
                extra={
                    "file": str(path),
                    "file_bytes": path.stat().st_size,
                    "page_bytes": page_bytes,
                    "seconds": [r.seconds for r in rs],
                    "rss_kib": [r.max_rss_kib for r in rs],
                },
            )
        )
    # the usual shape of a Litestream replica: one large snapshot and small increments after it
    usual = ctx.work / "replica-one-snapshot"
    if not usual.exists():
        (usual / "ltx" / "0").mkdir(parents=True)
        for f in sorted((replica / "ltx" / "0").glob("*.ltx")):
            os.link(f, usual / "ltx" / "0" / f.name)
    for path, what, goal, how in (
        (
            usual,
            "replica verify (--structure-only), one snapshot + its L0 increments",
            None,
            "the snapshot in spans on every core, then the increments",
        ),
        (
            replica,
            "full replica verify (--structure-only), one process per core",
            GOAL_REPLICA_VERIFY_MBS,
            "two snapshots, one per core",
        ),
    ):
        page_bytes, file_bytes = _page_bytes(path)
        base = [ctx.ltxkit, "verify", str(path), "--structure-only", "--format", "json"]
        rs = _interleaved(ctx, {"cores": base}, 3, what)["cores"]
        ctx.add(
            Row(
                "verify-file",
                f"{what} (CLI, median of 3)",
                "MB/s",
                mb_per_s(page_bytes, _median([r.seconds for r in rs])),
                goal=goal,
                note=f"{page_bytes / 1e6:.0f} MB of pages in {file_bytes / 1e6:.0f} MB of LTX files: {how}; "
                f"peak RSS {max(r.max_rss_kib for r in rs) / 1024:.0f} MB; {_free_note(ctx, what)}",
                extra={"seconds": [r.seconds for r in rs], "rss_kib": [r.max_rss_kib for r in rs]},
            )
        )


def bench_checksum(ctx: Context) -> None:
    """`ltxkit checksum DB` on the benchmark database (its pages, lock page excluded)."""
    db = ctx.replica.db
    with consistent_view(db) as view:
        page_bytes = view.commit * view.page_size
        expected = f"{view.checksum(jobs=1):016x}"
    log(f"checksum: ltxkit checksum {db.name} ({page_bytes / 1e6:.0f} MB of pages)")
    base = [ctx.ltxkit, "checksum", str(db)]
    runs = _interleaved(ctx, {"cores": base, "one": [*base, "-j", "1"]}, 5, "ltxkit checksum")
    startup = [run_child([ctx.ltxkit, "--version"]).seconds for _ in range(3)]
    for name, label in (("cores", "one process per core"), ("one", "one process (-j 1)")):
        rs = runs[name]
        same = all(r.stdout.strip() == expected for r in rs)
        ctx.add(
            Row(
                "checksum",
                f"`ltxkit checksum DB`, {label} (CLI, median of 5)",
                "MB/s",
                mb_per_s(page_bytes, _median([r.seconds for r in rs])),
                goal=GOAL_CHECKSUM_MBS if name == "cores" else None,
                note=f"peak RSS {max(r.max_rss_kib for r in rs) / 1024:.0f} MB; CLI start-up alone "
                f"{_median(startup):.2f} s; same checksum every run: {'yes' if same else 'NO'}; "
                f"{_free_note(ctx, 'ltxkit checksum')}; "
                f"reference: {GO_CHECKSUM}",
                extra={
                    "page_bytes": page_bytes,
                    "seconds": [r.seconds for r in rs],
                    "rss_kib": [r.max_rss_kib for r in rs],
                    "startup_s": startup,
                    "same": same,
                },
            )
        )


RUNNERS: dict[str, Callable[[Context], None]] = {
    "decode": bench_decode,
    "encode": bench_encode,
    "snapshot": bench_snapshot,
    "verify": bench_verify,
    "verify-file": bench_verify_file,
    "checksum": bench_checksum,
    "quick": bench_quick,
    "restore": bench_restore,
    "replicate": bench_replicate,
    "s3": bench_s3,
    "lifecycle": bench_lifecycle,
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n\n")[0])
    p.add_argument("--mb", type=int, default=300, help="database size in MB (default 300)")
    p.add_argument(
        "--work",
        type=Path,
        default=REPO / "bench-work",
        help="work directory, reused between runs (default bench-work/ in the repository)",
    )
    p.add_argument("--quick-files", type=int, default=10000, help="small L0 files for the quick-verify run")
    p.add_argument(
        "--only",
        action="append",
        default=None,
        metavar="NAME",
        help=f"run only these (repeat or comma-separate): {', '.join(BENCHMARKS)}",
    )
    args = p.parse_args(argv)
    if args.mb < 1 or args.quick_files < 2:
        p.error("--mb must be >= 1 and --quick-files >= 2")
    only = [n.strip() for item in (args.only or []) for n in item.split(",") if n.strip()]
    unknown = [n for n in only if n not in BENCHMARKS]
    if unknown:
        p.error(f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")
    args.only = [n for n in BENCHMARKS if n in only] if only else list(BENCHMARKS)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    ctx = Context(work, args.mb, args.quick_files, _bin("ltxkit"), _bin("litestream"))
    version = run_child([ctx.litestream, "version"]).stdout.strip()
    log(f"ltxkit benchmarks: --mb {args.mb}, work {work}, litestream {version}, running {', '.join(args.only)}")
    start = time.perf_counter()
    timings: dict[str, float] = {}
    failed: list[str] = []
    for name in args.only:
        t = time.perf_counter()
        try:
            RUNNERS[name](ctx)
        except Exception as exc:  # one broken benchmark must not hide the others' numbers
            traceback.print_exc()
            failed.append(name)
            lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()] or [type(exc).__name__]
            if len(lines) > 3:
                lines = [lines[0], "...", *lines[-2:]]
            ctx.rows.append(Row(name, f"{name}: FAILED", "", None, note=" | ".join(lines)[:400]))
        timings[name] = time.perf_counter() - t
    total = time.perf_counter() - start

    print()
    print(f"ltxkit vs litestream {version} — {args.mb} MB database, {os.cpu_count()} CPUs, {platform.python_version()}")
    print(render(ctx.rows))
    print(f"\ntotal {total:.1f} s (" + ", ".join(f"{k} {v:.1f} s" for k, v in timings.items()) + ")")
    results = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "args": {"mb": args.mb, "work": str(work), "quick_files": args.quick_files, "only": args.only},
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "litestream": version,
        },
        **ctx.info,
        "seconds": {"total": total, **timings},
        "rows": [r.to_json() for r in ctx.rows],
    }
    path = work / "results.json"
    path.write_text(json.dumps(results, indent=2) + "\n")
    print(f"results written to {path}")
    if failed:
        print(f"benchmark(s) that crashed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        sys.exit(main())
