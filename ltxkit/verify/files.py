"""Per-file checks: decode one LTX file strictly (or, `quick`, only its ends) into a `FileCheck`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ltxkit.format.decoder import LTXReader, page_number_defects, read_header, read_page_index
from ltxkit.format.errors import FATAL_CODES, Code, LTXError
from ltxkit.format.schema import parse_filename
from ltxkit.verify.findings import FileCheck, Finding


def check_file(
    opener: Callable[[], Any], path: str, size: int, *, name: str | None, level: int | None, quick: bool
) -> FileCheck:
    """Check one file. `name` (its base name) enables the filename-mismatch check."""
    fc = FileCheck(path=path, level=level, size=size)

    def add(err: LTXError) -> None:
        ctx = dict(err.context)
        if err.offset is not None:
            ctx["offset"] = err.offset
        fc.findings.append(Finding(err.code, path, err.message, ctx))

    try:
        with opener() as stream:
            if quick:
                fc.header = read_header(stream)
                entries, fc.trailer = read_page_index(stream, size)
                fc.pgnos = [e.pgno for e in entries]
                for err in page_number_defects(fc.header, entries):
                    add(err)
            else:
                reader = LTXReader(stream, on_defect=add)
                fc.header = reader.header
                for pgno, _page in reader.pages():
                    fc.pgnos.append(pgno)
                assert reader.info is not None
                fc.trailer = reader.info.trailer
    except LTXError as err:
        add(err)
        fc.broken = err.code in FATAL_CODES
    except OSError as exc:
        fc.findings.append(Finding(Code.UNREADABLE, path, f"cannot read: {exc.strerror or exc}"))
        fc.broken = True
    if fc.header is not None and name is not None:
        parsed = parse_filename(name)
        if parsed is not None and parsed != (fc.header.min_txid, fc.header.max_txid):
            fc.findings.append(
                Finding(
                    Code.FILENAME_MISMATCH,
                    path,
                    f"name says TXIDs {parsed[0]:016x}-{parsed[1]:016x}, header holds "
                    f"{fc.header.min_txid:016x}-{fc.header.max_txid:016x}",
                    {"min_txid": fc.header.min_txid, "max_txid": fc.header.max_txid},
                )
            )
    return fc


def check_loose_file(path: Path, *, quick: bool) -> FileCheck:
    try:
        size = path.stat().st_size
    except OSError as exc:
        fc = FileCheck(path=str(path))
        fc.findings.append(Finding(Code.UNREADABLE, str(path), f"cannot read: {exc.strerror or exc}"))
        fc.broken = True
        return fc
    return check_file(lambda: path.open("rb"), str(path), size, name=path.name, level=None, quick=quick)
