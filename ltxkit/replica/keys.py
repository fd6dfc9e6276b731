"""Where Litestream 0.5.x keeps each LTX file: its two key layouts, spelled once.

A file replica (a directory, `file://`) holds `ltx/<level>/<min>-<max>.ltx`, the level in decimal;
an object-store replica holds `<path>/<level as %04x>/<min>-<max>.ltx` (keys here are relative to
`<path>`). Everything above storage asks a `KeyLayout` for a file's key and for the prefixes a
listing must cover, so neither spelling is repeated anywhere else.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from ltxkit.format.schema import format_filename, parse_filename

SNAPSHOT_LEVEL = 9
MAX_LEVEL = 9
LEVELS = range(MAX_LEVEL + 1)
LTX_DIR = "ltx"  # the file backend's top directory (and the one name a sidecar must not take)
QUARANTINE_DIR = "quarantine"  # beside the LTX files: what repair moved aside, never read as LTX


@dataclass(frozen=True, slots=True)
class KeyLayout:
    """One of Litestream's two layouts: `level_dir(level)` names the directory of a level."""

    name: str
    level_format: str  # how a level is written in a key: "{}" or "{:04x}"
    top: str  # what every level directory sits under ("" for none)

    def level_dir(self, level: int) -> str:
        return self.top + self.level_format.format(level)

    def key(self, level: int, min_txid: int, max_txid: int) -> str:
        return f"{self.level_dir(level)}/{format_filename(min_txid, max_txid)}"

    def areas(self) -> list[str]:
        """The prefixes a listing of the LTX files covers (a stray is any other name in them)."""
        return [self.top.rstrip("/")] if self.top else [self.level_dir(level) for level in LEVELS]

    def level_of_dir(self, key: str) -> int | None:
        """The level whose directory `key` names (`ltx/3` -> 3); None for anything else."""
        if not key.startswith(self.top):
            return None
        body = key[len(self.top) :]
        return next((lv for lv in LEVELS if self.level_format.format(lv) == body), None)

    def parse(self, key: str) -> tuple[int, int, int] | None:
        """(level, min_txid, max_txid) of an LTX file's key; None for anything else."""
        body = key[len(self.top) :] if key.startswith(self.top) else None
        if body is None or body.count("/") != 1:
            return None
        level_text, name = body.split("/")
        level = next((lv for lv in LEVELS if self.level_format.format(lv) == level_text), None)
        txids = parse_filename(name)
        if level is None or txids is None:
            return None
        return level, txids[0], txids[1]


#: `ltx/<level>/<name>`: what Litestream's file replica writes
DIRECTORY = KeyLayout("directory", "{}", f"{LTX_DIR}/")
#: `<level as %04x>/<name>` below the replica's path: what Litestream's S3 replica writes
OBJECT_STORE = KeyLayout("object-store", "{:04x}", "")


def quarantine_key(stamp: str, key: str) -> str:
    """Where repair moves `key` (the original key kept, so the manifest and a person can map back)."""
    return f"{QUARANTINE_DIR}/{stamp}/{key}"


def quarantine_stamp() -> str:
    """The folder of one quarantine (a repair's, or a replicator setting a record aside): now, in
    UTC to the microsecond, so two never share one."""
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")


def quarantine_entry(key: str, dest: str, codes: list[str], reasons: list[str]) -> dict[str, object]:
    """One file's entry in a quarantine's `manifest.json`: where it was, where it is, and why."""
    moved_at = datetime.now(UTC).isoformat(timespec="seconds")
    return {"original_path": key, "quarantine_path": dest, "codes": codes, "reasons": reasons, "moved_at": moved_at}
