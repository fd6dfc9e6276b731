"""The storage boundary: the only way ltxkit touches a replica, shaped for object stores.

Everything above this module speaks in replica-relative keys (`KeyLayout` says which) and in the
operations an object store has: list a prefix, read a range or a whole object, publish a file
that was built and verified locally (create-only: an existing key is never replaced), delete a
batch of keys, and move a key aside into quarantine (on an object store: copy, verify the copy,
delete the original). Verify, restore and repair use nothing else, so an `s3://` backend is a
new class here, not a change above.

A storage names itself by `url`, from which `open_storage` makes it again: worker processes get
the URL and open their own storage, so no live client crosses a `fork` or a pickle.

The local backend writes the way every ltxkit write goes: temp file, fsync, then a hard link to
the final name (which fails if the name exists: create-only), fsync of the directory.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import posixpath
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol
from urllib.parse import quote, unquote, urlparse

from ltxkit.errors import EXIT_USAGE, LtxkitError, UsageError
from ltxkit.replica.keys import DIRECTORY, LTX_DIR, KeyLayout


class WriterTaken(UsageError):
    """Another ltxkit replicate holds the replica's writer lock (`holder`: its pid and database)."""

    def __init__(self, message: str, holder: str) -> None:
        super().__init__(message)
        self.holder = holder


class ReplicaNotFound(UsageError):
    """The replica location does not exist, cannot be listed, or is not a replica."""


@dataclass(frozen=True, slots=True)
class Entry:
    """One key as a listing sees it. `created_ns` is the backend's creation time: a file's mtime
    (Litestream sets it to the LTX header's timestamp), an object's metadata on S3."""

    key: str  # relative to the replica root, with '/' separators
    size: int
    created_ns: int
    #: why this is not a readable regular file (None: it is one): "a directory", "a dangling
    #: symbolic link", or the error listing or stat gave. Litestream lists such names too.
    problem: str | None = None
    directory: bool = False  # a directory that could not be listed (its files are unknown)
    #: the backend's tag for this version of the object: an S3 ETag; a file's device and inode (a
    #: file replaced by a rename, as Litestream writes, has a new one). None: the backend has none.
    tag: str | None = None


def _file_tag(st: os.stat_result) -> str:
    return f"{st.st_dev}:{st.st_ino}"


class Storage(Protocol):
    """What a replica backend provides (see the module docstring)."""

    url: str  # names the replica (the replicator's state records it); an object store's reopens it
    concurrency: int  # reads worth running at once (1: local, read when needed)
    fork_safe: bool  # may worker processes be forked once it was used (False: a client with threads)
    label: str  # how the user named it: for messages and reports, never a path to open
    layout: KeyLayout

    def list(self, prefix: str, *, after: str | None = None) -> list[Entry]:
        """Every key below `prefix`, sorted; with `after`, only the keys sorting after it."""
        ...

    def open(self, key: str) -> BinaryIO:
        """A seekable, readable stream of the object (ranged reads)."""
        ...

    def read_range(self, key: str, start: int, length: int) -> bytes: ...

    def read_bytes(self, key: str, *, listed_size: int | None = None) -> bytes:
        """The whole object. `listed_size`, the size a listing gave, lets an object store answer in
        one round trip instead of two; the bytes are the whole object whatever its size now."""
        ...

    def make_staging(self) -> Path:
        """A new local directory for files to be published here; the caller removes it."""
        ...

    def stale_staging(self) -> tuple[str, ...]:
        """Keys of staging directories whose process is gone (killed mid-build); reads only."""
        ...

    def remove_stale_staging(self) -> int:
        """Remove staging directories whose process is gone (killed mid-build); how many went."""
        ...

    def has_any(self, prefix: str) -> bool:
        """Does anything live below `prefix` (one listing call at most, however much is there)?"""
        ...

    def top_names(self) -> frozenset[str] | None:
        """The names directly below the replica's root (levels, `ledger`, `generations`, ...), from
        one listing, where that saves listing each absent one in turn (an object store: a request
        each); None where looking into an absent directory costs nothing."""
        ...

    def claim_writer(self, owner: str) -> None:
        """Become the one replicator writing here, or WriterTaken naming the one that is (`owner`
        says who we are: pid and database). Held until `release_writer` or the process ends."""
        ...

    def release_writer(self) -> None: ...

    def writer(self) -> str | None:
        """The ltxkit replicate writing here now, as it named itself (pid and database); None when
        none is, or where no lock can be seen (an object store)."""
        ...

    def keep_writer(self) -> bool:
        """Still the one replicator writing here? True when the claim had to be made again (the
        replica's lock went with its directory, deleted and made again while we ran); UsageError
        naming the one that took it meanwhile (WriterTaken)."""
        ...

    def exact_created_ns(self, key: str) -> int | None:
        """The creation time Litestream's timestamp restores use, when the listing's is only an
        approximation (an object's `litestream-timestamp` metadata); None: the listing's is exact."""
        ...

    def publish(self, key: str, source: Path, *, created_ms: int) -> Entry:
        """Make the verified local file `source` the object `key`, created at `created_ms`.

        Create-only: FileExistsError if `key` exists. All or nothing: a reader sees the whole
        object or none. `source` is consumed.
        """
        ...

    def put_bytes(self, key: str, data: bytes) -> None:
        """A small object (a manifest), create-only, all or nothing."""
        ...

    def delete(self, keys: Sequence[str]) -> None: ...

    def quarantine(self, key: str, new_key: str) -> None:
        """Move `key` to `new_key` (create-only); the original goes only once its copy is whole."""
        ...


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class OutputExists(LtxkitError):
    """The output a user named exists and may not be replaced (no --force)."""

    def __init__(self, path: Path) -> None:  # not a defect in any data: could not run (exit 2)
        if os.path.isdir(path) and not os.path.islink(path):  # --force would not replace it either
            super().__init__(f"{path}: is a directory; name the file to write", exit_code=EXIT_USAGE)
        else:
            super().__init__(f"{path}: already exists (use --force to replace it)", exit_code=EXIT_USAGE)


def replaceable(path: Path) -> os.stat_result | None:
    """The status of the file at `path` that an output may replace (None: nothing there).

    Only a regular file is replaced. A symbolic link is refused, not followed: replacing it would
    turn the link into a file, writing through it would change a file the user did not name
    (give the target's path instead). A device, FIFO, socket or directory is refused too.
    """
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    if stat.S_ISLNK(st.st_mode):
        raise UsageError(f"{path}: is a symbolic link; name the file it points to, ltxkit does not replace links")
    if not stat.S_ISREG(st.st_mode):
        raise UsageError(f"{path}: not a regular file; ltxkit replaces only regular files")
    return st


#: errors a write to the output's temp file gives without naming it: they are the output's
_WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EROFS, errno.EDQUOT, errno.EFBIG})


def _about_output(exc: OSError, path: Path, tmp: Path) -> OSError | None:
    """The same error naming the path the user typed, when it is about our temp file beside it
    (`.x.db.1234.tmp: Read-only file system` reads as `x.db: Read-only file system`); None when
    it is about something else (a replica file being read, say)."""
    names = {str(tmp), str(path)}
    if exc.filename is None and exc.errno not in _WRITE_ERRNOS:
        return None
    if exc.filename is not None and str(exc.filename) not in names:
        return None
    return OSError(exc.errno, exc.strerror or str(exc), str(path))


@contextlib.contextmanager
def atomic_output(
    path: Path, *, replace: bool = False, check: Callable[[Path], None] | None = None
) -> Iterator[BinaryIO]:
    """Yield a temp file beside `path`; on success fsync, move it to `path`, fsync the directory.

    For the files a user names (restore's database, snapshot's output), not for replicas. An
    existing `path` is an `OutputExists` unless `replace`; without `replace` the final step is a
    hard link, so a file that appears at `path` meanwhile is not overwritten either. With
    `replace`, only a regular file is replaced (`replaceable`), and the new file takes its mode
    and, where permitted, its owner; a new file gets the mode the umask allows, as any program's.
    `check(temp_path)` runs after the fsync and before the move: raising there publishes
    nothing. On any exception the temp file is removed and `path` is left as it was.
    """
    path = Path(path)
    if not replace and os.path.lexists(path):
        raise OutputExists(path)
    old = replaceable(path) if replace else None
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        f = open(tmp, "xb")  # noqa: SIM115 - closed below on every path
    except OSError as exc:  # nothing was created (an existing temp file is not ours to remove)
        raise (_about_output(exc, path, tmp) or exc) from exc
    except BaseException:  # Ctrl-C as the file was made: it may exist, and then it is ours
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    try:
        yield f
        f.flush()
        os.fsync(f.fileno())
        f.close()
        if check is not None:
            check(tmp)
        if old is not None:
            os.chmod(tmp, stat.S_IMODE(old.st_mode))
            with contextlib.suppress(PermissionError):
                os.chown(tmp, old.st_uid, old.st_gid)
        if replace:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)
            except FileExistsError:
                raise OutputExists(path) from None
            os.unlink(tmp)
        fsync_dir(path.parent)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            f.close()
        with contextlib.suppress(OSError):
            tmp.unlink()
        named = _about_output(exc, path, tmp) if isinstance(exc, OSError) else None
        if named is not None:
            raise named from exc
        raise


STAGING_PREFIX = ".ltxkit-staging-"
WRITER_LOCK = ".ltxkit-writer.lock"  # beside ltx/: held by the one replicator writing the replica


def dead_staging(directory: str) -> tuple[str, ...]:
    """Names of the staging directories in `directory` whose process is gone (killed mid-build):
    the names carry their process id, and a live one is a build in progress, not a leftover."""
    names: set[str] = set()
    try:
        with os.scandir(directory) as it:
            entries = [*it]
    except OSError:
        return ()
    for entry in entries:
        if not entry.name.startswith(STAGING_PREFIX) or not entry.is_dir(follow_symlinks=False):
            continue
        pid = entry.name[len(STAGING_PREFIX) :].split("-", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            names.add(entry.name)
    return tuple(sorted(names))


def remove_dead_staging(directory: str) -> int:
    """Remove what `dead_staging` names; how many went (one that cannot be removed is left)."""
    names = dead_staging(directory)
    for name in names:
        shutil.rmtree(os.path.join(directory, name), ignore_errors=True)
    return len(names)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class LocalStorage:
    """A replica in a local directory (what Litestream's `file://` replica type writes)."""

    layout = DIRECTORY
    concurrency = 1
    fork_safe = True

    def __init__(self, root: Path, label: str | None = None) -> None:
        self._root = Path(root)
        self._root_str = str(self._root)  # plain string joins: replicas hold tens of thousands of files
        self.label = str(root) if label is None else label
        self.url = "file://" + quote(os.fsencode(self._root.resolve()))  # bytes: a name need not be UTF-8
        self._writer_fd = -1

    def _path(self, key: str) -> Path:
        return self._root.joinpath(*key.split("/"))

    def _file(self, key: str) -> str:
        return os.path.join(self._root_str, *key.split("/"))

    def list(self, prefix: str, *, after: str | None = None) -> list[Entry]:
        """Every file below `prefix`, recursively, sorted by key (with `after`, the ones after it).

        Directory symlinks are followed, as Litestream's `os.ReadDir` + stat follow them (a
        directory reached twice is listed once). Nothing is skipped silently: a directory named
        like an LTX file, a dangling symlink or an entry that cannot be stat'ed comes back with
        its `problem`, and a directory that cannot be listed as an entry with `directory=True`.

        `os.scandir` rather than `os.walk` + `os.stat(join(...))`: a replica can hold tens of
        thousands of L0 files, and listing them is part of every restore's and verify's start.
        """
        base = self._path(prefix)
        out: list[Entry] = []
        if not base.exists():
            return out
        seen: set[tuple[int, int]] = set()
        todo = [(str(base), base.relative_to(self._root).as_posix())]
        while todo:
            dirpath, rel = todo.pop()
            try:
                st_dir = os.stat(dirpath)
                if (st_dir.st_dev, st_dir.st_ino) in seen:
                    continue
                seen.add((st_dir.st_dev, st_dir.st_ino))
                it = os.scandir(dirpath)
            except OSError as exc:
                out.append(Entry(rel, 0, 0, f"cannot be listed: {exc.strerror or exc}", directory=True))
                continue
            with it:
                for e in it:
                    key = f"{rel}/{e.name}" if rel != "." else e.name
                    try:
                        if e.is_dir():  # follows a symlink to a directory, as Litestream does
                            if e.name.endswith(".ltx"):
                                out.append(Entry(key, 0, 0, "a directory"))
                            else:
                                todo.append((e.path, key))
                            continue
                        st = e.stat()
                    except FileNotFoundError:
                        if e.is_symlink():
                            out.append(Entry(key, 0, 0, "a dangling symbolic link"))
                        continue  # else deleted while listing (retention): not there, not a defect
                    except OSError as exc:
                        out.append(Entry(key, 0, 0, f"cannot be read: {exc.strerror or exc}"))
                        continue
                    if not stat.S_ISREG(st.st_mode):
                        out.append(Entry(key, st.st_size, st.st_mtime_ns, "not a regular file"))
                        continue
                    out.append(Entry(key, st.st_size, st.st_mtime_ns, tag=_file_tag(st)))
        out.sort(key=lambda e: e.key)
        return out if after is None else [e for e in out if e.key > after]

    def open(self, key: str) -> BinaryIO:
        return open(self._file(key), "rb")

    def read_range(self, key: str, start: int, length: int) -> bytes:
        fd = os.open(self._file(key), os.O_RDONLY)
        try:
            return os.pread(fd, length, start)
        finally:
            os.close(fd)

    def read_bytes(self, key: str, *, listed_size: int | None = None) -> bytes:
        """The whole file, without a file object (about half the cost of `open` + `read` for the
        small L0 files a replica holds thousands of)."""
        fd = os.open(self._file(key), os.O_RDONLY)
        try:
            parts = []
            while chunk := os.read(fd, 1 << 20):
                parts.append(chunk)
        finally:
            os.close(fd)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def make_staging(self) -> Path:
        """Inside the replica (so publishing is a link, not a copy), outside `ltx/` (so nothing reads it).
        An error names the replica, as the user typed it, not the directory it could not create."""
        try:
            return Path(tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{os.getpid()}-", dir=self._root))
        except OSError as exc:
            raise OSError(
                exc.errno, f"{exc.strerror}: cannot create a staging directory inside the replica", self.label
            ) from exc

    def exact_created_ns(self, key: str) -> int | None:
        return None  # a file's mtime is what Litestream's file backend sets and reads

    def stale_staging(self) -> tuple[str, ...]:
        return dead_staging(self._root_str)

    def top_names(self) -> frozenset[str] | None:
        return None  # a missing level directory is one failed stat, not a round trip

    def has_any(self, prefix: str) -> bool:
        try:
            with os.scandir(self._path(prefix)) as it:
                return any(True for _ in it)
        except (NotADirectoryError, FileNotFoundError):
            return False

    def claim_writer(self, owner: str) -> None:
        """A lock file beside `ltx/` (Litestream reads only `ltx/`), held with flock: two
        databases replicated into one replica would interleave their TXIDs, each continuing the
        other's files with its own pages — a replica that restores neither."""
        fd, holder = hold_lock_file(os.path.join(self._root_str, WRITER_LOCK), owner)
        if fd < 0:
            raise WriterTaken(
                f"{self.label}: already written by another ltxkit replicate ({holder}); one database per replica",
                holder,
            )
        self._writer_fd, self._writer = fd, owner

    def release_writer(self) -> None:
        fd, self._writer_fd = self._writer_fd, -1
        if fd >= 0:
            os.close(fd)

    def writer(self) -> str | None:
        if self._writer_fd >= 0:
            return self._writer
        return lock_holder(os.path.join(self._root_str, WRITER_LOCK))

    def keep_writer(self) -> bool:
        """The lock is a file in the replica's directory: a directory deleted and made again takes
        it away, and a second replicator could claim the new one and write its database's TXIDs
        between ours. Looked at before every sync (a stat and an fstat)."""
        if self._writer_fd < 0:
            return False
        held = os.fstat(self._writer_fd)
        try:
            now = os.stat(os.path.join(self._root_str, WRITER_LOCK))
            if (now.st_dev, now.st_ino) == (held.st_dev, held.st_ino):
                return False
        except FileNotFoundError:
            if not self._root.is_dir():
                raise ReplicaNotFound(f"{self.label}: the replica directory is gone") from None
        self.release_writer()
        self.claim_writer(self._writer)
        return True

    def remove_stale_staging(self) -> int:
        return remove_dead_staging(self._root_str)

    def publish(self, key: str, source: Path, *, created_ms: int) -> Entry:
        target = self._path(key)
        self._make_parent(target)
        with open(source, "rb") as fh:
            os.fsync(fh.fileno())
        ns = created_ms * 1_000_000
        os.utime(source, ns=(ns, ns))  # Litestream's file backend: mtime is the file's time
        self._link(Path(source), target)
        os.unlink(source)
        fsync_dir(Path(source).parent)
        st = target.stat()
        return Entry(key, st.st_size, st.st_mtime_ns, tag=_file_tag(st))

    def _link(self, source: Path, target: Path) -> None:
        """Give `source` the name `target`, create-only; copy first if they are on two filesystems."""
        try:
            os.link(source, target)
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.EPERM, errno.ENOTSUP, errno.EMLINK):
                raise
            tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
            try:
                shutil.copy2(source, tmp)
                with open(tmp, "rb") as fh:
                    os.fsync(fh.fileno())
                os.link(tmp, target)
            finally:
                with contextlib.suppress(FileNotFoundError):
                    tmp.unlink()
        fsync_dir(target.parent)

    def _make_parent(self, target: Path) -> None:
        """Create the directories below the replica root, never the root itself: a replica that
        disappeared (an unmounted disk, a deleted directory) must not silently start over."""
        if not self._root.is_dir():
            raise ReplicaNotFound(f"{self.label}: the replica directory is gone")
        target.parent.mkdir(parents=True, exist_ok=True)

    def put_bytes(self, key: str, data: bytes) -> None:
        target = self._path(key)
        self._make_parent(target)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        try:
            with open(tmp, "xb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            self._link(tmp, target)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()

    def delete(self, keys: Sequence[str]) -> None:
        dirs = set()
        for key in keys:
            path = self._path(key)
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            dirs.add(path.parent)
        for d in dirs:
            with contextlib.suppress(FileNotFoundError):
                fsync_dir(d)

    def quarantine(self, key: str, new_key: str) -> None:
        """A rename: one filesystem, so the file is never in two places or none."""
        src, dst = self._path(key), self._path(new_key)
        dst.parent.mkdir(parents=True, exist_ok=True)
        if dst.exists():
            raise FileExistsError(dst)
        os.rename(src, dst)
        fsync_dir(dst.parent)
        fsync_dir(src.parent)


def lock_holder(path: str | Path) -> str | None:
    """What the process holding `path` (`hold_lock_file`) wrote into it; None when nobody holds it
    (or it does not exist). Looks without taking it: a shared flock tried and let go at once."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return os.pread(fd, 4096, 0).decode(errors="replace").strip() or "another process"
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def hold_lock_file(path: str | Path, owner: str) -> tuple[int, str]:
    """Hold `path` (made if missing) with flock for as long as the returned descriptor stays open,
    and write `owner` into it: (fd, ""). When another process holds it: (-1, what that process
    wrote). flock goes with the process, so a `kill -9` never leaves a stale lock behind."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 4096, 0).decode(errors="replace").strip() or "another process"
        os.close(fd)
        return -1, holder
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{owner}\n".encode(errors="replace"), 0)
    return fd, ""


def legacy_replica_message(location: str) -> str:
    """What a directory holding only Litestream 0.3's `generations/` is, said where it is refused."""
    return (
        f"{location}: a Litestream 0.3 replica (generations/, no {LTX_DIR}/), which ltxkit does not read; "
        "`litestream restore` 0.5 restores it"
    )


def local_path(location: str) -> Path:
    """The directory a local location names: a plain path, or a `file:///path` URL read as
    Litestream reads it (`file_url_path`)."""
    if "://" not in location:
        return Path(location)
    url = urlparse(location)
    if url.scheme != "file":
        raise ReplicaNotFound(f"{location}: unsupported replica URL (use a directory, file:// or s3://)")
    return Path(file_url_path(location))


def _decoded_elsewhere(location: str, path: Path) -> str:
    """Where a `file://` URL that names no directory names one when decoded, a word on why it is
    not read that way (`file_url_path`)."""
    if path == Path(location) or not location.startswith("file://"):
        return ""
    decoded = Path(unquote(urlparse(location).path, errors="surrogateescape"))
    if decoded == path or not decoded.is_dir():
        return ""
    return (
        f" ({path}: a file:// URL is read as Litestream reads it, not decoded; "
        f"for the directory {decoded}, give that path instead of a URL)"
    )


# Go's net/url, for a URL's path: what needs no escape, and what a valid escaped path may hold
_GO_PATH_SAFE = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.~$&+,/:;=@")
_GO_PATH_VALID = _GO_PATH_SAFE | frozenset(b"!'()*[]%")


def file_url_path(location: str) -> str:
    """The directory Litestream's file replica uses for a `file://` URL. Go parses the URL and
    writes its path back escaped, and Litestream uses that text as the path, without decoding
    it: `file:///b/my%20rep` is the directory `my%20rep`, and so is `file:///b/my rep`. Read
    any other way, one URL would name two replicas, one written by each tool."""
    rest = location[len("file://") :].split("?", 1)[0]  # Litestream drops the query
    host, slash, raw = rest.partition("/")
    if host or not slash or "#" in rest:
        raise ReplicaNotFound(f"{location}: a file:// URL names a path on this machine (file:///path)")
    raw = "/" + raw
    decoded = _go_unescape(location, raw)  # Go refuses a URL with a bad escape in it
    if all(ord(c) < 128 and ord(c) in _GO_PATH_VALID for c in raw):
        escaped = raw
    else:  # Go escapes what needs it, after decoding what was escaped already
        escaped = "".join(chr(b) if b in _GO_PATH_SAFE else f"%{b:02X}" for b in decoded)
    return "/" + posixpath.normpath(escaped).lstrip("/")  # Go's path.Clean: one leading slash


def _go_unescape(location: str, raw: str) -> bytes:
    data = raw.encode("utf-8", "surrogateescape")
    out = bytearray()
    i = 0
    while i < len(data):
        if data[i] == 0x25:  # %
            pair = data[i + 1 : i + 3]
            if len(pair) < 2 or not all(c in b"0123456789abcdefABCDEF" for c in pair):
                raise ReplicaNotFound(f"{location}: invalid URL escape {data[i : i + 3].decode(errors='replace')!r}")
            out.append(int(pair, 16))
            i += 3
        else:
            out.append(data[i])
            i += 1
    return bytes(out)


def open_storage(location: str, *, create: bool = False, credentials: dict[str, str] | None = None) -> Storage:
    """The replica at `location`: a directory path or a `file://` URL holding Litestream's `ltx/`.

    With `create` (the replicator), a new replica is made there: the directory (whose parent must
    exist) and its `ltx/`. `credentials`: an S3 replica's keys from a config file, used instead
    of the environment's.
    """
    if urlparse(location).scheme == "s3" and "://" in location:
        from ltxkit.replica.s3 import open_s3

        return open_s3(location, create=create, credentials=credentials)
    path = local_path(location)
    if create and not (path / LTX_DIR).is_dir():
        if not path.parent.is_dir():
            raise ReplicaNotFound(f"{location}: its parent directory does not exist")
        try:
            path.mkdir(exist_ok=True)
            (path / LTX_DIR).mkdir(exist_ok=True)
        except OSError as exc:
            raise ReplicaNotFound(f"{location}: cannot create the replica: {exc.strerror}") from exc
    if not path.is_dir():
        what = "not a directory" if path.exists() else "no such directory"
        raise ReplicaNotFound(f"{location}: {what}{_decoded_elsewhere(location, path)}")
    if not (path / LTX_DIR).is_dir():
        if (path / "generations").is_dir():
            raise ReplicaNotFound(legacy_replica_message(location))
        raise ReplicaNotFound(f"{location}: not a replica (no {LTX_DIR}/ directory)")
    return LocalStorage(path)
