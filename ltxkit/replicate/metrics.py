"""Prometheus metrics for `ltxkit replicate --metrics-addr HOST:PORT`, fed by the replicator's events.

Names follow Litestream's (`litestream_sync_count` becomes `ltxkit_sync_count`, ...) so a
dashboard moves over by changing the prefix; the rest say what only ltxkit has (refused files,
proofs, the ledger). Every metric carries the database path as `db`.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

from ltxkit.replicate.engine import Event
from ltxkit.sqlite import wal_and_shm


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r, labels = self.registry, ["db"]
        self.sync_count = Counter("ltxkit_sync_count", "Syncs run", labels, registry=r)
        self.sync_error_count = Counter("ltxkit_sync_error_count", "Syncs that failed", labels, registry=r)
        self.last_sync = Gauge(
            "ltxkit_last_sync_timestamp_seconds", "When the last successful sync ended", labels, registry=r
        )
        self.txid = Gauge("ltxkit_txid", "The replica's latest TXID", labels, registry=r)
        self.lag = Gauge("ltxkit_lag_seconds", "Commit to published, of the last published file", labels, registry=r)
        self.files = Counter("ltxkit_published_files", "LTX files published", ["db", "level", "kind"], registry=r)
        self.bytes = Counter("ltxkit_published_bytes", "LTX bytes published", ["db", "level"], registry=r)
        self.refused = Counter(
            "ltxkit_refused_files", "Built files that failed their proof and were not published", labels, registry=r
        )
        self.checkpoints = Counter("ltxkit_checkpoint_count", "Checkpoints run", ["db", "mode"], registry=r)
        self.compactions = Counter("ltxkit_compaction_count", "Compactions and snapshots", ["db", "level"], registry=r)
        self.retention = Counter("ltxkit_retention_deleted_files", "Files retention deleted", labels, registry=r)
        self.wal_size = Gauge("ltxkit_wal_size", "Size of the database's WAL in bytes", labels, registry=r)
        self.db_size = Gauge("ltxkit_db_size", "Size of the database file in bytes", labels, registry=r)

    def serve(self, addr: str) -> None:
        """Serve at HOST:PORT (`:PORT`: 127.0.0.1); ValueError naming what is wrong with `addr`."""
        host, colon, port = addr.rpartition(":")
        if not colon or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError("expected HOST:PORT, e.g. 127.0.0.1:9090")
        start_http_server(int(port), addr=host.strip("[]") or "127.0.0.1", registry=self.registry)

    def observe(self, db: str, event: Event) -> None:
        """Count what `event`, from the replicator of database `db`, says happened."""
        f = event.fields
        kind = event.kind
        if kind == "sync":
            self.sync_count.labels(db).inc()
            if f.get("ok"):
                self.last_sync.labels(db).set(time.time())
            else:
                self.sync_error_count.labels(db).inc()
            self._sizes(db)
        elif kind == "published":
            self.files.labels(db, "0", f["kind"]).inc()
            self.bytes.labels(db, "0").inc(f["bytes"])
            self.txid.labels(db).set(int(f["max_txid"], 16))
            self.lag.labels(db).set(f["lag_ms"] / 1000)
        elif kind == "ready":  # the replica's TXID from the start, not from the first new commit
            self.txid.labels(db).set(int(f["txid"], 16))
        elif kind in ("compacted", "snapshot"):
            level = f["key"].split("/")[-2]
            self.compactions.labels(db, level).inc()
            self.files.labels(db, level, kind).inc()
            self.bytes.labels(db, level).inc(f["bytes"])
        elif kind == "checkpoint":
            self.checkpoints.labels(db, f["mode"]).inc()
        elif kind == "retention":
            self.retention.labels(db).inc(len(f["keys"]))
        elif kind == "error" and "reason" in f:
            self.refused.labels(db).inc()

    def _sizes(self, db: str) -> None:
        for gauge, path in ((self.db_size, db), (self.wal_size, wal_and_shm(Path(db))[0])):
            try:
                gauge.labels(db).set(os.stat(path).st_size)
            except OSError:
                gauge.labels(db).set(0)
