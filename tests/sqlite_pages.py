"""Synthetic pages that still make a sound SQLite database, for replicas built without SQLite.

`ltxkit verify` checks content by default: it restores the latest state and runs SQLite's
`quick_check`. A synthetic replica whose pages are arbitrary bytes restores to "file is not a
database", so fixtures and unit-test replicas use this layout instead, which SQLite accepts for
any content on pages 3 and above:

- page 1: a database header (in-header size = commit, trusted) and an empty `sqlite_master`;
- page 2: the only freelist trunk page, listing pages 3..commit as free (leaf) pages;
- pages 3..commit: freelist leaves, whose bytes SQLite never reads, so any content is valid.

Pages 1 and 2 depend on the commit (and page 1 on a change counter), so a history that changes
the database size must rewrite both, as SQLite itself would.
"""

from __future__ import annotations

import struct

from ltxkit.format.schema import lock_pgno

HEADER_MAGIC = b"SQLite format 3\x00"


def _header(page_size: int, commit: int, change: int) -> bytes:
    free = max(commit - 1, 0)
    head = bytearray(100)
    head[:16] = HEADER_MAGIC
    struct.pack_into(">H", head, 16, 1 if page_size == 65536 else page_size)
    head[18], head[19] = 1, 1  # file format write / read versions (legacy: no WAL needed to open)
    head[20] = 0  # reserved bytes per page
    head[21], head[22], head[23] = 64, 32, 32  # payload fractions (fixed values)
    struct.pack_into(">I", head, 24, change)  # file change counter
    struct.pack_into(">I", head, 28, commit)  # in-header database size, valid: see offset 92
    struct.pack_into(">I", head, 32, 2 if free else 0)  # first freelist trunk page
    struct.pack_into(">I", head, 36, free)  # freelist pages
    struct.pack_into(">I", head, 44, 4)  # schema format
    struct.pack_into(">I", head, 56, 1)  # UTF-8
    struct.pack_into(">I", head, 92, change)  # version-valid-for: the in-header size is current
    struct.pack_into(">I", head, 96, 3_045_000)
    return bytes(head)


def header_page(page_size: int, commit: int, change: int) -> bytes:
    """Page 1: the header and an empty sqlite_master (a table b-tree leaf with no cells)."""
    page = bytearray(page_size)
    page[:100] = _header(page_size, commit, change)
    page[100] = 0x0D  # table b-tree leaf
    struct.pack_into(">H", page, 105, page_size & 0xFFFF)  # cell content area starts at the end
    return bytes(page)


def trunk_page(page_size: int, commit: int, salt: int = 0) -> bytes:
    """Page 2: the freelist trunk, listing 3..commit (minus the lock page); `salt` fills the
    bytes SQLite does not read, so two versions of the page differ."""
    lock = lock_pgno(page_size)
    leaves = [p for p in range(3, commit + 1) if p != lock]
    if len(leaves) > page_size // 4 - 2:
        raise ValueError(f"{commit} pages do not fit one freelist trunk of a {page_size}-byte page")
    page = bytearray((salt & 0xFF).to_bytes(1, "big") * page_size)
    struct.pack_into(f">II{len(leaves)}I", page, 0, 0, len(leaves), *leaves)
    return bytes(page)


def sound_page(pgno: int, page_size: int, commit: int, version: int, other: bytes) -> bytes:
    """Page `pgno` of a sound database of `commit` pages: pages 1 and 2 as above, else `other`."""
    if pgno == 1:
        return header_page(page_size, commit, version)
    if pgno == 2:
        return trunk_page(page_size, commit, version)
    return other
