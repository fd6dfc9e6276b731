"""The benchmark inputs: a realistic SQLite database, its real Litestream replica, a many-small-files replica.

Everything lands under the work directory and is reused by later runs when `meta.json` says it
was built with the same parameters and the files are still there.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

import harness as H
from ltxkit.format import FLAG_NO_CHECKSUM, Header, LTXWriter, format_filename

PAGE_SIZE = 4096
DATASET_VERSION = 1  # bump when the shape of the generated data changes
_BATCH_ROWS = 2000


@dataclass
class Replica:
    db: Path
    replica: Path
    built_s: float | None  # None when reused
    initial_once_s: float | None  # `litestream replicate -once` of the fresh database (None when reused)


# ---- the database -----------------------------------------------------------------------------


def _vocabulary(rng: random.Random, n: int = 5000) -> list[str]:
    letters = "etaoinshrdlcumwfgypbvkjxqz"
    weights = [12, 9, 8, 8, 7, 7, 6, 6, 6, 4, 4, 3, 3, 2, 2, 2, 2, 2, 2, 1.5, 1, 0.7, 0.2, 0.2, 0.1, 0.1]
    words = set()
    while len(words) < n:
        words.add("".join(rng.choices(letters, weights, k=rng.randrange(2, 11))))
    return sorted(words)


class RowMaker:
    """Deterministic rows: integers, a real, short and long text of random words, a half-random blob."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.words = _vocabulary(self.rng)
        # Zipf-like word frequencies, as in natural text
        self.cum = list(_cumulative(1.0 / (i + 1) ** 0.9 for i in range(len(self.words))))
        self.t0 = 1_700_000_000_000

    def text(self, lo: int, hi: int) -> str:
        rng = self.rng
        return " ".join(rng.choices(self.words, cum_weights=self.cum, k=rng.randrange(lo, hi)))

    def blob(self) -> bytes:
        rng = self.rng
        n = rng.randrange(32, 900)
        half = n // 2
        pattern = rng.randbytes(8)
        return rng.randbytes(half) + (pattern * (n // 8 + 1))[: n - half]

    def row(self) -> tuple[int, int, float, str, str, bytes]:
        rng = self.rng
        return (
            rng.randrange(1, 50_000),
            self.t0 + rng.randrange(0, 86_400_000 * 365),
            round(rng.random() * 1000, 3),
            self.text(3, 9),
            self.text(15, 110),
            self.blob(),
        )


def _cumulative(values):  # type: ignore[no-untyped-def]
    total = 0.0
    for v in values:
        total += v
        yield total


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, timeout=60)
    conn.execute("PRAGMA busy_timeout=60000")
    return conn


_INSERT = "INSERT INTO items(account, created, score, title, body, payload) VALUES (?, ?, ?, ?, ?, ?)"


def build_database(path: Path, mb: int, seed: int = 20251125) -> None:
    """A WAL-mode database of about `mb` MB (page size 4096): one table of mixed rows and an index."""
    path.parent.mkdir(parents=True, exist_ok=True)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    shutil.rmtree(path.parent / f".{path.name}-litestream", ignore_errors=True)
    target_pages = mb * (1 << 20) // PAGE_SIZE
    rows = RowMaker(seed)
    conn = _connect(path)
    try:
        conn.execute(f"PRAGMA page_size={PAGE_SIZE}")
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=OFF")
        conn.execute(
            "CREATE TABLE items(id INTEGER PRIMARY KEY, account INTEGER NOT NULL, created INTEGER NOT NULL,"
            " score REAL, title TEXT, body TEXT, payload BLOB)"
        )
        conn.execute("CREATE INDEX items_account ON items(account, created)")
        while conn.execute("PRAGMA page_count").fetchone()[0] < target_pages:
            batch = [rows.row() for _ in range(_BATCH_ROWS)]
            conn.execute("BEGIN")
            conn.executemany(_INSERT, batch)
            conn.execute("COMMIT")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()


# ---- the Litestream replica -------------------------------------------------------------------


def litestream_once(litestream: str, db: Path, replica: Path, *, force_snapshot: bool = False) -> float:
    """`litestream replicate -once` through the shared harness (the one way tests, the demo and the
    benchmarks drive Litestream); returns its wall time."""
    t = time.perf_counter()
    with H.using_litestream(litestream):
        H.replicate_once(db, replica, force_snapshot=force_snapshot, timeout=600)
    return time.perf_counter() - t


def _update_phase(conn: sqlite3.Connection, rows: RowMaker, phase: int, max_id: int) -> None:
    rng = rows.rng
    conn.execute("BEGIN")
    if phase == 0:  # rewrite the text of 0.5% of the rows, scattered
        for _ in range(max(1, max_id // 200)):
            conn.execute("UPDATE items SET body = ? WHERE id = ?", (rows.text(15, 110), rng.randrange(1, max_id)))
    elif phase == 1:  # append rows (the database grows) and delete a few
        conn.executemany(_INSERT, [rows.row() for _ in range(max(200, max_id // 100))])
        for _ in range(max(20, max_id // 1000)):
            conn.execute("DELETE FROM items WHERE id = ?", (rng.randrange(1, max_id),))
    else:  # small scattered updates of integers and short text
        for _ in range(max(1, max_id // 100)):
            conn.execute(
                "UPDATE items SET score = ?, title = ? WHERE id = ?",
                (round(rng.random() * 1000, 3), rows.text(3, 9), rng.randrange(1, max_id)),
            )
    conn.execute("COMMIT")


def build_replica(litestream: str, db: Path, replica: Path) -> float:
    """Replicate with the real Litestream: snapshot, then three increments, one of them with an L9 snapshot.

    Resulting replica: L0 1-1 (Litestream's snapshot of the whole database), L0 2-2, L0 3-3,
    L9 1-3 (`-force-snapshot`), L0 4-4. Litestream's restore plan is then L9 1-3 + L0 4-4.
    Returns the time of the first `replicate -once` (the full snapshot).
    """
    shutil.rmtree(replica, ignore_errors=True)
    shutil.rmtree(db.parent / f".{db.name}-litestream", ignore_errors=True)
    first = litestream_once(litestream, db, replica)
    rows = RowMaker(seed=7)
    # one idle connection stays open so SQLite never checkpoints and deletes the WAL between runs
    pin = _connect(db)
    try:
        pin.execute("SELECT count(*) FROM sqlite_master").fetchone()
        max_id = pin.execute("SELECT max(id) FROM items").fetchone()[0] or 1
        for phase in range(3):
            _update_phase(pin, rows, phase, max_id)
            litestream_once(litestream, db, replica, force_snapshot=phase == 1)
    finally:
        pin.close()
    return first


def ensure_replica(work: Path, mb: int, litestream: str, log) -> Replica:  # type: ignore[no-untyped-def]
    db = work / "db" / "bench.db"
    replica = work / "replica"
    meta_path = work / "meta.json"
    want = {"version": DATASET_VERSION, "mb": mb, "page_size": PAGE_SIZE}
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError):
        meta = {}
    if (
        {k: meta.get(k) for k in want} == want
        and db.is_file()
        and db.stat().st_size == meta.get("db_bytes")
        and sorted(p.name for p in (replica / "ltx").rglob("*.ltx")) == meta.get("replica_files")
    ):
        log(f"reusing {db} ({db.stat().st_size / 1e6:.0f} MB) and its replica")
        return Replica(db, replica, None, None)
    log(f"building a {mb} MB database at {db} ...")
    meta_path.unlink(missing_ok=True)
    t = time.perf_counter()
    build_database(db, mb)
    built = time.perf_counter() - t
    log(f"  built in {built:.1f} s; replicating with litestream replicate -once ...")
    first = build_replica(litestream, db, replica)
    meta = dict(want)
    meta["db_bytes"] = db.stat().st_size
    meta["replica_files"] = sorted(p.name for p in (replica / "ltx").rglob("*.ltx"))
    meta_path.write_text(json.dumps(meta, indent=2) + "\n")
    return Replica(db, replica, built, first)


# ---- many small files ---------------------------------------------------------------------------


def build_small_replica(path: Path, n_files: int, *, commit: int = 50, seed: int = 99) -> None:
    """An L0-only replica: snapshot 1-1 of a `commit`-page database, then increments 2..n of 1-3 pages.

    Written with ltxkit's LTXWriter, no-checksum flag as Litestream sets it.
    """
    shutil.rmtree(path, ignore_errors=True)
    level0 = path / "ltx" / "0"
    level0.mkdir(parents=True)
    rng = random.Random(seed)
    base = [rng.randbytes(PAGE_SIZE // 4) + bytes(PAGE_SIZE // 2) + rng.randbytes(PAGE_SIZE // 4) for _ in range(16)]
    t0 = 1_750_000_000_000

    def page(i: int) -> bytes:
        b = bytearray(base[i % len(base)])
        off = rng.randrange(0, PAGE_SIZE - 64)
        b[off : off + 64] = rng.randbytes(64)
        return bytes(b)

    for txid in range(1, n_files + 1):
        if txid == 1:
            pgnos = list(range(1, commit + 1))
        else:
            pgnos = sorted(rng.sample(range(1, commit + 1), rng.randint(1, 3)))
        header = Header(
            flags=FLAG_NO_CHECKSUM,
            page_size=PAGE_SIZE,
            commit=commit,
            min_txid=txid,
            max_txid=txid,
            timestamp=t0 + txid * 1000,
        )
        target = level0 / format_filename(txid, txid)
        with open(target, "wb") as f:
            w = LTXWriter(f, header)
            for p in pgnos:
                w.write_page(p, page(p))
            w.close()
        ts = (t0 + txid * 1000) * 1_000_000
        os.utime(target, ns=(ts, ts))  # Litestream sets a file replica's mtime to the header timestamp


def ensure_small_replica(work: Path, n_files: int, log) -> tuple[Path, float | None]:  # type: ignore[no-untyped-def]
    path = work / f"small-{n_files}"
    stamp = work / f"small-{n_files}.json"  # beside the replica, so no stray file inside it
    want = {"version": DATASET_VERSION, "files": n_files}
    try:
        ok = json.loads(stamp.read_text()) == want
    except (OSError, ValueError):
        ok = False
    if ok:
        log(f"reusing {path} ({n_files} small L0 files)")
        return path, None
    log(f"writing {n_files} small L0 files to {path} ...")
    stamp.unlink(missing_ok=True)
    t = time.perf_counter()
    build_small_replica(path, n_files)
    elapsed = time.perf_counter() - t
    stamp.write_text(json.dumps(want) + "\n")
    return path, elapsed
