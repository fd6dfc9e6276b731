"""The one way the replicator makes a file visible: build it in the storage's staging area, fsync
it, let `check` prove it (raising stops everything), then publish it create-only. Whatever
happens, the staging directory goes; a file that was not proven never reaches the replica."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

from ltxkit.format.encoder import LTXWriter
from ltxkit.format.schema import Header
from ltxkit.replica.storage import Storage


class Published(NamedTuple):
    size: int
    file_checksum: int
    tag: str | None  # the storage's version tag of the object (S3's ETag); None where it has none


class TakenByAnother(FileExistsError):
    """`key` exists and is not the file built here: another replicator published it first."""


#: what `file_checksum_at` gives for an object shorter than the file asked about: no checksum is negative
SHORTER = -1


def file_checksum_at(storage: Storage, key: str, size: int) -> int | None:
    """The file checksum the object at `key` ends with, taken as a `size`-byte LTX file (its last 8
    bytes); None when it is gone, `SHORTER` when it is there but shorter (another file: it was
    replaced, not removed). How the replicator tells its own published file from one another
    replicator put under the same name: same TXIDs, different bytes."""
    try:
        tail = storage.read_range(key, size - 8, 8)
    except FileNotFoundError:
        return None
    return int.from_bytes(tail, "big") if len(tail) == 8 else SHORTER


def build_and_publish(
    storage: Storage,
    key: str,
    header: Header,
    write: Callable[[LTXWriter], None],
    check: Callable[[Path], None],
    *,
    created_ms: int,
    lz4_frames: bool = False,
) -> Published:
    """Publish the file `write` builds under `key` once `check(path)` returned; its pages are LZ4
    frames with `lz4_frames` (`ltxkit.replica.page_form`)."""
    staging = storage.make_staging()
    try:
        path = staging / key.rsplit("/", 1)[-1]
        with open(path, "xb") as fh:
            writer = LTXWriter(fh, header, lz4_frames=lz4_frames)
            write(writer)
            trailer = writer.close()
            fh.flush()
            os.fsync(fh.fileno())
        check(path)
        size = path.stat().st_size
        try:
            tag = storage.publish(key, path, created_ms=created_ms).tag
        except FileExistsError:
            # a create-only PUT retried after it had landed finds our own file: the same checksum
            if file_checksum_at(storage, key, size) != trailer.file_checksum:
                raise TakenByAnother(17, "published first by another replicator", key) from None
            tag = None
        return Published(size, trailer.file_checksum, tag)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
