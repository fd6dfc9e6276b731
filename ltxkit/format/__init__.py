"""The LTX format and nothing else: no files, no SQLite, no CLI.

Everything here takes bytes or a readable binary stream and returns values, so it can be driven
from tests, from a local directory or from object storage alike.
"""

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
