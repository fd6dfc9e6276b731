"""Replicas in S3-compatible object storage, through `obstore` (Rust's object_store).

URLs as Litestream takes them: `s3://bucket/path?endpoint=http://host:port&region=...&
force-path-style=true&skip-verify=true`; an endpoint implies path-style requests and, unless
given, region `us-east-1`. Keys are Litestream's object-store layout, `<path>/<level %04x>/
<min>-<max>.ltx`, each with the `litestream-timestamp` metadata written on publish.

Credentials, in Litestream's order: `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` (and
`AWS_SESSION_TOKEN`), `LITESTREAM_ACCESS_KEY_ID` / `LITESTREAM_SECRET_ACCESS_KEY`, then the
`~/.aws/credentials` profile named by `AWS_PROFILE` (else `default`).

Publishing is a create-only PUT (`If-None-Match: *`): an existing object is never replaced.
Quarantine is copy, read the copy back and compare, then delete the original: nothing is deleted
before its copy is proven. Every backend error becomes one line naming the URL (`UsageError`,
exit 2) or a `FileNotFoundError` for a missing object, so callers see what they see locally.
"""

from __future__ import annotations

import configparser
import contextlib
import io
import ipaddress
import os
import posixpath
import re
import tempfile
import threading
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, TypeVar, cast
from urllib.parse import parse_qs, quote, unquote, urlencode, urlparse, urlsplit, urlunsplit

from ltxkit.errors import UsageError
from ltxkit.replica.keys import LEVELS, OBJECT_STORE, QUARANTINE_DIR
from ltxkit.replica.layout import LEGACY_GENERATIONS_DIR, rfc3339_ns
from ltxkit.replica.ledger import LEDGER_DIR
from ltxkit.replica.storage import STAGING_PREFIX, Entry, ReplicaNotFound, remove_dead_staging

if TYPE_CHECKING:
    from obstore.store import S3Store

TIMESTAMP_KEY = "litestream-timestamp"
_T = TypeVar("_T")
_READ_AHEAD = 8 << 20  # the largest ranged GET
_FIRST_READ = 64 << 10  # the first GET of an object read in order
_AHEAD_DEPTH = 3  # chunks of a large object fetched ahead of the reader


class _RangePastEnd(EOFError):
    """A ranged GET that starts at or past the object's end (HTTP 416, `InvalidRange`): the
    object is shorter than the caller knew it. Reads take it as a file's read past its end."""


class S3Error(UsageError):
    """The object store could not be reached or refused the request. `refused`: it answered, and
    no retry will change its answer (credentials, a missing bucket). `unreachable`: it did not
    answer (a timeout, a refused connection), after the client's own retries."""

    def __init__(self, message: str, *, refused: bool = False, unreachable: bool = False) -> None:
        super().__init__(message)
        self.refused = refused
        self.unreachable = unreachable


# S3 error codes no retry changes, as a person would say them
_REFUSALS = {
    "NoSuchBucket": "no such bucket",
    "AccessDenied": "access denied",
    "InvalidAccessKeyId": "the server does not know the access key",
    "SignatureDoesNotMatch": "the secret key does not match the access key",
    "ExpiredToken": "the session token has expired",
    "InvalidToken": "the session token is not valid",
}
_S3_CODE = re.compile(r"<Code>([A-Za-z]+)</Code>")
_BUCKET = re.compile(r"[A-Za-z0-9._-]+")  # wider than AWS's rules: other stores allow more


def _credentials(location: str) -> dict[str, str]:
    """Static keys, looked for where the AWS SDK (Litestream's client) looks: the environment
    (`AWS_*`, then Litestream's own `LITESTREAM_*`), then the profile `AWS_PROFILE` names
    (`default` without it) in the shared credentials file, then in the shared config file."""
    env = os.environ
    found = _keys(env.get("AWS_ACCESS_KEY_ID"), env.get("AWS_SECRET_ACCESS_KEY"), env.get("AWS_SESSION_TOKEN"))
    found = found or _keys(env.get("LITESTREAM_ACCESS_KEY_ID"), env.get("LITESTREAM_SECRET_ACCESS_KEY"), None)
    if found:
        return found
    profile = env.get("AWS_PROFILE", "default")
    in_config = profile if profile == "default" else f"profile {profile}"  # the config file's spelling
    for path, section in ((_credentials_file(), profile), (_config_file(), in_config)):
        found = _profile_keys(location, path, section)
        if found:
            return found
    return {}


def _credentials_file() -> Path:
    return Path(os.environ.get("AWS_SHARED_CREDENTIALS_FILE") or Path.home() / ".aws" / "credentials")


def _config_file() -> Path:
    return Path(os.environ.get("AWS_CONFIG_FILE") or Path.home() / ".aws" / "config")


def _profile_keys(location: str, path: Path, section: str) -> dict[str, str]:
    """The keys one section of an AWS INI file holds (none: no file, no such section, or not
    both keys). Read as the AWS tools read it: a `%` is a character, not an interpolation, and a
    section given twice is one section. A file that is not INI at all is an error naming it."""
    parser = configparser.RawConfigParser(strict=False)
    try:
        if not parser.read(path, encoding="utf-8") or not parser.has_section(section):
            return {}
    except (configparser.Error, UnicodeDecodeError) as exc:
        raise S3Error(f"{location}: {path}: cannot read it as an AWS credentials file ({_first_line(exc)})") from None
    keys = parser[section]
    return _keys(keys.get("aws_access_key_id"), keys.get("aws_secret_access_key"), keys.get("aws_session_token"))


def _keys(access_key_id: str | None, secret_access_key: str | None, session_token: str | None) -> dict[str, str]:
    """The client's credentials from one source: none unless it has both keys."""
    if not (access_key_id and secret_access_key):
        return {}
    creds = {"access_key_id": access_key_id, "secret_access_key": secret_access_key}
    if session_token:
        creds["session_token"] = session_token
    return creds


def _listing(prefix: str) -> str:
    """What a listing request is, in an error naming the replica's URL before it: "listing /"
    read as the bucket's root, where the replica's own objects were meant."""
    return f"listing {prefix}" if prefix else "listing its objects"


def _no_credentials() -> str:
    """Why no credentials were found: a profile that was asked for by name is named."""
    profile = os.environ.get("AWS_PROFILE")
    if profile:
        return (
            f"no credentials: AWS_PROFILE names {profile!r}, which neither {_credentials_file()} "
            f"nor {_config_file()} holds with both keys"
        )
    return (
        "no credentials (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
        "or LITESTREAM_ACCESS_KEY_ID and LITESTREAM_SECRET_ACCESS_KEY, or AWS_PROFILE)"
    )


def _check_endpoint(location: str, endpoint: str) -> None:
    """Refuse an endpoint the HTTP client cannot parse: obstore would panic on the first request."""
    try:
        url = urlparse(endpoint)
        url.port  # noqa: B018 -- parsing the port is the check (a non-number or > 65535 raises)
        host = url.hostname
    except ValueError as exc:
        raise UsageError(f"{location}: endpoint {endpoint!r} is not a valid URL ({exc})") from None
    if url.scheme not in ("http", "https") or not host:
        raise UsageError(f"{location}: endpoint {endpoint!r} must be http://host[:port] or https://host[:port]")


#: a replica URL's query options, as ltxkit spells them (a config file's S3 fields use the same names)
URL_OPTIONS = ("endpoint", "region", "force-path-style", "skip-verify")
#: the flags among them, and Litestream's other spelling of each (it reads both)
FLAG_SPELLINGS = {"force-path-style": "forcePathStyle", "skip-verify": "skipVerify"}
_CANONICAL = {other: name for name, other in FLAG_SPELLINGS.items()}
_TRUE, _FALSE = ("true", "1", "t", "yes"), ("false", "0", "f", "no")  # Litestream's words for a flag


def _options(location: str, query: str) -> dict[str, str]:
    """A URL's query options, each under its one spelling; an unknown one, or one given twice
    (two values, or both spellings), is refused rather than one of them quietly winning."""
    found: dict[str, str] = {}
    unknown: list[str] = []
    for key, values in parse_qs(query, keep_blank_values=True).items():
        name = _CANONICAL.get(key, key)
        if name not in URL_OPTIONS:
            unknown.append(key)
        elif len(values) > 1 or name in found:
            raise UsageError(f"{location}: {name} is given more than once")
        elif not values[0]:  # `?endpoint=$UNSET`: Litestream would send the keys to AWS instead
            raise UsageError(f"{location}: {name} has no value")
        else:
            found[name] = values[0]
    if unknown:
        raise UsageError(f"{location}: unknown option(s) {', '.join(sorted(unknown))}")
    return found


def _flag(location: str, query: dict[str, str], name: str) -> bool | None:
    """A true/false option (None: not given)."""
    value = query.get(name)
    if value is None:
        return None
    if value.lower() in _TRUE:
        return True
    if value.lower() in _FALSE:
        return False
    raise UsageError(f"{location}: {name}={value} is not true or false")


def _virtual_host(endpoint: str, bucket: str) -> tuple[str, bool]:
    """Where a virtual-hosted request goes with a custom endpoint, as the AWS SDK (Litestream's
    client) decides it: `scheme://bucket.host:port`, or, for an IP address host or a bucket
    name that cannot be a host name, the path-style endpoint after all (the bool: path-style).
    The S3 client takes a custom endpoint as the bucket's own host: given the server's bare
    address, its requests named no bucket, and the first folder of the path became one."""
    url = urlsplit(endpoint)
    host = url.hostname or ""
    try:
        ipaddress.ip_address(host)
        return endpoint, True
    except ValueError:
        pass
    label = r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?"
    # dots in the bucket make hosts a TLS certificate for *.host does not cover: plain http only
    name = rf"{label}(\.{label})*" if url.scheme == "http" else label
    if not re.fullmatch(name, bucket) or not 3 <= len(bucket) <= 63:
        return endpoint, True
    return urlunsplit(url._replace(netloc=f"{bucket}.{url.netloc}")), False


def _with_scheme(endpoint: str) -> str:
    """An endpoint without `http://` or `https://` gets one as Litestream gives it: http for a
    local or private-network host, https for any other."""
    if "://" in endpoint:  # a scheme already (one that is not http or https is refused later)
        return endpoint
    host = urlparse("//" + endpoint).hostname or ""
    local = (
        host in ("localhost", "127.0.0.1")
        or host.startswith(("192.168.", "10."))
        or re.match(r"172\.(1[6-9]|2\d|3[01])\.", host) is not None
        or host.endswith((".local", ".localhost"))
    )
    return ("http://" if local else "https://") + endpoint


class S3Storage:
    """A replica under `s3://bucket/path` (see the module docstring)."""

    layout = OBJECT_STORE
    concurrency = 16
    # obstore runs a tokio runtime on threads: a child forked after it was used can hang on a lock
    # one of those threads held. Remote replicas are decoded in the one process (reads overlap instead).
    fork_safe = False

    def __init__(self, location: str, *, credentials: dict[str, str] | None = None) -> None:
        url = urlparse(location)
        if url.scheme != "s3" or not url.netloc:
            raise UsageError(f"{location}: expected s3://bucket/path")
        self.label = location
        self.bucket = url.netloc
        if not _BUCKET.fullmatch(self.bucket):  # the client would panic on its first request
            raise UsageError(f"{location}: {self.bucket!r} is not a bucket name (letters, digits, '.', '-', '_')")
        # as Litestream reads the URL: the path percent-decoded (`sp%20ace` is `sp ace`) and cleaned
        # (`a//b` is `a/b`, `x/../y` is `y`), so both tools name the same objects
        self.root = posixpath.normpath("/" + unquote(url.path)).strip("/")
        query = _options(location, url.query)
        endpoint = query.get("endpoint")
        if endpoint is not None:
            endpoint = query["endpoint"] = _with_scheme(endpoint)
            _check_endpoint(location, endpoint)
        region = query.get("region") or ("us-east-1" if endpoint else os.environ.get("AWS_REGION", "us-east-1"))
        forced = _flag(location, query, "force-path-style")
        path_style = bool(endpoint) if forced is None else forced  # an endpoint implies it unless told not to
        if endpoint and not path_style:
            endpoint, path_style = _virtual_host(endpoint, self.bucket)
        canonical = {k: v for k, v in query.items() if v}
        self.url = f"s3://{self.bucket}/{quote(self.root)}" + (
            f"?{urlencode(sorted(canonical.items()))}" if canonical else ""
        )
        creds = credentials or _credentials(location)
        if not creds:
            raise S3Error(f"{location}: {_no_credentials()}")
        from obstore.store import S3Store

        client: dict[str, Any] = {"timeout": "60s", "connect_timeout": "5s"}
        if endpoint and endpoint.startswith("http://"):
            client["allow_http"] = True
        if _flag(location, query, "skip-verify"):
            client["allow_invalid_certificates"] = True
        config: dict[str, Any] = {"region": region, "virtual_hosted_style_request": not path_style, **creds}
        if endpoint:
            config["endpoint"] = endpoint
        try:
            self._store: S3Store = S3Store(
                self.bucket,
                prefix=self.root or None,
                client_options=client,  # type: ignore[arg-type]
                retry_config={
                    "max_retries": 4,
                    "retry_timeout": timedelta(seconds=30),
                    "backoff": {
                        "init_backoff": timedelta(milliseconds=100),
                        "max_backoff": timedelta(seconds=5),
                        "base": 2,
                    },
                },
                **config,
            )
        except ValueError as exc:  # obstore refuses a prefix it cannot make a path of
            raise UsageError(f"{location}: {exc}") from None
        # what the opening listing of a replica to be read found (`open_s3`), handed once to the
        # first `top_names` call: a command opens a replica and at once asks what is in it
        self._top_at_open: frozenset[str] | None = None

    # ---- error mapping ----------------------------------------------------------------------------

    def _call(self, what: str, fn: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
        """A request that reads: from the main thread, one a signal can abandon (`_interruptible`)."""
        return self._request(what, fn, args, kwargs, abandon=threading.current_thread() is _MAIN_THREAD)

    def _write(self, what: str, fn: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
        """A request that changes the store: never abandoned. A signal acts once its answer is in
        (at worst after its timeout), so whoever unwinds knows whether it happened; repair's
        back-out undoes what landed, and a PUT landing after it would leave a half-undone repair."""
        return self._request(what, fn, args, kwargs, abandon=False)

    def _request(self, what: str, fn: Callable[..., _T], args: Any, kwargs: Any, *, abandon: bool) -> _T:
        try:
            if abandon:
                return _interruptible(fn, self._store, *args, **kwargs)
            with _counted():
                return fn(self._store, *args, **kwargs)
        except BaseException as exc:  # mapped here, off the path every successful request takes
            mapped = self._mapped(what, exc)
            if mapped is None:
                raise
            raise mapped from (None if isinstance(mapped, (FileNotFoundError, FileExistsError)) else exc)

    def _mapped(self, what: str, exc: BaseException) -> BaseException | None:
        """What a backend error means to a caller (None: not the backend's, raise it as it is)."""
        from obstore.exceptions import (
            AlreadyExistsError,
            NotFoundError,
            PermissionDeniedError,
            PreconditionError,
            UnauthenticatedError,
        )

        if isinstance(exc, (NotFoundError, FileNotFoundError)):  # obstore raises either, by call
            return FileNotFoundError(2, "no such object", f"{self.label}: {what}")
        if isinstance(exc, (AlreadyExistsError, PreconditionError)):
            return FileExistsError(17, "object exists", f"{self.label}: {what}")
        found = _S3_CODE.search(str(exc)) if isinstance(exc, Exception) else None
        code = found.group(1) if found else None
        if code == "InvalidRange":  # 416: the range starts past the object's end (it is shorter now)
            return _RangePastEnd(f"{self.label}: {what}: the object ends before the range")
        if code in _REFUSALS:  # the server's own words, whatever error class obstore chose
            return S3Error(f"{self.label}: {what}: {_REFUSALS[code]} ({code})", refused=True)
        if isinstance(exc, (PermissionDeniedError, UnauthenticatedError)):
            # a HEAD's refusal has no body to name the reason: the status is all there is
            status = re.search(r"\b(40[13]) [A-Z][a-z]+", str(exc))
            why = f"HTTP {status.group(0)}: wrong keys, or keys without permission" if status else _first_line(exc)
            return S3Error(f"{self.label}: {what}: access denied ({why})", refused=True)
        if isinstance(exc, Exception):  # obstore's GenericError and friends: connection, bucket, timeouts
            if type(exc).__module__.startswith("obstore") or isinstance(exc, OSError):
                problem = _transport_problem(str(exc))
                return S3Error(f"{self.label}: {what}: {problem or _first_line(exc)}", unreachable=problem is not None)
            return None
        if type(exc).__name__ == "PanicException":  # a Rust panic (pyo3's) is not an Exception
            return S3Error(f"{self.label}: {what}: the S3 client failed ({_first_line(exc)})")
        return None

    # ---- the Storage protocol ---------------------------------------------------------------------

    def list(self, prefix: str, *, after: str | None = None) -> list[Entry]:
        import obstore

        def run(store: S3Store) -> list[Entry]:
            out = []
            for chunk in obstore.list(store, prefix=prefix or None, offset=after, chunk_size=1000):
                for meta in chunk:
                    ts = meta["last_modified"]
                    tag = _etag(meta.get("e_tag"))
                    out.append(Entry(meta["path"], meta["size"], int(ts.timestamp() * 1e9), tag=tag))
            return out

        entries = self._call(_listing(prefix), run)
        entries.sort(key=lambda e: e.key)
        return entries

    def exists(self) -> bool:
        """Does anything live under the replica's path (a replica, or a start of one)?"""
        return self.has_any("")

    def top_names(self) -> frozenset[str]:
        """One listing with a delimiter: a replica has two or three of its ten levels, and listing
        the others one by one cost a request each (a fleet verify made thirteen per replica).

        The first call after `open_s3` opened a replica to read takes the answer of the listing
        that found it, made moments before; every later call lists again (nothing is kept that
        a replicator, which lists over and over, could read stale)."""
        top, self._top_at_open = self._top_at_open, None
        if top is not None:
            return top
        import obstore

        def run(store: S3Store) -> frozenset[str]:
            found = obstore.list_with_delimiter(store, None)
            names = [p.rstrip("/") for p in found["common_prefixes"]]
            names += [meta["path"] for meta in found["objects"]]
            return frozenset(name.rsplit("/", 1)[-1] for name in names)

        return self._call(_listing(""), run)

    def has_any(self, prefix: str) -> bool:
        """One listing of the level below `prefix` (its folders and objects): a flat listing
        would fetch a page of 1,000 keys to see one, ten times the time at every command's start."""
        import obstore

        def run(store: S3Store) -> bool:
            found = obstore.list_with_delimiter(store, prefix or None)
            return bool(found["common_prefixes"] or found["objects"])

        return self._call(_listing(prefix), run)

    def exact_created_ns(self, key: str) -> int | None:
        """The `litestream-timestamp` metadata of an object (None when it has none)."""
        import obstore

        result = self._call(key, obstore.get, key, options={"head": True})
        value = result.attributes.get(TIMESTAMP_KEY)
        if not value:
            return None
        try:
            return rfc3339_ns(str(value))
        except ValueError:
            return None

    def open(self, key: str, *, size: int | None = None) -> BinaryIO:
        """A reader of one object; `size`, when the caller knows it, spares a HEAD."""
        import obstore

        if size is None:
            size = self._call(key, obstore.head, key)["size"]
        return _RangeReader(self, key, size)  # type: ignore[return-value]

    def read_range(self, key: str, start: int, length: int) -> bytes:
        return bytes(self._range_view(key, start, length))

    def _range_view(self, key: str, start: int, length: int) -> memoryview:
        """A ranged GET's body, not copied: a large object is read in 8 MiB chunks, and a copy of
        each (a fresh allocation the kernel must fault in) cost more than its decompression."""
        import obstore

        if length <= 0:
            return memoryview(b"")
        try:
            return memoryview(self._call(key, obstore.get_range, key, start=start, length=length))
        except _RangePastEnd:  # as a file's read past its end: nothing (the object is shorter)
            return memoryview(b"")

    def read_bytes(self, key: str, *, listed_size: int | None = None) -> bytes:
        """The whole object. With the size a listing gave, one ranged GET for one byte more than
        that: an object no larger comes back whole (a range past the end is cut at the end), and
        only one that grew since it was listed needs the plain GET. A plain GET waits on the
        client twice (headers, then body), and restores read thousands of small objects."""
        import obstore

        if listed_size:
            data = self._range_view(key, 0, listed_size + 1)  # empty when emptied since it was listed
            if len(data) <= listed_size:
                return bytes(data)
        return bytes(self._call(key, lambda store, k: obstore.get(store, k).bytes(), key))

    def make_staging(self) -> Path:
        """A local temporary directory: objects are uploaded from it. The first one a process makes
        first removes those of ltxkit processes that are gone: a replicator killed while it built
        a snapshot left one behind, as large as the database, where nothing would ever look."""
        global _swept_tmp
        if not _swept_tmp:
            _swept_tmp = True
            remove_dead_staging(tempfile.gettempdir())
        return Path(tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{os.getpid()}-"))

    def stale_staging(self) -> tuple[str, ...]:
        return ()  # staging is local and temporary; nothing of it lives in the bucket

    def remove_stale_staging(self) -> int:
        return 0  # staging is local and temporary; nothing of it lives in the bucket

    def claim_writer(self, owner: str) -> None:
        """Nothing to hold: S3 has no lock an object store client can take and lose with its
        process. Create-only publishing still keeps two writers from replacing each other's files."""

    def release_writer(self) -> None:
        pass

    def writer(self) -> str | None:
        return None  # nothing held (`claim_writer`): repair watches the replica instead

    def keep_writer(self) -> bool:
        return False  # nothing held (`claim_writer`)

    def publish(self, key: str, source: Path, *, created_ms: int) -> Entry:
        import obstore

        stamp = datetime.fromtimestamp(created_ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        size = source.stat().st_size
        with open(source, "rb") as fh:
            put = self._write(key, obstore.put, key, fh, mode="create", attributes={TIMESTAMP_KEY: stamp})
        source.unlink()
        return Entry(key, size, created_ms * 1_000_000, tag=_etag(put.get("e_tag")))

    def put_bytes(self, key: str, data: bytes) -> None:
        import obstore

        self._write(key, obstore.put, key, data, mode="create")

    def delete(self, keys: Sequence[str]) -> None:
        import obstore

        keys = list(keys)
        for i in range(0, len(keys), 1000):
            self._write("delete", obstore.delete, keys[i : i + 1000])

    def quarantine(self, key: str, new_key: str) -> None:
        """Copy, prove the copy, then delete the original."""
        import obstore

        result = self._call(key, obstore.get, key)
        attrs = dict(result.attributes)
        data = bytes(result.bytes())
        self._write(new_key, obstore.put, new_key, data, mode="create", attributes=attrs or None)
        if self.read_bytes(new_key) != data:
            raise S3Error(f"{self.label}: the copy of {key} at {new_key} does not read back the same; kept both")
        self.delete([key])


class _RangeReader(io.RawIOBase):
    """A seekable read-only view of one object, by ranged GETs.

    Reads start small (a quick verify wants a header and a tail, not megabytes) and double while
    the caller reads on in order, up to `_READ_AHEAD`; from then on the next `_AHEAD_DEPTH` chunks
    are fetched in the background while the caller decodes this one, so a large file streams at
    the speed of the slower of the two instead of their sum (at most 32 MiB held per reader)."""

    def __init__(self, storage: S3Storage, key: str, size: int) -> None:
        self._s, self._key, self._size = storage, key, size
        self._pos = 0
        self._buf = memoryview(b"")
        self._buf_at = 0
        self._chunk = _FIRST_READ
        self._ahead: deque[tuple[int, Future[memoryview]]] = deque()  # (offset, GET in flight), in order

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self._pos, 2: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def _fetch(self, at: int, want: int) -> memoryview:
        while self._ahead:
            offset, future = self._ahead.popleft()
            if offset == at:
                data = future.result()
                if len(data) >= want:
                    return data
                break
            future.cancel()  # the caller went elsewhere: what was fetched ahead is of no use
        self._cancel_ahead()
        return self._s._range_view(self._key, at, want)

    def _cancel_ahead(self) -> None:
        while self._ahead:
            self._ahead.popleft()[1].cancel()

    def _read_ahead(self, following: int) -> None:
        """Keep `_AHEAD_DEPTH` chunks after `following` in flight."""
        if self._ahead:
            following = self._ahead[-1][0] + _READ_AHEAD
        while len(self._ahead) < _AHEAD_DEPTH and following < self._size:
            length = min(_READ_AHEAD, self._size - following)
            self._ahead.append((following, _background().submit(self._s._range_view, self._key, following, length)))
            following += length

    def readinto(self, view: Any) -> int:
        n = len(view)
        if n == 0 or self._pos >= self._size:
            return 0
        start = self._pos - self._buf_at
        if not (0 <= start < len(self._buf)):
            sequential = self._pos == self._buf_at + len(self._buf) and len(self._buf) > 0
            self._chunk = min(self._chunk * 2, _READ_AHEAD) if sequential else _FIRST_READ
            want = min(max(n, self._chunk), self._size - self._pos)
            self._buf = self._fetch(self._pos, want)
            self._buf_at, start = self._pos, 0
            if not len(self._buf):
                return 0
            if self._chunk == _READ_AHEAD and len(self._buf) == _READ_AHEAD:
                self._read_ahead(self._pos + len(self._buf))
        chunk = self._buf[start : start + n]
        view[: len(chunk)] = chunk
        self._pos += len(chunk)
        return len(chunk)

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            size = self._size - self._pos
        buf = bytearray(size)
        got = 0
        while got < size:
            n = self.readinto(memoryview(buf)[got:])
            if n == 0:
                break
            got += n
        return bytes(buf[:got])

    def close(self) -> None:
        self._cancel_ahead()
        super().close()


_swept_tmp = False  # has this process removed dead processes' staging from $TMPDIR (`make_staging`)
_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _background() -> ThreadPoolExecutor:
    """The threads that fetch the next chunk of large objects (shared: a verify opens thousands)."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(S3Storage.concurrency, thread_name_prefix="ltxkit-s3-ahead")
        return _pool


def _etag(value: str | None) -> str | None:
    """An ETag as a comparable tag: without the quotes (and weak marker) that a PUT's response
    header and a listing's XML may spell differently from one provider to the next."""
    if not value:
        return None
    value = value.strip()
    return (value[2:] if value.startswith("W/") else value).strip('"') or None


_MAIN_THREAD = threading.main_thread()
_in_flight = 0  # client calls not yet returned (`requests_in_flight`)
_in_flight_lock = threading.Lock()


@contextlib.contextmanager
def _counted() -> Iterator[None]:
    global _in_flight
    with _in_flight_lock:
        _in_flight += 1
    try:
        yield
    finally:
        with _in_flight_lock:
            _in_flight -= 1


def requests_in_flight() -> int:
    """How many requests to an object store have not returned. After a Ctrl-C, one stuck on a
    server that stopped answering would hold the interpreter's exit (it joins the threads that
    run them) for the rest of its timeout: the CLI then leaves without waiting (`cli.main`)."""
    return _in_flight


def _interruptible(fn: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
    """`fn(*args, **kwargs)` on a helper thread, while the main thread waits on a lock.

    Python runs a signal's handler on the main thread between bytecodes: a main thread inside the
    Rust client waits out a stalled request (60 s, and its retries) before Ctrl-C or SIGTERM can
    act. Waiting on a lock, it is interrupted at once; the abandoned request ends on its own
    thread (a daemon: nothing waits for it). Only reads are run so: a write is never abandoned
    (`S3Storage._write`). Worker threads call the client directly; the main thread waits on their
    futures, which a signal interrupts too. Costs a thread start (tens of
    microseconds) per call from the main thread, which makes few: the bulk run on workers."""
    outcome: list[tuple[bool, Any]] = []
    done = threading.Event()

    def run() -> None:
        try:
            with _counted():
                outcome.append((True, fn(*args, **kwargs)))
        except BaseException as exc:  # handed to the waiting thread, raised there
            outcome.append((False, exc))
        finally:
            done.set()

    threading.Thread(target=run, name="ltxkit-s3-call", daemon=True).start()
    done.wait()
    ok, value = outcome[0]
    if ok:
        return cast("_T", value)
    raise value


# what object_store's HTTP error says about the connection, in its debug text
_HTTP_KIND = re.compile(r"HttpError \{\s*kind: (\w+)")
_OS_MESSAGE = re.compile(r'message: "([^"]+)"')
_GAVE_UP = re.compile(r"Error performing \w+ (https?://[^/\s?]+)\S* in ([0-9.]+)(ms|s)(?:, after (\d+) retries)?")


def _transport_problem(text: str) -> str | None:
    """A failed request's connection problem as a person says it ("timed out", "connection
    refused"), with where and how long it was tried; None when the error is not about the
    connection (the client's own first line says it better)."""
    kind = _HTTP_KIND.search(text)
    if kind is None:
        return None
    gave_up = _GAVE_UP.search(text)
    host = gave_up.group(1) if gave_up else "the server"
    tried = ""
    if gave_up:
        seconds = float(gave_up.group(2)) / (1000 if gave_up.group(3) == "ms" else 1)
        retries = int(gave_up.group(4) or 0)
        tried = f" (gave up after {seconds:.1f} s" + (f" and {retries} retries)" if retries else ")")
    if kind.group(1) == "Timeout":
        return f"timed out: {host} did not answer{tried}"
    if kind.group(1) == "Connect":
        why = _OS_MESSAGE.search(text)
        return f"cannot connect to {host}: {why.group(1).lower() if why else 'no connection'}{tried}"
    if kind.group(1) == "Interrupted":
        return f"{host} closed the connection mid-request{tried}"
    return None


# what only a replica holds below its path: a level folder, or ltxkit's ledger or quarantine
# (a replica whose every LTX file is gone is still one, damaged, not a typo)
_REPLICA_NAMES = frozenset({OBJECT_STORE.level_dir(level) for level in LEVELS} | {LEDGER_DIR, QUARANTINE_DIR})


def _not_a_replica(location: str, top: frozenset[str]) -> str:
    """Why a path holding objects is no replica, and where the user may have meant."""
    if LEGACY_GENERATIONS_DIR in top:
        return (
            f"{location}: a Litestream 0.3 replica (generations/, no level folders), which ltxkit does not "
            "read; `litestream restore` 0.5 restores it"
        )
    shown = ", ".join(sorted(top)[:5]) + (", ..." if len(top) > 5 else "")
    return (
        f"{location}: not a replica (no level folders 0000-0009 below it; it holds {shown}): "
        "name a replica, or verify --recursive to check every replica below this path"
    )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__


def open_object(url: str) -> tuple[S3Storage, str, int]:
    """One object named by its URL (`s3://bucket/path/0000/<min>-<max>.ltx?endpoint=...`): the
    storage of its folder, its name there and its size. A missing object is UsageError "no such
    object", a missing bucket "no such bucket" (a HEAD's 404 says only "not found", so the folder
    is listed to tell which)."""
    import obstore

    parts = urlsplit(url)
    folder, _, name = parts.path.rpartition("/")
    if not name:
        raise UsageError(f"{url}: name one object (s3://bucket/path/file.ltx), or give the replica")
    storage = S3Storage(urlunsplit((parts.scheme, parts.netloc, folder, parts.query, "")))
    storage.label = url  # what every message names: the object the user gave
    name = unquote(name)
    try:
        return storage, name, int(storage._call(name, obstore.head, name)["size"])
    except FileNotFoundError:
        storage.has_any("")  # raises for a missing bucket; a folder without the object does not
        raise UsageError(f"{url}: no such object") from None


def open_s3(location: str, *, create: bool, credentials: dict[str, str] | None = None) -> S3Storage:
    """The replica at `location`. For one to be written (`create`), a first request: refused
    credentials or a missing bucket end the command at once, where a replicator would retry them
    for ever; an unreachable server does not (the replicator waits for it, as Litestream does)."""
    storage = S3Storage(location, credentials=credentials)
    if not create:
        top = storage.top_names()  # the listing that says whether anything is there says what
        if not top:
            raise ReplicaNotFound(f"{location}: no objects under this path: not a replica")
        if not top & _REPLICA_NAMES:
            raise ReplicaNotFound(_not_a_replica(location, top))
        storage._top_at_open = top
        return storage
    try:
        storage.exists()
    except S3Error as exc:
        if exc.refused:
            raise
    return storage
