"""`ltxkit inspect FILE`: one file's header, pages, index and trailer, verified as read."""

import json
from pathlib import Path
from typing import Annotated

import typer

from ltxkit.cli.common import FORMAT_HELP, JSON_HELP, Fail, TextOrJson, guarded, out, wants_json
from ltxkit.errors import EXIT_DEFECTS, EXIT_USAGE, LtxkitError


@guarded
def inspect(
    file: Annotated[
        str,
        typer.Argument(
            help="An .ltx file, or one object of a bucket: s3://bucket/path/0000/<min>-<max>.ltx?endpoint=...",
            show_default=False,
        ),
    ],
    fmt: Annotated[TextOrJson, typer.Option("--format", "-f", help=FORMAT_HELP)] = TextOrJson.text,
    as_json: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False,
    pages: Annotated[bool, typer.Option("--pages", help="List every page: pgno, offset, size.")] = False,
    page: Annotated[int | None, typer.Option("--page", help="Hex-dump one decoded page.", metavar="N", min=1)] = None,
) -> None:
    """Show an LTX file's header, pages, index and trailer, verifying it as it reads.

    Never writes anything. Defects are listed (exit 1); a file that cannot be read is exit 2.
    """
    from rich.table import Table

    from ltxkit.inspect import inspect_file, iso_ms

    found = inspect_file(file if file.startswith("s3://") else Path(file), page=page)
    if wants_json(fmt, as_json):
        out.print_json(json.dumps(found.to_json(pages=pages)))
    elif found.header is None:  # nothing to show but why: one line, as for any defect that stops a read
        raise LtxkitError(f"{file}: {found.defects[0]}")
    else:
        header, trailer = found.header, found.trailer
        t = Table(title=str(file), show_header=False, title_justify="left")
        t.add_column("field")
        t.add_column("value")
        for k, v in header.to_json().items():
            t.add_row(k, str(v))
        t.add_row("timestamp (UTC)", iso_ms(header.timestamp))
        t.add_row("kind", "snapshot" if header.is_snapshot else "increment")
        t.add_row("checksums tracked", "no" if header.no_checksum else "yes")
        if trailer:
            for k, v in trailer.to_json().items():
                t.add_row(k, v)
        t.add_row("pages", f"{len(found.index):,}")
        t.add_row("file size", f"{found.size:,}")
        out.print(t)
        if pages:
            pt = Table("pgno", "offset", "size")
            for e in found.index:
                pt.add_row(str(e.pgno), str(e.offset), str(e.size))
            out.print(pt)
        if found.page is not None:
            dump = found.page[1]
            for off in range(0, len(dump), 16):
                row = dump[off : off + 16]
                text = "".join(chr(b) if 32 <= b < 127 else "." for b in row)
                out.print(f"{off:08x}  {row.hex(' ')}  {text}", markup=False)
        for d in found.defects:
            out.print(f"[red]{d.code}[/red]: {d.message}" + (f" (byte {d.offset})" if d.offset is not None else ""))
    if page is not None and found.page is None and found.trailer is not None:
        raise Fail(f"{file}: page {page} is not in this file", EXIT_USAGE)  # the argument, not the data
    if not found.ok:
        raise typer.Exit(EXIT_DEFECTS)
