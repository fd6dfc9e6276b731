"""Restore after a long write history: the same history as L0 files only, and compacted as
`ltxkit replicate` compacts it. `ltxkit restore` and `litestream restore` on both, same run.

1. The history: the S3 benchmark's replica (a ~100 MB snapshot and ~2,000 single-TXID L0
   increments, one per simulated 1-second sync; built once, see `benchmarks.s3`).
2. The compacted copy is made by replaying that history into a fresh directory with ltxkit's
   own lifecycle code (`ltxkit.replicate.lifecycle`): after every 30 syncs a level-1 compaction
   (Litestream's 30 s default), after every 300 a level-2 one (5 min), then L0 retention removes
   every L0 file a level-1 file covers (the newest L0 file stays). Every output is proven before
   it is published, as in the daemon. Cached under WORK/lifecycle while WORK/lifecycle/meta.json
   matches.
3. Restore of each replica by both tools: best of 3, interleaved; outputs compared byte for byte.
"""

from __future__ import annotations

import filecmp
import json
import os
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING

from benchmarks.measure import run_child
from benchmarks.report import Row
from benchmarks.s3 import DEFAULT_FILES, DEFAULT_MB, FILES_ENV, MB_ENV, _check, _ensure, log
from ltxkit.replica.layout import list_replica, restore_plan
from ltxkit.replica.storage import open_storage
from ltxkit.replicate.lifecycle import Policy, compact, retention

if TYPE_CHECKING:
    from benchmarks.run import Context

L1_EVERY = 30  # syncs (Litestream's 30 s level-1 interval at a 1 s sync interval)
L2_EVERY = 300  # 5 min
META_VERSION = 1


def _compacted(l0_only: Path, out: Path) -> float:
    """Replay `l0_only`'s L0 files into `out`, compacting and pruning as the daemon would."""
    shutil.rmtree(out, ignore_errors=True)
    (out / "ltx" / "0").mkdir(parents=True)
    storage = open_storage(str(out))
    files = sorted((l0_only / "ltx" / "0").glob("*.ltx"))
    t = time.perf_counter()
    for n, path in enumerate(files, 1):
        os.link(path, out / "ltx" / "0" / path.name)
        if n % L1_EVERY == 0:
            compact(storage, 1)
        if n % L2_EVERY == 0:
            compact(storage, 2)
    compact(storage, 1)
    policy = Policy(l0_retention_s=0.0, snapshot_retention_s=10 * 365 * 86_400.0)
    retention(storage, policy, now_ms=int(time.time() * 1000) + 86_400_000)
    return time.perf_counter() - t


def _ensure_compacted(ctx: Context, l0_only: Path, mb: int, files: int) -> tuple[Path, float | None]:
    root = ctx.work / "lifecycle"
    meta = {"version": META_VERSION, "mb": mb, "files": files, "l1": L1_EVERY, "l2": L2_EVERY}
    meta_path = root / "meta.json"
    if meta_path.exists() and json.loads(meta_path.read_text()) == meta and (root / "compacted" / "ltx").is_dir():
        return root / "compacted", None
    meta_path.unlink(missing_ok=True)
    root.mkdir(parents=True, exist_ok=True)
    log(f"lifecycle: replaying {files:,} syncs with compaction (L1 every {L1_EVERY}, L2 every {L2_EVERY}), once")
    seconds = _compacted(l0_only, root / "compacted")
    meta_path.write_text(json.dumps(meta, indent=2) + "\n")
    return root / "compacted", seconds


def _describe(replica: Path) -> str:
    listing = list_replica(open_storage(str(replica)))
    levels = {}
    for f in listing.files:
        levels[f.level] = levels.get(f.level, 0) + 1
    plan = restore_plan(listing.files)
    kinds = ", ".join(f"L{lv}: {n:,}" for lv, n in sorted(levels.items()))
    return f"{kinds}; restore plan {len(plan):,} files"


def bench_lifecycle(ctx: Context) -> None:
    mb = int(os.environ.get(MB_ENV) or DEFAULT_MB)
    files = int(os.environ.get(FILES_ENV) or DEFAULT_FILES)
    l0_only, _fleet, _built = _ensure(ctx.work, mb, files, ctx.ltxkit)
    compacted, replay_s = _ensure_compacted(ctx, l0_only, mb, files)
    if replay_s is not None:
        ctx.info["lifecycle"] = {"replay_with_compaction_s": replay_s}
    out = ctx.work / "lifecycle" / "out"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    results: dict[str, tuple[float, float]] = {}
    for name, replica in (("L0 only", l0_only), ("compacted", compacted)):
        ours_db, theirs_db = out / f"ltxkit-{name[:2]}.db", out / f"litestream-{name[:2]}.db"
        ours_args = [ctx.ltxkit, "restore", str(replica), "-o", str(ours_db), "--quiet", "--force"]
        theirs_args = [ctx.litestream, "restore", "-o", str(theirs_db), f"file://{replica.resolve()}"]
        log(f"lifecycle: restore of the {name} replica ({_describe(replica)}), best of 3 each, interleaved")
        ours: list[float] = []
        theirs: list[float] = []
        for _ in range(3):
            ours.append(_check(run_child(ours_args), f"ltxkit restore ({name})").seconds)
            theirs_db.unlink(missing_ok=True)
            theirs.append(_check(run_child(theirs_args), f"litestream restore ({name})").seconds)
        same = filecmp.cmp(ours_db, theirs_db, shallow=False)
        results[name] = (min(ours), min(theirs))
        ctx.add(
            Row(
                "lifecycle",
                f"restore after {files:,} syncs, {name} (CLI wall time, best of 3)",
                "s",
                min(ours),
                min(theirs),
                higher_is_better=False,
                note=f"{_describe(replica)}; outputs byte-identical: {'yes' if same else 'NO'}",
                extra={"identical": same, "ltxkit_s": ours, "litestream_s": theirs},
            )
        )
    if filecmp.cmp(out / "ltxkit-L0.db", out / "ltxkit-co.db", shallow=False):
        log("  the two replicas restore to the same database")
    else:
        log("  WARNING: the L0-only and the compacted replica restore to different databases")
    l0, co = results["L0 only"], results["compacted"]
    ctx.add(
        Row(
            "lifecycle",
            "  compaction's gain: L0-only restore time / compacted restore time",
            "×",
            l0[0] / co[0],
            note=f"litestream restore's gain: {l0[1] / co[1]:.2f}×",
        )
    )
    shutil.rmtree(out, ignore_errors=True)
