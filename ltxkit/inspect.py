"""`inspect_file`: what one LTX file holds and what is wrong with it, decoded strictly, as data.

`ltxkit inspect` prints this; a program can use it directly. Nothing is written.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

from ltxkit.errors import UsageError
from ltxkit.format.decoder import LTXReader
from ltxkit.format.errors import LTXError
from ltxkit.format.schema import Header, IndexEntry, Trailer


def iso_ms(ms: int) -> str:
    """A header timestamp (ms since the epoch) as RFC 3339 UTC, or "invalid"."""
    try:
        return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    except (OverflowError, OSError, ValueError):
        return "invalid"


@dataclass(slots=True)
class Inspection:
    """A decoded file: header, trailer and index as far as they could be read, and every defect."""

    path: Path | str  # a local file, or an s3:// object's URL
    size: int
    header: Header | None  # None: not even the header decodes (the one defect says why)
    trailer: Trailer | None = None
    index: list[IndexEntry] = field(default_factory=list)
    defects: list[LTXError] = field(default_factory=list)  # the semantic ones, then a fatal one last
    page: tuple[int, bytes] | None = None  # the page asked for, decoded

    @property
    def ok(self) -> bool:
        return not self.defects

    def to_json(self, *, pages: bool = False) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "path": str(self.path),
            "size": self.size,
            "header": self.header.to_json() if self.header else None,
            "timestamp_iso": iso_ms(self.header.timestamp) if self.header else None,
            "is_snapshot": self.header.is_snapshot if self.header else None,
            "trailer": self.trailer.to_json() if self.trailer else None,
            "page_count": len(self.index),
            "ok": self.ok,
            "defects": [
                {"code": str(d.code), "message": d.message, "offset": d.offset, **d.context} for d in self.defects
            ],
        }
        if pages:
            doc["pages"] = [{"pgno": e.pgno, "offset": e.offset, "size": e.size} for e in self.index]
        if self.page is not None:
            doc["page"] = {"pgno": self.page[0], "hex": self.page[1].hex()}
        return doc


def inspect_file(path: Path | str, *, page: int | None = None) -> Inspection:
    """Decode `path` strictly, collecting every defect; keep page `page` if asked.

    `path` is a local file or one object of a bucket (`s3://bucket/path/file.ltx?endpoint=...`,
    the query options of a replica URL). Raises `UsageError` when there is no file to read; every
    defect is in the result, down to a header that does not decode (then `header` is None).
    """
    if isinstance(path, str) and path.startswith("s3://"):
        return _inspect_object(path, page)
    path = Path(path)
    if path.is_dir():
        raise UsageError(f"{path}: is a directory, not an .ltx file (use `ltxkit verify` for a replica)")
    if not path.is_file():
        raise UsageError(f"{path}: no such file")
    with path.open("rb") as stream:
        return _inspect_stream(stream, path, path.stat().st_size, page)


def _inspect_object(url: str, page: int | None) -> Inspection:
    from ltxkit.replica.s3 import open_object

    storage, name, size = open_object(url)
    with storage.open(name, size=size) as stream:
        return _inspect_stream(stream, url, size, page)


def _inspect_stream(stream: BinaryIO, path: Path | str, size: int, page: int | None) -> Inspection:
    stream.seek(0)
    defects: list[LTXError] = []
    try:
        reader = LTXReader(stream, on_defect=defects.append)
    except LTXError as exc:
        return Inspection(path, size, None, defects=[exc])
    found = Inspection(path, size, reader.header, defects=defects)
    try:
        for pgno, data in reader.pages():
            if pgno == page:
                found.page = (pgno, data)
        assert reader.info is not None
        found.trailer, found.index = reader.info.trailer, reader.info.index
    except LTXError as exc:
        defects.append(exc)
    return found
