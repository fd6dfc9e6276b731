"""Struct formats derived from `ltxkit/format/declaration.py`. Generated: do not edit.

Written by `make layout` (python -m ltxkit.format.declaration); tests/test_schema.py fails
while it differs from what the declarations give."""

HEADER_FORMAT = ">4sLLLQQqQqqLLQ20s"
HEADER_FIELDS = (
    "magic",
    "flags",
    "page_size",
    "commit",
    "min_txid",
    "max_txid",
    "timestamp",
    "pre_apply_checksum",
    "wal_offset",
    "wal_size",
    "wal_salt1",
    "wal_salt2",
    "node_id",
    "reserved",
)
PAGE_HEADER_FORMAT = ">LH"
PAGE_HEADER_FIELDS = (
    "pgno",
    "flags",
)
SIZE_PREFIX_FORMAT = ">L"
SIZE_PREFIX_FIELDS = ("size",)
INDEX_SIZE_FIELD_FORMAT = ">Q"
INDEX_SIZE_FIELD_FIELDS = ("index_size",)
TRAILER_FORMAT = ">QQ"
TRAILER_FIELDS = (
    "post_apply_checksum",
    "file_checksum",
)
