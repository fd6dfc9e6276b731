"""Is a replicator writing to this replica right now? Repair must not race one.

A repair planned while Litestream keeps uploading is published over files it never saw: the
replica can end up unrestorable seconds later. Nothing proves a replicator is stopped, so repair
looks for every sign it can see and refuses on any of them:

- `ltxkit replicate` holds an exclusive flock on `.ltxkit-writer.lock` in a local replica, and on
  `.<db>-ltxkit/lock` beside the database (`ltxkit.replicate.state`), while it runs: the second
  is knowable when `--from-db` names the database;
- Litestream keeps its local copy of each sync in `.<db>-litestream/` beside the database: a
  change there during the watch means it is running (a stopped one left it as it was);
- and always: new or changed files in the replica during a short watch (`watch_s`). An idle
  Litestream writes nothing and cannot be seen this way; `--help` says so.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

from ltxkit.errors import UsageError
from ltxkit.replica.storage import Storage

MIN_RECENT_S = 0.5  # Litestream's state written this recently (or during the watch): running
DEFAULT_WATCH_S = 1.0  # how long repair watches the replica for new files
WATCH_ENV = "LTXKIT_REPAIR_WATCH"  # seconds; the `--watch` option's environment variable


class ReplicatorRunning(UsageError):
    """A replicator is (or may be) writing to the replica: repair cannot run now (exit 2)."""


def litestream_state_age(db: Path) -> float | None:
    """Seconds since anything in Litestream's `.<db>-litestream/` changed; None: it has none."""
    state = db.parent / f".{db.name}-litestream"
    newest: float | None = None
    for dirpath, dirnames, filenames in os.walk(state):
        for name in [dirpath, *(os.path.join(dirpath, n) for n in dirnames + filenames)]:
            with contextlib.suppress(OSError):
                t = os.lstat(name).st_mtime
                newest = t if newest is None else max(newest, t)
    return None if newest is None else max(0.0, time.time() - newest)


def _snapshot(storage: Storage) -> set[tuple[str, int, int]]:
    return {(e.key, e.size, e.created_ns) for area in storage.layout.areas() for e in storage.list(area)}


def refuse_if_replicating(storage: Storage, db: Path | None, *, watch_s: float) -> None:
    """Raise ReplicatorRunning naming the sign seen; return when none is. Takes `watch_s`."""
    from ltxkit.replicate.state import replicator_pid

    stop = "stop it first, then run repair again"
    writer = storage.writer()
    if writer is not None:
        raise ReplicatorRunning(f"{storage.label}: ltxkit replicate ({writer}) is writing this replica; {stop}")
    if db is not None:
        pid = replicator_pid(db)
        if pid is not None:
            raise ReplicatorRunning(f"{db}: ltxkit replicate (pid {pid}) is replicating this database; {stop}")
    if watch_s <= 0:
        return
    before = _snapshot(storage)
    time.sleep(watch_s)
    if db is not None:
        age = litestream_state_age(db)
        if age is not None and age <= max(watch_s, MIN_RECENT_S):
            raise ReplicatorRunning(
                f"{db}: Litestream wrote its state (.{db.name}-litestream/) {age:.1f} s ago: it is "
                f"replicating this database; {stop}"
            )
    changed = _snapshot(storage) ^ before
    if changed:
        key = sorted(changed)[0][0]
        raise ReplicatorRunning(
            f"{storage.label}: the replica changed while repair watched it for {watch_s:g} s ({key}): "
            f"a replicator is writing to it; {stop}"
        )
