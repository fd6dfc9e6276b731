"""`ltxkit verify PATH...`: every defect with a stable code, then the content check."""

import sys
from collections.abc import Sequence
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from ltxkit.cli.common import (
    JSON_HELP,
    MAX_JOBS,
    Fail,
    debug_traceback,
    err,
    guarded,
    local_output,
    out,
    progress_bar,
    wants_json,
)
from ltxkit.errors import EXIT_DEFECTS, EXIT_OK, EXIT_USAGE


class OutputFormat(StrEnum):
    text = "text"
    json = "json"
    junit = "junit"


class FailOn(StrEnum):
    error = "error"
    warning = "warning"


@guarded
def verify(
    paths: Annotated[
        list[str], typer.Argument(help="LTX files, replica directories, file:// or s3:// URLs.", show_default=False)
    ],
    fmt: Annotated[OutputFormat, typer.Option("--format", "-f", help="Report format.")] = OutputFormat.text,
    as_json: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write the report to FILE ('-': standard output).")
    ] = None,
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
        typer.Option(
            "--jobs",
            "-j",
            min=1,
            max=MAX_JOBS,
            help="Processes that decode a replica's files, or the spans of one large file (default: one per core).",
        ),
    ] = None,
    recursive: Annotated[
        bool,
        typer.Option("--recursive", "-r", help="Check every replica below each directory or s3:// prefix (a fleet)."),
    ] = False,
) -> None:
    """Name every defect in LTX files and replicas, each with a stable code.

    Checks each file (header, frames, LZ4 payloads, page order, index, trailer, checksums) and each
    replica (TXID chain, snapshots, growth pages, that the latest restore plan holds every page, and
    that compactions and snapshots hold the pages of the files they stand for), following
    Litestream's own restore plan. Never writes inside a replica.

    Then checks content: well-formed files can still restore to a corrupt database, so verify
    restores the latest restore point into a temporary file (in $TMPDIR, removed afterwards) and
    runs SQLite's PRAGMA quick_check on it. That costs one restore (about as long as
    `ltxkit restore`, and the database's size in temporary disk space). If it fails, verify
    searches the restore points and reports the last TXID that passes, the first that fails and
    the file that brought the damage in. --structure-only skips it and says so; --deep runs the
    full integrity_check.

    Examples:  ltxkit verify /backups/app.db-replica
               ltxkit verify file:///backups/app --format junit -o verify.xml
               ltxkit verify /backups/huge-replica --structure-only
               ltxkit verify s3://bucket/backups --recursive --format junit -o fleet.xml
    """
    from ltxkit.verify.engine import total_bytes, verify_paths
    from ltxkit.verify.findings import Severity
    from ltxkit.verify.report import render_json, render_junit, render_text
    from ltxkit.workers import default_jobs

    if wants_json(fmt.value, as_json):
        fmt = OutputFormat.json
    if output is not None:
        output = local_output(output)
    if output is not None and str(output) == "-":
        output = None  # `-o -`: the report goes to standard output, as without -o
    if output is not None:
        report_destination(output, paths)  # before the work: a report with nowhere to go is no run at all
    if quick and deep:
        raise Fail("--quick and --deep cannot be used together", EXIT_USAGE)
    if structure_only and deep:
        raise Fail("--structure-only and --deep cannot be used together", EXIT_USAGE)
    if quick and structure_only:  # one reads no page, the other decodes every page: say which
        raise Fail("--quick and --structure-only cannot be used together (--quick reads no page at all)", EXIT_USAGE)
    content = not (quick or structure_only)
    if recursive:
        from ltxkit.replica.discover import find_replicas

        expanded: list[str] = []
        for p in paths:
            found = find_replicas(p)
            if not found:
                raise Fail(f"{p}: no replica below it", EXIT_USAGE)
            expanded += found
        paths = expanded
    progress = progress_bar(fmt == OutputFormat.text and output is None)
    workers = jobs or default_jobs()
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
    severity = Severity(fail_on.value)
    if fmt == OutputFormat.text:
        if output is not None:
            import io

            from rich.console import Console

            buffer = io.StringIO()
            console = Console(file=buffer, highlight=False, width=200, soft_wrap=True, emoji=False)
            render_text(report, severity, console, fleet=recursive)
            write_report(output, buffer.getvalue())
        else:
            render_text(report, severity, out.real(), fleet=recursive)
    else:
        text = render_json(report, severity) if fmt == OutputFormat.json else render_junit(report, severity)
        if output is not None:
            write_report(output, text)
        else:
            sys.stdout.write(text)
    if output is not None:  # the report went to a file: say the verdict here, for the CI log
        err.print(f"ltxkit verify: {report.summary(severity)} (report in {output})", markup=False, highlight=False)
    for why, error in zip(report.unusable, report.unusable_errors, strict=True):
        debug_traceback(error)
        err.print(f"ltxkit: {why}", markup=False, highlight=False)
    if report.unusable:
        raise typer.Exit(EXIT_USAGE)
    raise typer.Exit(EXIT_DEFECTS if report.failed(severity) else EXIT_OK)


def report_destination(output: Path, inputs: Sequence[str] = ()) -> None:
    """Refuse a report path that cannot take the report, before any work is done: its directory
    must exist, and what is there already must be a regular file (replaced), or a pipe or a
    terminal (written to, `/dev/stdout` included) — never a directory or a symbolic link to a file
    (see `replaceable`).

    Nor may the report land on what verify checks or on user data: one of `inputs` or a file inside
    one (verify never writes in a replica), or an existing LTX file or SQLite database — a mistyped
    `-o app.db` must not replace the database with a report.
    """
    if _streamed(output):
        return
    from ltxkit.replica.storage import replaceable

    if not output.parent.is_dir():
        raise Fail(f"{output}: cannot write the report there: no such directory {output.parent}", EXIT_USAGE)
    replaceable(output)
    target = output.parent.resolve() / output.name
    for location in inputs:
        checked = _local_input(location)
        if checked is not None and (target == checked or checked in target.parents):
            why = f"refusing to write the report over or inside {location}, which verify checks"
            raise Fail(f"{output}: {why}", EXIT_USAGE)
    kind = _data_kind(output)
    if kind:
        raise Fail(f"{output}: refusing to replace {kind} with a report", EXIT_USAGE)


def _local_input(location: str) -> Path | None:
    """The resolved local path `verify` reads for `location` (None for s3:// or an unusable URL)."""
    from ltxkit.replica.storage import ReplicaNotFound, local_path

    try:
        return None if location.startswith("s3://") else local_path(location).resolve()
    except (ReplicaNotFound, OSError, RuntimeError):
        return None


def _data_kind(path: Path) -> str:
    """What user data an existing file at `path` holds, by its first bytes ('' for none we know)."""
    from ltxkit.format.schema import MAGIC as LTX_MAGIC
    from ltxkit.sqlite import SQLITE_MAGIC

    try:
        with open(path, "rb") as fh:
            head = fh.read(len(SQLITE_MAGIC))
    except OSError:
        return ""
    if head.startswith(SQLITE_MAGIC):
        return "a SQLite database"
    if head.startswith(LTX_MAGIC):
        return "an LTX file"
    return ""


def write_report(output: Path, text: str) -> None:
    """The report, whole or not at all: a file is replaced atomically (temp, fsync, rename), so a
    CI job never publishes half a JUnit file; a pipe or a terminal is written to as it is."""
    if _streamed(output):
        with open(output, "w", encoding="utf-8") as fh:
            fh.write(text)
        return
    from ltxkit.replica.storage import atomic_output

    with atomic_output(output, replace=True) as fh:
        fh.write(text.encode("utf-8"))


def _streamed(output: Path) -> bool:
    """Is `output` (links followed) a pipe or a character device, which takes a report as a stream?"""
    import os
    import stat

    try:
        mode = os.stat(output).st_mode
    except OSError:
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISCHR(mode)
