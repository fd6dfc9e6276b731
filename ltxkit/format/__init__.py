"""The LTX format and nothing else: no files, no SQLite, no CLI.

Everything here takes bytes or a readable binary stream and returns values, so it can be driven
from tests, from a local directory or from object storage alike.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ltxkit.format.checksum import (
        CHECKSUM_FLAG,
        crc64,
        database_checksum,
        page_checksum,
    )
    from ltxkit.format.decoder import FileInfo, LTXReader, decode_file, read_header, read_page_index
    from ltxkit.format.encoder import LTXWriter, encode_file
    from ltxkit.format.errors import Code, LTXError
    from ltxkit.format.schema import (
        FLAG_NO_CHECKSUM,
        HEADER_SIZE,
        TRAILER_SIZE,
        Header,
        IndexEntry,
        Trailer,
        format_filename,
        lock_pgno,
        parse_filename,
    )

__all__ = [
    "CHECKSUM_FLAG",
    "FLAG_NO_CHECKSUM",
    "HEADER_SIZE",
    "TRAILER_SIZE",
    "Code",
    "FileInfo",
    "Header",
    "IndexEntry",
    "LTXError",
    "LTXReader",
    "LTXWriter",
    "Trailer",
    "crc64",
    "database_checksum",
    "decode_file",
    "encode_file",
    "format_filename",
    "lock_pgno",
    "page_checksum",
    "parse_filename",
    "read_header",
    "read_page_index",
]


#: Where each name lives: imported on first use (PEP 562), so a command that needs one module of
#: the format (`ltxkit checksum` needs `checksum`) does not import the decoder and encoder too.
_WHERE = {
    "CHECKSUM_FLAG": "ltxkit.format.checksum",
    "crc64": "ltxkit.format.checksum",
    "database_checksum": "ltxkit.format.checksum",
    "page_checksum": "ltxkit.format.checksum",
    "FileInfo": "ltxkit.format.decoder",
    "LTXReader": "ltxkit.format.decoder",
    "decode_file": "ltxkit.format.decoder",
    "read_header": "ltxkit.format.decoder",
    "read_page_index": "ltxkit.format.decoder",
    "LTXWriter": "ltxkit.format.encoder",
    "encode_file": "ltxkit.format.encoder",
    "Code": "ltxkit.format.errors",
    "LTXError": "ltxkit.format.errors",
    "FLAG_NO_CHECKSUM": "ltxkit.format.schema",
    "HEADER_SIZE": "ltxkit.format.schema",
    "TRAILER_SIZE": "ltxkit.format.schema",
    "Header": "ltxkit.format.schema",
    "IndexEntry": "ltxkit.format.schema",
    "Trailer": "ltxkit.format.schema",
    "format_filename": "ltxkit.format.schema",
    "lock_pgno": "ltxkit.format.schema",
    "parse_filename": "ltxkit.format.schema",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
