"""The replicator's local state: a hidden directory beside the database, `.<db name>-ltxkit/`.

It holds a lock file (one replicator per database) and one state file: which file the replica's
latest TXID is, the page checksums of the state it reaches (`PageMap`), and where that state
stands in the WAL. The state file is written whole (temp file, fsync, rename, fsync the
directory) and carries a CRC of itself; on start it is trusted only if it is intact, names this
replica, and the replica's latest file is the one it names. Anything less costs one full read of
the database, never correctness.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
from dataclasses import dataclass
from pathlib import Path

from ltxkit.errors import UsageError
from ltxkit.format.checksum import crc64
from ltxkit.replica.storage import fsync_dir, hold_lock_file, lock_holder
from ltxkit.replicate.pagemap import PageMap

MAGIC = b"ltxkit-replicate-state 1\n"


class AlreadyRunning(UsageError):
    """Another `ltxkit replicate` holds this database."""

    def __init__(self, db: Path, holder: str) -> None:
        super().__init__(
            f"{db}: already being replicated by another ltxkit replicate (pid {holder}); one replicator per database"
        )


def state_dir(db: Path) -> Path:
    """`.<name>-ltxkit/` beside the database file itself: a symbolic link to it is the same
    database (SQLite uses the target's WAL), so it must find the same state and the same lock."""
    real = db.resolve()
    return real.parent / f".{real.name}-ltxkit"


def replicator_pid(db: Path) -> str | None:
    """The pid of the `ltxkit replicate` holding `db` now; None when none is."""
    return lock_holder(state_dir(db) / "lock")


def refuse_if_replicated(db: Path) -> None:
    """AlreadyRunning when another ltxkit replicate holds `db` now. Asked before the replica is
    made, so a refused start leaves no empty replica behind; `LocalState.lock` still decides."""
    holder = replicator_pid(db)
    if holder is not None:
        raise AlreadyRunning(db, holder)


def make_state_dir(db: Path) -> list[Path]:
    """Make `state_dir(db)` ([it] when made now, [] when it was there), or say in a line why it
    cannot be (UsageError). The CLI asks before it makes a replica, so a database whose state
    cannot be kept leaves no empty replica."""
    directory = state_dir(db)
    try:
        directory.mkdir()
    except FileExistsError:
        if not directory.is_dir():
            raise _unusable(directory, FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST))) from None
        return []
    except OSError as exc:
        raise _unusable(directory, exc) from exc
    return [directory]


def _unusable(directory: Path, exc: OSError) -> UsageError:
    # said as what it is: the bare error named a directory the user never made
    return UsageError(
        f"{directory}: cannot keep the replicator's state and lock here, beside the database ({exc.strerror or exc})"
    )


@dataclass(slots=True)
class Position:
    """Where the published state stands in the database's WAL.

    `salts` name the WAL generation (None: no frame of any generation is in the published state
    beyond what the database file holds). `end` is the byte offset just past the last frame the
    published state includes, `checksum` the WAL's running checksum there.

    `any_generation` is knowledge held only while the pin is: every frame the WAL held is in the
    published state and the pin has been held since, so whatever generation the WAL holds next
    starts exactly there. It is never saved: after a restart nobody vouches for the gap.
    """

    salts: tuple[int, int] | None
    end: int
    checksum: tuple[int, int]
    any_generation: bool = False


@dataclass(slots=True)
class Saved:
    """What the replica's latest TXID is, as far as this replicator knows."""

    replica: str  # the storage URL
    txid: int
    key: str  # the file that reaches `txid`
    size: int  # its size in bytes
    file_checksum: int  # its trailer's file checksum: proves the replica still holds *that* file
    database: tuple[int, int]  # (st_dev, st_ino) of the database file the position refers to
    position: Position | None
    pages: PageMap


class LocalState:
    def __init__(self, db: Path) -> None:
        self.db = db
        self.dir = state_dir(db)
        self.path = self.dir / "state"
        self._lock_fd = -1

    def lock(self) -> None:
        """Become the one replicator of this database, or refuse (AlreadyRunning)."""
        make_state_dir(self.db)
        try:
            fd, holder = hold_lock_file(self.dir / "lock", str(os.getpid()))
        except OSError as exc:
            raise _unusable(self.dir, exc) from exc
        if fd < 0:
            raise AlreadyRunning(self.db, holder)
        self._lock_fd = fd

    def unlock(self) -> None:
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1

    def load(self) -> tuple[Saved | None, str]:
        """The saved state, or None and why not."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return None, "no saved state"
        except OSError as exc:
            return None, f"saved state unreadable: {exc.strerror}"
        try:
            return _decode(data), ""
        except (ValueError, KeyError, TypeError) as exc:
            return None, f"saved state damaged ({exc})"

    def save(self, saved: Saved) -> None:
        data = _encode(saved)
        tmp = self.path.with_name(f".state.{os.getpid()}.tmp")
        try:
            with open(tmp, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        fsync_dir(self.dir)


def _encode(saved: Saved) -> bytes:
    pos = saved.position
    meta = {
        "replica": saved.replica,
        "txid": saved.txid,
        "key": saved.key,
        "size": saved.size,
        "file_checksum": saved.file_checksum,
        "database": list(saved.database),
        "page_size": saved.pages.page_size,
        "commit": saved.pages.commit,
        "database_checksum": saved.pages.checksum(),
        "position": None
        if pos is None or pos.salts is None
        else {"salts": list(pos.salts), "end": pos.end, "checksum": list(pos.checksum)},
    }
    body = MAGIC + json.dumps(meta, sort_keys=True).encode() + b"\n" + saved.pages.to_bytes()
    return body + crc64(body).to_bytes(8, "big")


def _decode(data: bytes) -> Saved:
    if not data.startswith(MAGIC) or len(data) < len(MAGIC) + 8:
        raise ValueError("not a state file")
    body, crc = data[:-8], int.from_bytes(data[-8:], "big")
    if crc64(body) != crc:
        raise ValueError("CRC does not match")
    line_end = body.index(b"\n", len(MAGIC))
    meta = json.loads(body[len(MAGIC) : line_end])
    pages = PageMap.from_bytes(int(meta["page_size"]), body[line_end + 1 :])
    if pages.commit != meta["commit"] or pages.checksum() != meta["database_checksum"]:
        raise ValueError("page checksums do not add up to the saved database checksum")
    pos = meta["position"]
    position = None
    if pos is not None:
        position = Position(
            (int(pos["salts"][0]), int(pos["salts"][1])),
            int(pos["end"]),
            (int(pos["checksum"][0]), int(pos["checksum"][1])),
        )
    return Saved(
        replica=str(meta["replica"]),
        txid=int(meta["txid"]),
        key=str(meta["key"]),
        size=int(meta["size"]),
        file_checksum=int(meta["file_checksum"]),
        database=(int(meta["database"][0]), int(meta["database"][1])),
        position=position,
        pages=pages,
    )
