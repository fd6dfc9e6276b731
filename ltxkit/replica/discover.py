"""Find every replica below a directory or an `s3://` prefix (`ltxkit verify --recursive`).

A replica is a directory holding `ltx/` (Litestream's file layout), or an object prefix under
which keys look like `<level %04x>/<min>-<max>.ltx` (its object-store layout). The search does not
descend into a replica it found: nothing inside one is another.
"""

from __future__ import annotations

import os
import re
from urllib.parse import quote, urlparse, urlunparse

from ltxkit.replica.keys import LEVELS, LTX_DIR, OBJECT_STORE, QUARANTINE_DIR
from ltxkit.replica.ledger import LEDGER_DIR
from ltxkit.replica.storage import ReplicaNotFound, local_path

_OBJECT_KEY = re.compile(r"^(?:(.*)/)?[0-9a-f]{4}/[0-9a-f]{16}-[0-9a-f]{16}\.ltx\Z", re.DOTALL)


def find_replicas(location: str) -> list[str]:
    """Every replica at or below `location`, as paths or URLs the other commands take, sorted."""
    if location.startswith("s3://"):
        return _s3_replicas(location)
    root = local_path(location)
    if not root.is_dir():
        raise ReplicaNotFound(f"{location}: not a directory")
    found: list[str] = []
    for dirpath, dirnames, _files in os.walk(root):
        if LTX_DIR in dirnames and os.path.isdir(os.path.join(dirpath, LTX_DIR)):
            found.append(dirpath)
            dirnames.clear()  # a replica's own directories hold no other replica
            continue
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
    return sorted(found)


def _s3_replicas(location: str) -> list[str]:
    from ltxkit.replica.s3 import S3Storage

    storage = S3Storage(location)
    roots: set[str] = set()
    for entry in storage.list(""):
        m = _OBJECT_KEY.match(entry.key)
        if m and "quarantine/" not in entry.key:
            roots.add(m.group(1) or "")
    url = urlparse(location)
    base = url.path.rstrip("/")
    # a key is raw text and a URL's path is percent-decoded: `#`, `?` or `%` in a folder's name
    # would end the path (and drop the endpoint) or decode to another folder
    return sorted(
        urlunparse(url._replace(path=f"{base}/{quote(r, safe='/')}".rstrip("/") if r else base)) for r in roots
    )


def enclosing_replica(location: str, *, credentials: dict[str, str] | None = None) -> str | None:
    """The replica `location` lies inside, as one of its own folders (a level folder, `ltx/`,
    `ledger/`, `quarantine/`), or None. A replicator pointed there makes a second replica inside
    the first, whose verify then finds the newcomer's files as strays."""
    if location.startswith("s3://"):
        from ltxkit.replica.s3 import S3Error, S3Storage

        url = urlparse(location)
        parent, _, name = url.path.rstrip("/").rpartition("/")
        levels = {OBJECT_STORE.level_dir(level).rstrip("/") for level in LEVELS}
        if name not in levels | {LEDGER_DIR, QUARANTINE_DIR}:
            return None  # the common case: no request at all
        above = urlunparse(url._replace(path=parent or "/"))
        try:
            top = S3Storage(above, credentials=credentials).top_names()
        except S3Error as exc:
            if exc.unreachable:  # a replicator waits for its server: this check does not stop it
                return None
            raise
        return above if top & levels else None
    path = local_path(location).absolute()
    for replica, inside in ((path.parent, path), (path.parent.parent, path.parent)):
        if inside.name in (LTX_DIR, LEDGER_DIR, QUARANTINE_DIR) and (replica / LTX_DIR).is_dir():
            return str(replica)
    return None
