"""Does the WAL as it is now continue the published position? The rules, in one place.

SQLite counts the frames 1..max_frame of the generation its WAL index describes; the WAL file's
header says which generation the file holds. Frames count for us only where both agree. From
the saved position, reading may go on:

* in the same generation, from the saved end, if the frame that ends there still carries the
  checksum we saw (the WAL was not rewritten under the same salts);
* in a new generation, from its first frame, only if `Position.any_generation` vouches that the
  old generation was wholly published and the pin has been held since.

Anything else is `LostTrack`: the engine reads the database whole instead.
"""

from __future__ import annotations

from ltxkit.replicate.source import WalReader
from ltxkit.replicate.state import Position
from ltxkit.wal import WAL_HEADER_SIZE, IndexHeader, frame_trailer_checksum


class LostTrack(Exception):
    """The WAL does not provably continue the published position."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def counted_frames(index: IndexHeader | None, w: WalReader | None) -> int:
    """How many frames of the WAL file SQLite counts as committed (0: none, or not this generation yet)."""
    if w is None or index is None or index.salts != w.header.salts:
        return 0
    return index.max_frame


def end_of_counted(index: IndexHeader | None, w: WalReader) -> int:
    return WAL_HEADER_SIZE + counted_frames(index, w) * w.header.frame_size


def follow(index: IndexHeader | None, w: WalReader, pos: Position, page_size: int) -> tuple[int, tuple[int, int], int]:
    """(start offset, running checksum there, end of the counted frames) to read from; start >= end
    when there is nothing new to read. Raises LostTrack."""
    header = w.header
    counted = counted_frames(index, w)
    if counted == 0:
        return 0, (0, 0), 0
    if header.page_size != page_size:
        raise LostTrack(f"the WAL's page size is {header.page_size}, the replica's {page_size}")
    limit = WAL_HEADER_SIZE + counted * header.frame_size
    if header.salts == pos.salts:
        if pos.end == WAL_HEADER_SIZE:
            return pos.end, header.checksum, limit
        if limit < pos.end:
            raise LostTrack("the WAL holds fewer frames than were published from it")
        if frame_trailer_checksum(w.read_at, header, pos.end) != pos.checksum:
            raise LostTrack("the WAL no longer holds the last frame that was published")
        return pos.end, pos.checksum, limit
    if pos.any_generation:
        return WAL_HEADER_SIZE, header.checksum, limit
    raise LostTrack("the WAL was restarted since the last published frame")
