"""`ltxkit restore REPLICA -o DB`: Litestream's restore plan, every page verified, written atomically."""

import contextlib
import functools
import sys
import tempfile
import time
from collections.abc import Iterator
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from ltxkit.cli.common import (
    MAX_JOBS,
    Fail,
    err,
    guarded,
    local_output,
    out,
    parse_timestamp_ns,
    parse_txid,
    progress_bar,
    send_to_stdout,
)
from ltxkit.errors import EXIT_USAGE


class IntegrityMode(StrEnum):
    none = "none"
    quick = "quick"
    full = "full"


@guarded
def restore(
    replica: Annotated[
        str, typer.Argument(help="Replica: a directory, a file:// or an s3://bucket/path URL.", show_default=False)
    ],
    output: Annotated[
        Path,
        typer.Option(
            "--output",
            "-o",
            help="Database file to write; '-' writes it to standard output, which must be a pipe or a file.",
            show_default=False,
        ),
    ],
    txid: Annotated[
        str | None,
        typer.Option("--txid", help="Restore up to this TXID (hex, inclusive; 0: the latest, as Litestream)."),
    ] = None,
    timestamp: Annotated[
        str | None,
        typer.Option(
            "--timestamp",
            help="Restore the state as of this RFC 3339 time, zone included (Z or +hh:mm), to the "
            "nanosecond. As Litestream, a time before the first file or after the newest is refused; "
            "ltxkit also takes the millisecond just after the newest file, which restores the latest state.",
        ),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing output database.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the restore plan; write nothing.")] = False,
    integrity: Annotated[
        IntegrityMode, typer.Option("--integrity-check", help="Check the restored database before publishing it.")
    ] = IntegrityMode.none,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar or summary.")] = False,
    jobs: Annotated[
        int | None,
        typer.Option(
            "--jobs", "-j", min=1, max=MAX_JOBS, help="Processes that decode a large file (default: one per core)."
        ),
    ] = None,
) -> None:
    """Restore a database from a replica: the same bytes `litestream restore` writes.

    Uses Litestream's restore plan (newest level-9 snapshot at or below the target, then the
    files of levels 0..8 that carry the chain furthest). Every page comes from a file whose
    checksum was verified. The output is written to a temp file, fsynced and renamed into place:
    on any failure nothing is left at OUTPUT.

    Examples:  ltxkit restore /backups/app -o app.db
               ltxkit restore file:///backups/app -o app.db --txid 0000000000000042
               ltxkit restore /backups/app -o app.db --timestamp 2026-11-25T12:00:00Z
               ltxkit restore "s3://bucket/app?endpoint=http://127.0.0.1:8333" -o app.db
    """
    from ltxkit.replica.layout import LEGACY_GENERATIONS_NOTE, holds_legacy_generations
    from ltxkit.replica.storage import open_storage
    from ltxkit.restore import plan_for, restore_to_path
    from ltxkit.workers import default_jobs

    if txid is not None and timestamp is not None:
        raise Fail("use --txid or --timestamp, not both", EXIT_USAGE)
    target_txid = parse_txid(txid) or None  # TXID 0 is no target: the latest state, as Litestream takes it
    target_ns = parse_timestamp_ns(timestamp)
    output = local_output(output)
    to_stdout = str(output) == "-"
    if to_stdout and sys.stdout.isatty():
        raise Fail("-o -: standard output is a terminal; pipe it (| gzip > app.db.gz) or name a file", EXIT_USAGE)
    storage = open_storage(replica)
    top = storage.top_names()  # an object store: what exists below the root, in one request
    if holds_legacy_generations(storage, top=top):  # said even with --quiet: the restore may not be Litestream's
        err.print(f"ltxkit: warning: {replica}: {LEGACY_GENERATIONS_NOTE}", markup=False, highlight=False)
    with naming_the_replica(replica):
        plan = plan_for(storage, txid=target_txid, timestamp_ns=target_ns, top=top)
    if dry_run:
        from rich.table import Table

        rows = [(str(f.level), f"{f.min_txid:016x}", f"{f.max_txid:016x}", f"{f.size:,}", f.key) for f in plan]
        t = Table(title="restore plan", title_justify="left")
        widths = []
        for i, name in enumerate(("level", "min TXID", "max TXID", "bytes", "file")):
            widths.append(max(len(name), *(len(r[i]) for r in rows)))
            t.add_column(name, no_wrap=True, min_width=widths[-1])
        for row in rows:
            t.add_row(*row)
        # every TXID and key whole, whatever the terminal's (or a pipe's) width: a plan is read to
        # know which files a restore needs
        console = out.real()
        narrow = console.width
        console.width = max(narrow, sum(widths) + 3 * len(widths) + 1)
        try:
            out.print(t)
        finally:
            console.width = narrow
        out.print(f"would restore TXID {plan[-1].max_txid:016x} to {output}")
        return
    started = time.perf_counter()
    progress = progress_bar(not quiet, pages=True)
    with contextlib.ExitStack() as stack:
        target = output
        if to_stdout:  # a restore writes pages out of order: a file in $TMPDIR first, checked, then copied
            target = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="ltxkit-restore-"))) / "restored.db"
        restore = functools.partial(
            restore_to_path,
            storage,
            target,
            plan=plan,
            txid=target_txid,  # if a file of the plan is deleted meanwhile, the plan is made again
            timestamp_ns=target_ns,
            force=force,
            integrity=None if integrity == IntegrityMode.none else integrity.value,
            jobs=jobs or default_jobs(),
        )
        with naming_the_replica(replica):
            if progress is not None:
                with progress:
                    task = progress.add_task("restoring", total=sum(f.size for f in plan), pages=0)
                    result = restore(progress=lambda b, p: progress.update(task, completed=b, pages=p))
            else:
                result = restore()
        if to_stdout:
            send_to_stdout(target, "the database")
    if not quiet:
        checked = {
            IntegrityMode.none: "",
            IntegrityMode.quick: "; PRAGMA quick_check ran on it before it was published: ok",
            IntegrityMode.full: "; PRAGMA integrity_check ran on it before it was published: ok",
        }[integrity]
        where = "standard output" if to_stdout else output
        err.print(
            f"restored TXID {result.txid:016x} to {where}: {result.commit:,} pages of {result.page_size:,} bytes "
            f"from {len(result.plan):,} file{'' if len(result.plan) == 1 else 's'} "
            f"in {time.perf_counter() - started:.2f}s{checked}",
            markup=False,
            highlight=False,
        )


@contextlib.contextmanager
def naming_the_replica(replica: str) -> Iterator[None]:
    """A restore refused for the replica's data names the replica first (`ltxkit: REPLICA:
    txid-gap: ...`): the error itself names only a file inside it (`ltx/0/...`), and a CI log that
    restores several replicas must say which one failed."""
    from ltxkit.restore import RestoreError

    try:
        yield
    except RestoreError as exc:
        raise Fail(f"{replica}: {exc}", exc.exit_code) from exc
