"""`ltxkit snapshot DB -o FILE` and `ltxkit checksum DB`: one consistent read of a live database."""

import json
from pathlib import Path
from typing import Annotated

import typer

from ltxkit.cli.common import (
    JSON_HELP,
    MAX_JOBS,
    Fail,
    TextOrJson,
    err,
    guarded,
    local_output,
    out,
    parse_txid,
    say_when_waiting,
    send_to_stdout,
    wants_json,
)
from ltxkit.errors import EXIT_USAGE


@guarded
def snapshot(
    db: Annotated[Path, typer.Argument(help="A SQLite database (may be live, WAL mode).", show_default=False)],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="LTX file to write; - for standard output.", show_default=False)
    ],
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

    say_when_waiting()
    max_txid = parse_txid(txid)
    assert max_txid is not None
    if max_txid < 1:
        raise Fail("--txid must be at least 1", EXIT_USAGE)
    output = local_output(output)
    if str(output) == "-":  # verified in a temporary file first, then sent whole
        import sys
        import tempfile

        if sys.stdout.isatty():
            raise Fail("-o -: standard output is a terminal; pipe it or name a file", EXIT_USAGE)
        with tempfile.TemporaryDirectory(prefix="ltxkit-snapshot-") as scratch:
            staged = Path(scratch) / "snapshot.ltx"
            info = write_snapshot_file(db, staged, max_txid=max_txid, checksums=checksums)
            send_to_stdout(staged, "the snapshot")
        where = "standard output"
    else:
        info = write_snapshot_file(db, output, max_txid=max_txid, checksums=checksums, replace=force)
        where = str(output)
    err.print(
        f"wrote {where}: snapshot TXID {max_txid:016x}, {info.commit:,} pages of {info.page_size:,} bytes"
        + (f", post-apply checksum {info.post_apply_checksum:016x}" if checksums else ", no checksum tracking")
    )


@guarded
def checksum(
    db: Annotated[Path, typer.Argument(help="A SQLite database (may be live, WAL mode).", show_default=False)],
    fmt: Annotated[
        TextOrJson, typer.Option("--format", "-f", help="Output format (json: also page size and page count).")
    ] = TextOrJson.text,
    as_json: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False,
    jobs: Annotated[
        int | None,
        typer.Option(
            "--jobs", "-j", min=1, max=MAX_JOBS, help="Processes that hash a large database (default: one per core)."
        ),
    ] = None,
) -> None:
    """Print a database's LTX checksum (what a snapshot's post-apply checksum would be).

    Reads one consistent state (WAL included) without changing the database or its -wal: both
    stay byte-identical. The -shm (SQLite's index of the WAL, never part of the data) may be
    rewritten, as any reader of the database may rewrite it.
    """
    from ltxkit.sqlite import consistent_view
    from ltxkit.workers import default_jobs

    say_when_waiting()
    with consistent_view(db) as view:
        value = view.checksum(jobs=jobs or default_jobs())
        page_size, commit = view.page_size, view.commit
    if wants_json(fmt, as_json):
        out.plain(
            json.dumps(
                {"path": str(db), "checksum": f"{value:016x}", "page_size": page_size, "commit": commit}, indent=2
            )
        )
    else:
        out.plain(f"{value:016x}")
