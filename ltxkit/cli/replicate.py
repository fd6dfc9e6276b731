"""`ltxkit replicate DB REPLICA`: stream a live database into a replica, one proven file per sync."""

import contextlib
import json
import re
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

from ltxkit.cli.common import Fail, err, guarded
from ltxkit.errors import EXIT_DEFECTS, EXIT_USAGE

#: how long a stopped replicator's last sync may take before the process leaves without it (a
#: store that stopped answering would otherwise hold the stop for its request timeout and retries)
STOP_GRACE_S = 20.0
FIRST_ANSWER_NOTE_S = 5.0  # a store silent this long at the start is said to be (`opened`)
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h)?$")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def parse_duration(text: str, option: str) -> float:
    """'1s', '250ms', '5m', '1h' or plain seconds -> seconds."""
    m = _DURATION.match(text.strip())
    if not m or float(m.group(1)) <= 0:
        raise Fail(f"{option} {text!r}: expected a duration such as 1s, 250ms or 5m", EXIT_USAGE)
    return float(m.group(1)) * _UNIT_S[m.group(2)]


@guarded
def replicate(
    db: Annotated[
        Path | None, typer.Argument(help="The SQLite database to replicate (WAL mode).", show_default=False)
    ] = None,
    replica: Annotated[
        str | None,
        typer.Argument(
            help="Where the replica lives: a directory, file:// or s3:// URL (created if its parent exists).",
            show_default=False,
        ),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            "-c",
            help="Litestream's YAML (dbs[].path, dbs[].replica.url or an S3 replica's fields: type: s3, "
            "bucket, path, endpoint, region, keys; levels, snapshot, retention, checkpoint and sync "
            "settings): several databases, one process. Unsupported keys are named. "
            "$NAME and ${NAME} are replaced by environment variables, as Litestream does.",
        ),
    ] = None,
    no_expand_env: Annotated[
        bool, typer.Option("--no-expand-env", help="Read --config as it is, without replacing $NAME.")
    ] = False,
    interval: Annotated[str, typer.Option("--interval", help="Time between syncs (1s, 250ms, ...).")] = "1s",
    once: Annotated[bool, typer.Option("--once", help="Sync what is committed now, then exit (cron, CI).")] = False,
    log_format: Annotated[
        str, typer.Option("--log-format", "--format", help="text or json (one object per line).")
    ] = "text",
    min_checkpoint_pages: Annotated[
        int, typer.Option("--min-checkpoint-pages", help="PASSIVE checkpoint once the WAL holds this many frames.")
    ] = 1000,
    checkpoint_interval: Annotated[
        str, typer.Option("--checkpoint-interval", help="... or this long after the last one.")
    ] = "1m",
    truncate_pages: Annotated[
        int, typer.Option("--truncate-pages", help="TRUNCATE checkpoint once the WAL file is this many frames long.")
    ] = 121_359,
    levels: Annotated[
        str,
        typer.Option("--levels", help="Compaction intervals of levels 1, 2, ... ('none': keep L0 files only)."),
    ] = "30s,5m,1h",
    snapshot_interval: Annotated[str, typer.Option("--snapshot-interval", help="Level-9 snapshot every ...")] = "24h",
    snapshot_retention: Annotated[
        str, typer.Option("--snapshot-retention", help="Keep snapshots (and what they need) this long.")
    ] = "24h",
    l0_retention: Annotated[
        str,
        typer.Option(
            "--l0-retention",
            help="Keep L0 files at least this long after they were written, and until level 1 covers them.",
        ),
    ] = "5m",
    l0_retention_check_interval: Annotated[
        str, typer.Option("--l0-retention-check-interval", help="How often retention runs.")
    ] = "15s",
    metrics_addr: Annotated[
        str | None,
        typer.Option("--metrics-addr", help="Serve Prometheus metrics at HOST:PORT (e.g. 127.0.0.1:9090)."),
    ] = None,
) -> None:
    """Stream a live database into a Litestream 0.5.x replica, publishing only proven files.

    Each sync reads what the database committed (from its WAL, checking SQLite's frame checksums)
    and writes one level-0 LTX file, as Litestream does: the first one a snapshot, TXIDs never
    reused. Before a file is published it is decoded and proven to take the replica from its
    previous state exactly to the database state that was read; a file that fails is never
    published and the next sync writes a full file instead. `litestream restore` and `ltxkit
    restore` both restore the replica, and `litestream replicate` can continue it (stop one
    replicator before starting the other).

    State lives beside the database in `.<name>-ltxkit/`; losing it costs one full read of the
    database, never correctness. Runs until SIGTERM or Ctrl-C, then syncs once more and exits 0
    (1, naming the last TXID in the replica, when that sync fails or the replica's store does not
    answer within 20 s of the stop).
    One log line per published file; replication that cannot go on (a changed page size) ends
    it, and so does a start that cannot happen (not WAL mode, a second replicator): see below.

    Like Litestream it compacts level 0 into levels 1, 2, 3 (--levels), takes level-9 snapshots
    and deletes what retention allows and no restore needs; every compacted file and snapshot is
    proven before it is published.

    Examples:  ltxkit replicate /srv/app.db /backups/app
               ltxkit replicate /srv/app.db s3://bucket/app --log-format json
               ltxkit replicate /srv/app.db /backups/app --once
               ltxkit replicate --config /etc/litestream.yml
    """
    from ltxkit.replica.discover import enclosing_replica
    from ltxkit.replica.storage import Storage, open_storage
    from ltxkit.replicate import Event, FatalError, Options, Replicator
    from ltxkit.replicate.config import DbConfig, load_file
    from ltxkit.replicate.hooks import Hooks
    from ltxkit.replicate.lifecycle import Policy
    from ltxkit.replicate.source import check_source
    from ltxkit.replicate.state import make_state_dir, refuse_if_replicated

    if log_format not in ("text", "json"):
        raise Fail(f"--log-format {log_format!r}: expected text or json", EXIT_USAGE)
    options = Options(
        interval_s=parse_duration(interval, "--interval"),
        min_checkpoint_pages=min_checkpoint_pages,
        checkpoint_interval_s=parse_duration(checkpoint_interval, "--checkpoint-interval"),
        truncate_pages=truncate_pages,
    )
    policy = None
    if levels.strip().lower() != "none":
        intervals = [parse_duration(v, "--levels") for v in levels.split(",") if v.strip()]
        policy = Policy(
            levels=tuple((i + 1, v) for i, v in enumerate(intervals)),
            snapshot_interval_s=parse_duration(snapshot_interval, "--snapshot-interval"),
            snapshot_retention_s=parse_duration(snapshot_retention, "--snapshot-retention"),
            l0_retention_s=parse_duration(l0_retention, "--l0-retention"),
            l0_retention_check_s=parse_duration(l0_retention_check_interval, "--l0-retention-check-interval"),
        )
        if len(policy.levels) > 8:
            raise Fail("--levels: at most 8 levels (level 9 holds snapshots)", EXIT_USAGE)
    warnings: list[str] = []
    if config is not None:
        if db is not None or replica is not None:
            raise Fail("give either DB REPLICA or --config, not both", EXIT_USAGE)
        loaded = load_file(config, base=options, policy=policy, expand=not no_expand_env)
        targets, warnings = loaded.dbs, loaded.warnings
    elif db is None or replica is None:
        raise Fail("give DB and REPLICA (or --config FILE)", EXIT_USAGE)
    else:
        targets = [DbConfig(db, replica, options, policy)]
    several = len(targets) > 1

    metrics = None
    if metrics_addr is not None:
        from ltxkit.replicate.metrics import Metrics

        metrics = Metrics()
        try:
            metrics.serve(metrics_addr)
        except (OSError, ValueError) as exc:
            raise Fail(f"--metrics-addr {metrics_addr}: {getattr(exc, 'strerror', None) or exc}", EXIT_USAGE) from exc
    lock = threading.Lock()

    def emitter(db_path: Path) -> Callable[[Event], None]:
        def emit(event: Event) -> None:
            if metrics is not None:
                metrics.observe(str(db_path), event)
            if event.kind == "sync":
                return
            now = time.time()
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now * 1000) % 1000:03d}Z"
            if log_format == "json":
                fields = {"time": stamp, "event": event.kind, "message": event.message, **event.fields}
                if several:
                    fields["db"] = str(db_path)
                line = json.dumps(fields)
            else:
                line = f"{stamp} {event.kind:<9} " + (f"{db_path}: " if several else "") + event.message
            with lock:
                err.print(line, markup=False, highlight=False)

        return emit

    for warning in warnings:
        # with several databases the line already names the config where a database goes
        emitter(Path(config or "."))(Event("warning", warning if several else f"{config}: {warning}", {}))

    def opened(t: DbConfig) -> Storage:
        """The replica, saying so when the store does not answer its first request soon: that
        request may wait a minute, and nothing else would be logged meanwhile."""
        say = emitter(t.path)
        note = threading.Timer(
            FIRST_ANSWER_NOTE_S,
            lambda: say(Event("waiting", f"{t.replica}: no answer yet to the first request; waiting for it", {})),
        )
        note.daemon = True
        note.start()
        try:
            return open_storage(t.replica, create=True, credentials=t.credentials)
        finally:
            note.cancel()

    made: list[Path] = []  # state directories made here: removed again if the start is refused
    try:
        for target in targets:  # before any replica is made for it
            check_source(target.path, must_exist=once)
            refuse_if_replicated(target.path)
            inside = enclosing_replica(target.replica, credentials=target.credentials)
            if inside is not None:
                raise Fail(
                    f"{target.replica}: a folder of the replica {inside}, not a replica: give {inside} itself "
                    "(or a path outside it)",
                    EXIT_USAGE,
                )
            made += make_state_dir(target.path)
        replicators = [
            Replicator(
                t.path,
                opened(t),
                options=t.options,
                emit=emitter(t.path),
                hooks=Hooks.from_env(),
                policy=t.policy,
            )
            for t in targets
        ]
    except BaseException:
        for directory in made:
            with contextlib.suppress(OSError):
                directory.rmdir()  # only if still empty: a replicator that started keeps its lock there
        raise
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    results: dict[int, bool | BaseException] = {}

    def run(i: int) -> None:
        try:
            results[i] = replicators[i].run(stop, once=once)
        except BaseException as exc:  # reported below, in the main thread
            results[i] = exc

    # every replicator on a thread of its own (daemons: a stop never waits on one stuck in a
    # request to a store that stopped answering), the main thread free for the signals
    threads = [threading.Thread(target=run, args=(i,), name=str(t.path), daemon=True) for i, t in enumerate(targets)]
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads) and not stop.wait(0.2):
        pass
    deadline = time.monotonic() + STOP_GRACE_S
    for t in threads:  # stopping: each makes its last sync, within the grace
        while t.is_alive() and time.monotonic() < deadline:
            t.join(0.2)

    def unpublished(i: int, why: str, *, in_flight: bool = False) -> None:
        txid = replicators[i].published_txid
        after = f"commits after TXID {txid:016x}"
        if in_flight:  # the request it waits on may still land: the next start finds what did
            lost = f"{after} may not be in the replica" if txid else "the replica may be empty"
            lost += " (an upload was still in flight: the next start sees what landed)"
        else:
            lost = f"{after} are not in the replica" if txid else "nothing of it is in the replica"
        line = f"ltxkit: {targets[i].path}: {why}; {lost}"
        err.print(line, markup=False, highlight=False)

    stuck = [i for i, t in enumerate(threads) if t.is_alive()]
    for i in stuck:
        label = replicators[i].storage.label
        why = f"stopped without its last sync: {label} did not answer within {STOP_GRACE_S:.0f} s"
        unpublished(i, why, in_flight=True)
    failures = [r for r in results.values() if isinstance(r, BaseException)]
    for other in failures[1:]:
        err.print(f"ltxkit: {other}", markup=False, highlight=False)
    if failures:
        first = failures[0]
        if isinstance(first, FatalError):
            raise Fail(str(first), EXIT_DEFECTS) from first
        raise first
    if stuck:
        raise typer.Exit(EXIT_DEFECTS)
    if not once:  # stopped: what was committed last is not all published when the last sync failed
        for i, ok in results.items():
            if ok is False:
                unpublished(i, "stopped, but its last sync failed")
    if not all(results.values()):
        raise typer.Exit(EXIT_DEFECTS)
