"""A small storage protocol for replicas, and the local-directory backend.

Everything above this module speaks in replica-relative keys such as `ltx/0/<name>.ltx`, so an
object-store backend can be added without touching verify, restore or repair.
Writes are atomic: temp file, fsync, rename, fsync of the directory.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol
from urllib.parse import unquote, urlparse


class ReplicaNotFound(Exception):
    """The replica location does not exist or cannot be listed."""


@dataclass(frozen=True, slots=True)
class Entry:
    key: str  # relative to the replica root, with '/' separators
    size: int
    mtime_ns: int


class Storage(Protocol):
    root_label: str

    def list(self, prefix: str) -> list[Entry]: ...

    def open(self, key: str) -> BinaryIO: ...

    def read_bytes(self, key: str) -> bytes: ...

    def write_atomic(
        self,
        key: str,
        data_writer: Callable[[BinaryIO], None],
        *,
        mtime_ns: int | None = None,
        check: Callable[[Path], None] | None = None,
    ) -> Entry: ...

    def move(self, key: str, new_key: str) -> None: ...


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_output(path: Path, *, mode: int = 0o644, check: Callable[[Path], None] | None = None) -> Iterator[BinaryIO]:
    """Yield a temp file beside `path`; on success fsync, rename over `path`, fsync the directory.

    `check(temp_path)` runs after the fsync and before the rename: raising there publishes
    nothing. On any exception the temp file is removed and `path` is left as it was.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    f = open(tmp, "xb")  # noqa: SIM115 - closed below on every path
    try:
        yield f
        f.flush()
        os.fsync(f.fileno())
        f.close()
        if check is not None:
            check(tmp)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except BaseException:
        f.close()
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


class LocalStorage:
    """A replica in a local directory (what Litestream's `file://` replica type writes)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root_label = str(self.root)

    def path(self, key: str) -> Path:
        return self.root.joinpath(*key.split("/"))

    def list(self, prefix: str) -> list[Entry]:
        """Every file below `prefix`, recursively, sorted by key (directory symlinks not followed).

        `os.scandir` rather than `os.walk` + `os.stat(join(...))`: a replica can hold tens of
        thousands of L0 files, and listing them is part of every restore's and verify's start.
        """
        base = self.path(prefix)
        out: list[Entry] = []
        if not base.exists():
            return out
        todo = [(str(base), base.relative_to(self.root).as_posix())]
        while todo:
            dirpath, rel = todo.pop()
            try:
                it = os.scandir(dirpath)
            except OSError:
                continue
            with it:
                for e in it:
                    key = f"{rel}/{e.name}" if rel != "." else e.name
                    try:
                        if e.is_dir():
                            if not e.is_symlink():
                                todo.append((e.path, key))
                            continue
                        st = e.stat()
                    except OSError:
                        continue
                    out.append(Entry(key, st.st_size, st.st_mtime_ns))
        out.sort(key=lambda e: e.key)
        return out

    def open(self, key: str) -> BinaryIO:
        # plain string joins: a restore or verify opens every file of the replica (10,000s of them)
        return open(os.path.join(self.root_label, *key.split("/")), "rb")

    def read_bytes(self, key: str) -> bytes:
        """The whole file, without a file object (about half the cost of `open` + `read` for the
        small L0 files a replica holds thousands of)."""
        fd = os.open(os.path.join(self.root_label, *key.split("/")), os.O_RDONLY)
        try:
            parts = []
            while chunk := os.read(fd, 1 << 20):
                parts.append(chunk)
        finally:
            os.close(fd)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def write_atomic(
        self,
        key: str,
        data_writer: Callable[[BinaryIO], None],
        *,
        mtime_ns: int | None = None,
        check: Callable[[Path], None] | None = None,
    ) -> Entry:
        """`data_writer(f)` fills a temp file; `check(tmp)` may veto it; then it atomically becomes `key`."""
        target = self.path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        with atomic_output(target, check=check) as f:
            data_writer(f)
        if mtime_ns is not None:
            os.utime(target, ns=(mtime_ns, mtime_ns))
        st = target.stat()
        return Entry(key, st.st_size, st.st_mtime_ns)

    def move(self, key: str, new_key: str) -> None:
        src, dst = self.path(key), self.path(new_key)
        dst.parent.mkdir(parents=True, exist_ok=True)
        if dst.exists():
            raise FileExistsError(dst)
        os.rename(src, dst)
        fsync_dir(dst.parent)
        fsync_dir(src.parent)


def open_replica(location: str) -> LocalStorage:
    """A replica given as a directory path or a `file://` URL; it must hold Litestream's `ltx/`."""
    if "://" in location:
        url = urlparse(location)
        if url.scheme != "file":
            raise ReplicaNotFound(f"{location}: only file:// replicas (or plain directories) are supported")
        location = unquote((url.netloc or "") + url.path)
    path = Path(location)
    if not path.is_dir():
        raise ReplicaNotFound(f"{location}: not a directory")
    if not (path / "ltx").is_dir():
        raise ReplicaNotFound(f"{location}: not a replica (no ltx/ directory)")
    return LocalStorage(path)
