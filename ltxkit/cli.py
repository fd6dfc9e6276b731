"""The `ltxkit` command line: a thin shell over the library.

Exit codes everywhere: 0 success / clean, 1 defects found or the operation was refused for a
reason about the data, 2 could not run (bad arguments, unreadable paths). Errors are one line,
naming the file and the problem; `--debug` shows the traceback instead.

No `from __future__ import annotations` here: typer reads every command's annotations on each
run, and string annotations would be compiled again each time (~20 ms of every command).
"""

import functools
import json
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from ltxkit import __version__
from ltxkit.errors import EXIT_DEFECTS, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, LtxkitError

if TYPE_CHECKING:  # imported where used: every module loaded here is start-up time of every command
    from rich.console import Console
    from rich.progress import Progress

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
    help="Read, check, restore, repair and produce LTX replicas (LTX v3, as Litestream 0.5.x writes it).\n\n"
    "Typical use: [bold]ltxkit verify REPLICA[/bold] in CI or cron; "
    "[bold]ltxkit restore REPLICA -o DB[/bold] when you need the data back; "
    "[bold]ltxkit repair REPLICA --rebuild-snapshot --from-db DB[/bold] when verify fails.",
)


class _LazyConsole:
    """A rich Console made on first use: importing rich costs ~30 ms that `restore --quiet` never needs."""

    def __init__(self, **options: Any) -> None:
        self._options = options
        self._console: Console | None = None

    def real(self) -> "Console":
        if self._console is None:
            from rich.console import Console

            self._console = Console(**self._options)
        return self._console

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real(), name)


out = _LazyConsole(highlight=False, soft_wrap=True)
err = _LazyConsole(stderr=True, highlight=False, soft_wrap=True)
_state = {"debug": False}

F = TypeVar("F", bound=Callable[..., Any])


class Fail(LtxkitError):
    """A one-line failure for the user, with its exit code."""

    def __init__(self, message: str, code: int = EXIT_DEFECTS) -> None:
        super().__init__(message, exit_code=code)


def _ask(question: str) -> str | None:
    """A person's answer on the terminal: "" for Ctrl-D (no), None for Ctrl-C (interrupted)."""
    try:
        return input(question)
    except EOFError:
        print(file=sys.stderr)
        return ""
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return None


def one_line(exc: BaseException) -> tuple[str, int]:
    """The line a failure ends a command with, and its exit code (`ltxkit.errors`)."""
    if isinstance(exc, LtxkitError):
        return str(exc), exc.exit_code
    if isinstance(exc, OSError):
        where = f"{exc.filename}: " if exc.filename else ""
        return f"{where}{exc.strerror or exc}", EXIT_USAGE
    if isinstance(exc, (KeyboardInterrupt, typer.Abort)):
        return "interrupted", EXIT_INTERRUPTED
    return f"internal error: {type(exc).__name__}: {exc} (run with --debug for details)", EXIT_USAGE


def guarded(fn: F) -> F:
    """Turn every failure into one line on stderr and an exit code; no tracebacks (but --debug)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except typer.Exit:
            raise
        except (Exception, KeyboardInterrupt) as exc:
            if _state["debug"]:
                raise
            msg, code = one_line(exc)
            err.print(f"ltxkit: {msg}", markup=False)
            raise typer.Exit(code) from None

    return wrapper  # type: ignore[return-value]  # functools.wraps keeps fn's signature; mypy sees only (*args)


def _version(value: bool) -> None:
    if value:
        out.print(f"ltxkit {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks instead of one-line errors.")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    _state["debug"] = debug


def _progress(enabled: bool, *, pages: bool = False) -> "Progress | None":
    """A progress bar on stderr, only when stderr is a terminal (never in logs or pipes)."""
    if not enabled or not sys.stderr.isatty():
        return None
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

    extra = [TextColumn("{task.fields[pages]:,} pages")] if pages else []
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        *extra,
        TimeRemainingColumn(),
        console=err.real(),
        transient=True,
    )


def parse_txid(text: str | None) -> int | None:
    if text is None:
        return None
    t = text.lower().removeprefix("0x")
    if not t or len(t) > 16 or any(c not in "0123456789abcdef" for c in t):
        raise Fail(f"--txid {text!r}: expected a hex TXID such as 0000000000000042", EXIT_USAGE)
    return int(t, 16)


def parse_timestamp_ms(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        ts = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise Fail(
            f"--timestamp {text!r}: expected an RFC 3339 time such as 2026-01-02T15:04:05Z", EXIT_USAGE
        ) from None
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    return int(ts.timestamp() * 1000)


def _iso_ms(ms: int) -> str:
    try:
        return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    except (OverflowError, OSError, ValueError):
        return "invalid"


# ---- inspect ------------------------------------------------------------------------------------


@app.command()
@guarded
def inspect(
    file: Annotated[Path, typer.Argument(help="An .ltx file.", show_default=False)],
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    pages: Annotated[bool, typer.Option("--pages", help="List every page: pgno, offset, size.")] = False,
    page: Annotated[int | None, typer.Option("--page", help="Hex-dump one decoded page.", metavar="N")] = None,
) -> None:
    """Show an LTX file's header, pages, index and trailer, verifying it as it reads.

    Exit 0 when the file is sound, 1 when it has defects (listed), 2 when it cannot be read.
    Never writes anything.
    """
    from rich.table import Table

    from ltxkit.format.decoder import LTXReader
    from ltxkit.format.errors import LTXError

    if file.is_dir():
        raise Fail(f"{file}: is a directory, not an .ltx file (use `ltxkit verify` for a replica)", EXIT_USAGE)
    if not file.is_file():
        raise Fail(f"{file}: no such file", EXIT_USAGE)
    defects: list[LTXError] = []
    fatal: LTXError | None = None
    dump: bytes | None = None
    header = trailer = None
    index: list[Any] = []
    size = file.stat().st_size
    with file.open("rb") as stream:
        try:
            reader = LTXReader(stream, on_defect=defects.append)
            header = reader.header
            for pgno, data in reader.pages():
                if page is not None and pgno == page:
                    dump = data
            assert reader.info is not None
            trailer, index = reader.info.trailer, reader.info.index
        except LTXError as exc:
            fatal = exc
    if header is None and fatal is not None:
        raise Fail(f"{file}: {fatal}")
    problems = [*defects, *([fatal] if fatal else [])]
    if as_json:
        doc: dict[str, Any] = {
            "path": str(file),
            "size": size,
            "header": header.to_json() if header else None,
            "timestamp_iso": _iso_ms(header.timestamp) if header else None,
            "is_snapshot": header.is_snapshot if header else None,
            "trailer": trailer.to_json() if trailer else None,
            "page_count": len(index),
            "ok": not problems,
            "defects": [{"code": str(d.code), "message": d.message, "offset": d.offset, **d.context} for d in problems],
        }
        if pages:
            doc["pages"] = [{"pgno": e.pgno, "offset": e.offset, "size": e.size} for e in index]
        if dump is not None:
            doc["page"] = {"pgno": page, "hex": dump.hex()}
        out.print_json(json.dumps(doc))
    else:
        assert header is not None
        t = Table(title=str(file), show_header=False, title_justify="left")
        t.add_column("field")
        t.add_column("value")
        for k, v in header.to_json().items():
            t.add_row(k, str(v))
        t.add_row("timestamp (UTC)", _iso_ms(header.timestamp))
        t.add_row("kind", "snapshot" if header.is_snapshot else "increment")
        t.add_row("checksums tracked", "no" if header.no_checksum else "yes")
        if trailer:
            for k, v in trailer.to_json().items():
                t.add_row(k, v)
        t.add_row("pages", str(len(index)))
        t.add_row("file size", f"{size:,}")
        out.print(t)
        if pages:
            pt = Table("pgno", "offset", "size")
            for e in index:
                pt.add_row(str(e.pgno), str(e.offset), str(e.size))
            out.print(pt)
        if dump is not None:
            for off in range(0, len(dump), 16):
                row = dump[off : off + 16]
                text = "".join(chr(b) if 32 <= b < 127 else "." for b in row)
                out.print(f"{off:08x}  {row.hex(' ')}  {text}", markup=False)
        for d in problems:
            out.print(f"[red]{d.code}[/red]: {d.message}" + (f" (byte {d.offset})" if d.offset is not None else ""))
    if page is not None and dump is None and fatal is None:
        raise Fail(f"{file}: page {page} is not in this file")
    if problems:
        raise typer.Exit(EXIT_DEFECTS)


# ---- verify -------------------------------------------------------------------------------------


class OutputFormat(StrEnum):
    text = "text"
    json = "json"
    junit = "junit"


class FailOn(StrEnum):
    error = "error"
    warning = "warning"


@app.command()
@guarded
def verify(
    paths: Annotated[
        list[str], typer.Argument(help="LTX files, replica directories or file:// URLs.", show_default=False)
    ],
    fmt: Annotated[OutputFormat, typer.Option("--format", "-f", help="Report format.")] = OutputFormat.text,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write the report to FILE.")] = None,
    fail_on: Annotated[FailOn, typer.Option("--fail-on", help="Lowest severity that makes the exit code 1.")] = (
        FailOn.error
    ),
    quick: Annotated[
        bool,
        typer.Option(
            "--quick", help="Headers, indexes, trailers and the chain only: no page is read, no content check."
        ),
    ] = (False),
    structure_only: Annotated[
        bool,
        typer.Option(
            "--structure-only",
            help="Decode and check every file and the chain, but skip the content check (for very large replicas).",
        ),
    ] = False,
    deep: Annotated[
        bool,
        typer.Option("--deep", help="Content check with the full PRAGMA integrity_check instead of quick_check."),
    ] = False,
    jobs: Annotated[
        int | None,
        typer.Option("--jobs", "-j", min=1, help="Processes that decode a replica's files (default: one per core)."),
    ] = None,
) -> None:
    """Name every defect in LTX files and replicas, each with a stable code.

    Checks each file (header, frames, LZ4 payloads, page order, index, trailer, checksums) and each
    replica (TXID chain, snapshots, growth pages, and that the latest restore plan holds every page),
    following Litestream's own restore plan. Never writes inside a replica.

    Then checks content: well-formed files can still restore to a corrupt database, so verify
    restores the latest restore point into a temporary file (in $TMPDIR, removed afterwards) and
    runs SQLite's PRAGMA quick_check on it. That costs one restore (about as long as
    `ltxkit restore`, and the database's size in temporary disk space). If it fails, verify
    searches the restore points and reports the last TXID that passes, the first that fails and
    the file that brought the damage in. --structure-only skips it and says so; --deep runs the
    full integrity_check.

    Exit 0 clean, 1 defects at or above --fail-on, 2 could not run.

    Examples:  ltxkit verify /backups/app.db-replica
               ltxkit verify file:///backups/app --format junit -o verify.xml
               ltxkit verify /backups/huge-replica --structure-only
    """
    from ltxkit.verify.engine import VerifyUsageError, total_bytes, verify_paths
    from ltxkit.verify.findings import Severity
    from ltxkit.verify.report import render_json, render_junit, render_text
    from ltxkit.workers import default_jobs

    if quick and deep:
        raise Fail("--quick and --deep cannot be used together", EXIT_USAGE)
    if structure_only and deep:
        raise Fail("--structure-only and --deep cannot be used together", EXIT_USAGE)
    content = not (quick or structure_only)
    progress = _progress(fmt == OutputFormat.text and output is None)
    workers = jobs or default_jobs()
    try:
        if progress is not None:
            with progress:
                task = progress.add_task("verifying", total=total_bytes(paths))
                report = verify_paths(
                    paths,
                    quick=quick,
                    content=content,
                    deep=deep,
                    jobs=workers,
                    progress=lambda _p, n: progress.advance(task, n),
                    note=lambda line: progress.update(task, description=line),
                )
        else:
            report = verify_paths(paths, quick=quick, content=content, deep=deep, jobs=workers)
    except VerifyUsageError as exc:
        raise Fail(str(exc), EXIT_USAGE) from None
    severity = Severity(fail_on.value)
    if fmt == OutputFormat.text:
        if output is not None:
            with output.open("w") as fh:
                from rich.console import Console

                render_text(report, severity, Console(file=fh, highlight=False, width=200, soft_wrap=True))
        else:
            render_text(report, severity, out.real())
    else:
        text = render_json(report, severity) if fmt == OutputFormat.json else render_junit(report, severity)
        if output is not None:
            output.write_text(text)
        else:
            sys.stdout.write(text)
    raise typer.Exit(EXIT_DEFECTS if report.failed(severity) else EXIT_OK)


# ---- restore ------------------------------------------------------------------------------------


class IntegrityMode(StrEnum):
    none = "none"
    quick = "quick"
    full = "full"


@app.command()
@guarded
def restore(
    replica: Annotated[str, typer.Argument(help="Replica directory or file:// URL.", show_default=False)],
    output: Annotated[Path, typer.Option("--output", "-o", help="Database file to write.", show_default=False)],
    txid: Annotated[str | None, typer.Option("--txid", help="Restore up to this TXID (hex, inclusive).")] = None,
    timestamp: Annotated[
        str | None, typer.Option("--timestamp", help="Restore the state as of this RFC 3339 time.")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing output database.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the restore plan; write nothing.")] = False,
    integrity: Annotated[
        IntegrityMode, typer.Option("--integrity-check", help="Check the restored database before publishing it.")
    ] = IntegrityMode.none,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar or summary.")] = False,
    jobs: Annotated[
        int | None,
        typer.Option("--jobs", "-j", min=1, help="Processes that decode a large file (default: one per core)."),
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
    """
    from ltxkit.replica.storage import open_storage
    from ltxkit.restore import plan_for, restore_to_path
    from ltxkit.workers import default_jobs

    if txid is not None and timestamp is not None:
        raise Fail("use --txid or --timestamp, not both", EXIT_USAGE)
    target_txid = parse_txid(txid)
    target_ms = parse_timestamp_ms(timestamp)
    storage = open_storage(replica)
    plan = plan_for(storage, txid=target_txid, timestamp_ms=target_ms)
    if dry_run:
        from rich.table import Table

        t = Table("level", "min TXID", "max TXID", "bytes", "file", title="restore plan", title_justify="left")
        for f in plan:
            t.add_row(str(f.level), f"{f.min_txid:016x}", f"{f.max_txid:016x}", f"{f.size:,}", f.key)
        out.print(t)
        out.print(f"would restore TXID {plan[-1].max_txid:016x} to {output}")
        return
    started = time.perf_counter()
    progress = _progress(not quiet, pages=True)
    restore = functools.partial(
        restore_to_path,
        storage,
        output,
        plan=plan,
        force=force,
        integrity=None if integrity == IntegrityMode.none else integrity.value,
        jobs=jobs or default_jobs(),
    )
    if progress is not None:
        with progress:
            task = progress.add_task("restoring", total=sum(f.size for f in plan), pages=0)
            result = restore(progress=lambda b, p: progress.update(task, completed=b, pages=p))
    else:
        result = restore()
    if not quiet:
        err.print(
            f"restored TXID {result.txid:016x} to {output}: {result.commit} pages of {result.page_size} bytes "
            f"from {len(plan)} file(s) in {time.perf_counter() - started:.2f}s"
        )


# ---- snapshot / checksum ----------------------------------------------------------------------


@app.command()
@guarded
def snapshot(
    db: Annotated[Path, typer.Argument(help="A SQLite database (may be live, WAL mode).", show_default=False)],
    output: Annotated[Path, typer.Option("--output", "-o", help="LTX file to write.", show_default=False)],
    txid: Annotated[str, typer.Option("--txid", help="TXID the snapshot carries (hex).")] = "1",
    force: Annotated[bool, typer.Option("--force", help="Replace an existing output file.")] = False,
    checksums: Annotated[
        bool,
        typer.Option(
            "--checksums/--no-checksums",
            help="Track the database checksum (default). Use --no-checksums for a file you will put in a "
            "Litestream 0.5.x replica: Litestream cannot restore a tracked file that ends its restore plan.",
        ),
    ] = True,
) -> None:
    """Encode a database as an LTX snapshot, from one consistent read.

    The read happens inside one transaction holding the write lock, WAL content included, so a
    live database gives a consistent file. The file is verified before it is published.
    With checksum tracking (the default) its post-apply checksum equals `ltxkit checksum DB`.
    """
    from ltxkit.snapshot import write_snapshot_file

    max_txid = parse_txid(txid)
    assert max_txid is not None
    if max_txid < 1:
        raise Fail("--txid must be at least 1", EXIT_USAGE)
    info = write_snapshot_file(db, output, max_txid=max_txid, checksums=checksums, replace=force)
    err.print(
        f"wrote {output}: snapshot TXID {max_txid:016x}, {info.commit} pages of {info.page_size} bytes"
        + (f", post-apply checksum {info.post_apply_checksum:016x}" if checksums else ", no checksum tracking")
    )


@app.command()
@guarded
def checksum(
    db: Annotated[Path, typer.Argument(help="A SQLite database (may be live, WAL mode).", show_default=False)],
    as_json: Annotated[bool, typer.Option("--json", help="Also print page size and page count as JSON.")] = False,
) -> None:
    """Print a database's LTX checksum (what a snapshot's post-apply checksum would be)."""
    from ltxkit.sqlite import consistent_view

    with consistent_view(db) as view:
        value = view.checksum()
        page_size, commit = view.page_size, view.commit
    if as_json:
        out.print_json(
            json.dumps({"path": str(db), "checksum": f"{value:016x}", "page_size": page_size, "commit": commit})
        )
    else:
        out.print(f"{value:016x}")


def main() -> None:
    app()


# ---- repair -------------------------------------------------------------------------------------


@app.command()
@guarded
def repair(
    replica: Annotated[str, typer.Argument(help="Replica directory or file:// URL.", show_default=False)],
    rebuild_snapshot: Annotated[
        bool, typer.Option("--rebuild-snapshot", help="Build a new verified snapshot so the replica restores again.")
    ] = False,
    from_db: Annotated[
        Path | None, typer.Option("--from-db", help="Build it from this live database (best: loses nothing).")
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print what would be built and moved; change nothing.")] = (
        False
    ),
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask before moving files.")] = False,
) -> None:
    """Make a broken replica restorable again. Deletes nothing.

    Repair verifies the replica first, content included: a replica whose files are sound but
    whose restores fail SQLite's quick_check is repaired too, and the files from the first bad
    restore point on are moved aside.

    With --from-db, one consistent read of the live database becomes a new snapshot above every
    TXID in the replica (the database must pass integrity_check and have the replica's page
    size). Without it, the snapshot is rebuilt from the newest healthy snapshot and the healthy
    files after it (up to the last restore point that passes the content check), and the TXIDs
    that can no longer be restored are named.
    Damaged files, and files that would keep verify failing, move to REPLICA/quarantine/<time>/
    with a manifest.json saying why. Every new file is verified before it is published.

    Stop Litestream before repairing; start it again afterwards. Repair backs out if the replica
    changes while it works.

    Example:  ltxkit repair /backups/app --rebuild-snapshot --from-db /srv/app.db
    """
    from ltxkit.repair import RepairError, apply_repair, discard, plan_repair
    from ltxkit.replica.storage import open_storage

    if not rebuild_snapshot:
        raise Fail("say what to do: --rebuild-snapshot (the only repair so far)", EXIT_USAGE)
    storage = open_storage(replica)
    if from_db is not None and not from_db.is_file():
        raise Fail(f"{from_db}: no such database file", EXIT_USAGE)
    try:
        plan = plan_repair(storage, from_db=from_db)
    except RepairError as exc:
        raise Fail(f"{replica}: {exc}") from None
    if not plan.needed:
        out.print(f"{replica}: verify finds no errors; nothing to repair, nothing changed")
        return
    out.print(f"[bold]repair plan for {replica}[/bold]")
    if plan.before.content is not None and not plan.before.content.ok:
        from ltxkit.verify.report import content_line

        out.print(f"  content: {content_line(plan.before)}", markup=False)
    out.print(f"  new snapshot TXID {plan.txid:016x}, built from {plan.source}")
    for nf in plan.new_files:
        out.print(f"  publish  {nf.key}", markup=False)
    for key, why in sorted(plan.quarantine.items()):
        out.print(f"  move     {key} -> quarantine/ ({', '.join(sorted({str(f.code) for f in why}))})", markup=False)
    if plan.lost:
        out.print(
            f"  [yellow]lost[/yellow]: TXIDs {plan.lost[0]:016x}..{plan.lost[1]:016x} cannot be restored "
            "(use --from-db to keep the latest state)"
        )
    if dry_run:
        discard(plan)
        out.print("dry run: nothing changed")
        return
    if not yes:
        if not sys.stdin.isatty():
            discard(plan)
            raise Fail("not a terminal: pass --yes to apply the repair", EXIT_USAGE)
        answer = _ask("apply this repair? [y/N]: ")
        if answer is None or answer.strip().lower() not in ("y", "yes"):
            discard(plan)
            out.print("nothing changed")
            raise typer.Exit(EXIT_INTERRUPTED if answer is None else EXIT_DEFECTS)
    try:
        result = apply_repair(storage, plan)
    except RepairError as exc:
        raise Fail(f"{replica}: {exc}; everything was put back") from None
    if result.quarantine is not None:
        where = f"{storage.label.rstrip('/')}/{result.quarantine}"
        out.print(f"moved {len(plan.quarantine)} file(s) to {where} (see manifest.json there)", markup=False)
    after = result.after
    errors = (
        []
        if after is None
        else [f for f in after.findings if f.severity == "error"]
        + [f for fc in after.files for f in fc.findings if f.severity == "error"]
    )
    if errors:
        raise Fail(f"{replica}: still failing after repair: {errors[0].code}: {errors[0].message}")
    out.print(f"[green]repaired[/green]: latest restorable TXID {plan.txid:016x}; `ltxkit verify {replica}` passes")
    out.print("next: start Litestream again; it continues above the new snapshot")
