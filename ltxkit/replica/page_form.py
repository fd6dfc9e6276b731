"""Which form a replica's pages take: LZ4 frames, as Litestream 0.5.15 and older write them and
the only form they read, or LZ4 blocks behind a size prefix (0.5.16 and later, which read both).

Files ltxkit adds to a replica (replicate's increments, compactions and snapshots, repair's new
snapshot) take the form of the file they continue, so the Litestream that wrote the replica can
still restore and continue it: a block-form file on top of a 0.5.15 replica is one that release
cannot decode ("no flags allowed"), and its restore fails. A new replica gets blocks.
"""

from __future__ import annotations

from collections.abc import Iterable

from ltxkit.format.schema import HEADER_SIZE, PAGE_HEADER_SIZE, pages_are_lz4_frames
from ltxkit.replica.layout import ReplicaFile
from ltxkit.replica.storage import Storage


def lz4_frames_at(storage: Storage, key: str) -> bool:
    """Does the file at `key` store its pages as LZ4 frames? (False when it cannot be read: the
    file checks name that; the default form is then the one every current Litestream reads.)"""
    try:
        return pages_are_lz4_frames(storage.read_range(key, 0, HEADER_SIZE + PAGE_HEADER_SIZE))
    except OSError:
        return False


def newest_uses_lz4_frames(storage: Storage, files: Iterable[ReplicaFile]) -> bool:
    """`lz4_frames_at` of the replica's newest file (the one a restore of the latest state ends
    with); False for an empty replica."""
    newest = max(files, key=lambda f: (f.max_txid, -f.level), default=None)
    return newest is not None and lz4_frames_at(storage, newest.key)
