"""The storage boundary: Litestream's two key layouts, and the local backend's operations (listing
with creation times, ranged and whole reads, create-only publishing, quarantine, batch delete),
which are all that verify, restore and repair may use."""

from __future__ import annotations

import os
import pickle
import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ltxkit.format.schema import format_filename
from ltxkit.replica.keys import DIRECTORY, LEVELS, OBJECT_STORE, quarantine_key
from ltxkit.replica.layout import list_replica
from ltxkit.replica.storage import LocalStorage, ReplicaNotFound, open_storage

TXID = st.integers(1, 2**64 - 1)


@given(st.sampled_from(list(LEVELS)), TXID, TXID)
def test_both_layouts_round_trip_a_key(level: int, a: int, b: int) -> None:
    lo, hi = min(a, b), max(a, b)
    assert DIRECTORY.key(level, lo, hi) == f"ltx/{level}/{format_filename(lo, hi)}"
    assert OBJECT_STORE.key(level, lo, hi) == f"{level:04x}/{format_filename(lo, hi)}"
    for layout in (DIRECTORY, OBJECT_STORE):
        key = layout.key(level, lo, hi)
        assert layout.parse(key) == (level, lo, hi)
        assert any(key.startswith(area + "/") for area in layout.areas())


@pytest.mark.parametrize(
    "key",
    [
        "ltx/0/0000000000000001-0000000000000001.ltx.tmp",
        "ltx/10/0000000000000001-0000000000000001.ltx",
        "ltx/00/0000000000000001-0000000000000001.ltx",
        "ltx/0/sub/0000000000000001-0000000000000001.ltx",
        "ltx/0/0000000000000001-0000000000000001.LTX",
        "0000/0000000000000001-0000000000000001.ltx",
        "quarantine/x/ltx/0/0000000000000001-0000000000000001.ltx",
    ],
)
def test_directory_layout_refuses_what_litestream_would_not_read(key: str) -> None:
    assert DIRECTORY.parse(key) is None


def test_object_store_layout_is_hex_levels() -> None:
    assert OBJECT_STORE.parse("0009/0000000000000001-0000000000000005.ltx") == (9, 1, 5)
    assert OBJECT_STORE.parse("9/0000000000000001-0000000000000005.ltx") is None
    assert OBJECT_STORE.parse("ltx/9/0000000000000001-0000000000000005.ltx") is None
    assert OBJECT_STORE.areas() == [f"{level:04x}" for level in LEVELS]


def make_replica(root: Path) -> LocalStorage:
    (root / "ltx" / "0").mkdir(parents=True)
    return LocalStorage(root)


def test_listing_gives_sizes_and_creation_times(tmp_path: Path) -> None:
    storage = make_replica(tmp_path)
    f = tmp_path / "ltx" / "0" / format_filename(1, 1)
    f.write_bytes(b"x" * 123)
    os.utime(f, ns=(5_000_000_000, 7_000_000_000))
    (tmp_path / "ltx" / "0" / "junk.tmp").write_bytes(b"")
    listing = list_replica(storage)
    [rf] = listing.files
    assert (rf.level, rf.min_txid, rf.max_txid, rf.size, rf.created_ms) == (0, 1, 1, 123, 7000)
    assert [e.key for e in listing.stray] == ["ltx/0/junk.tmp"]


def test_reads(tmp_path: Path) -> None:
    storage = make_replica(tmp_path)
    key = DIRECTORY.key(0, 1, 1)
    (tmp_path / key).write_bytes(bytes(range(256)))
    assert storage.read_bytes(key) == bytes(range(256))
    assert storage.read_range(key, 10, 5) == bytes(range(10, 15))
    with storage.open(key) as fh:
        fh.seek(250)
        assert fh.read() == bytes(range(250, 256))


def test_publish_is_create_only_and_sets_the_creation_time(tmp_path: Path) -> None:
    storage = make_replica(tmp_path)
    staging = storage.make_staging()
    assert staging.parent == tmp_path and staging.name.startswith(".ltxkit-staging-")
    key = DIRECTORY.key(9, 1, 4)
    src = staging / "a"
    src.write_bytes(b"new")
    entry = storage.publish(key, src, created_ms=1_700_000_000_123)
    assert not src.exists()
    assert (tmp_path / key).read_bytes() == b"new"
    assert entry.size == 3 and (tmp_path / key).stat().st_mtime_ns == 1_700_000_000_123_000_000
    again = staging / "b"
    again.write_bytes(b"other")
    with pytest.raises(FileExistsError):
        storage.publish(key, again, created_ms=0)
    assert (tmp_path / key).read_bytes() == b"new"  # never silently replaced
    with pytest.raises(FileExistsError):
        storage.put_bytes(key, b"x")
    storage.put_bytes("quarantine/s/manifest.json", b"{}")
    assert (tmp_path / "quarantine" / "s" / "manifest.json").read_bytes() == b"{}"
    assert [p.name for p in staging.iterdir()] == ["b"]  # nothing of the refused publish left behind


def test_quarantine_and_delete(tmp_path: Path) -> None:
    storage = make_replica(tmp_path)
    key = DIRECTORY.key(0, 1, 1)
    (tmp_path / key).write_bytes(b"data")
    dest = quarantine_key("stamp", key)
    storage.quarantine(key, dest)
    assert not (tmp_path / key).exists() and (tmp_path / dest).read_bytes() == b"data"
    (tmp_path / key).write_bytes(b"again")
    with pytest.raises(FileExistsError):
        storage.quarantine(key, dest)
    assert (tmp_path / dest).read_bytes() == b"data"
    storage.delete([key, dest, "ltx/0/never-was"])
    assert not (tmp_path / key).exists() and not (tmp_path / dest).exists()


def test_open_storage_by_path_and_url_and_hand_to_a_worker(tmp_path: Path) -> None:
    root = tmp_path / "my%20replica"  # a file:// URL names this directory as Litestream reads it
    make_replica(root)
    for location in (str(root), f"file://{root}", f"file://{tmp_path}/my replica", f"file:///{root}?x=1"):
        storage = open_storage(location)
        assert storage.layout is DIRECTORY
        again = pickle.loads(pickle.dumps(storage))  # what a worker process is given
        assert again.url == storage.url
        assert [e.key for e in again.list("ltx/0")] == [e.key for e in storage.list("ltx/0")]
    with pytest.raises(ReplicaNotFound, match="file:///path"):
        open_storage(f"file://localhost{root}")  # Litestream reads this as /localhost/...
    with pytest.raises(ReplicaNotFound, match="invalid URL escape '%zz'"):
        open_storage(f"file://{tmp_path}/%zz")
    with pytest.raises(ReplicaNotFound, match="not a replica"):
        open_storage(str(tmp_path))
    with pytest.raises(ReplicaNotFound, match="no such directory"):
        open_storage(str(tmp_path / "missing"))
    (tmp_path / "a-file").write_text("not a replica")
    with pytest.raises(ReplicaNotFound, match="not a directory"):
        open_storage(str(tmp_path / "a-file"))
    with pytest.raises(ReplicaNotFound, match="file:///path"):
        open_storage("file://")  # no path: never the current directory
    with pytest.raises(ReplicaNotFound, match="file:///path"):
        open_storage(f"file://otherhost{root}")
    with pytest.raises(ReplicaNotFound, match="unsupported replica URL"):
        open_storage("gs://bucket/path")


def test_s3_paths_are_read_as_litestream_reads_them(monkeypatch: pytest.MonkeyPatch) -> None:
    """Percent-decoded and cleaned, as Go's url.Parse and path.Clean give them to Litestream:
    otherwise a handoff between the tools writes two replicas (the S3 audit found `sp%20ace`)."""
    from ltxkit.replica.s3 import S3Storage

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "a")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "b")
    end = "?endpoint=http://127.0.0.1:9"
    for typed, root in (("sp%20ace", "sp ace"), ("a//b", "a/b"), ("x/../y", "y"), ("p/", "p"), ("100%25/x", "100%/x")):
        storage = S3Storage(f"s3://bucket/{typed}{end}")
        assert storage.root == root, typed
        assert S3Storage(storage.url).root == root  # the URL workers reopen it by names the same objects


def test_s3_url_options_are_read_as_litestream_reads_them(monkeypatch: pytest.MonkeyPatch) -> None:
    """Litestream takes `forcePathStyle` and `skipVerify` as well as the dashed names, and gives an
    endpoint with no scheme one (http for a local host): a URL it takes must not be refused. What
    it would read silently one way or the other (a flag that is no flag, an option twice) is refused,
    and a bucket name the S3 client would panic on is said in a line."""
    from ltxkit.errors import UsageError
    from ltxkit.replica.s3 import S3Storage

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "a")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "b")
    same = S3Storage("s3://bucket/app?endpoint=127.0.0.1:9&forcePathStyle=true&skipVerify=t")
    assert same.url == "s3://bucket/app?endpoint=http%3A%2F%2F127.0.0.1%3A9&force-path-style=true&skip-verify=t"
    assert S3Storage(same.url).url == same.url  # reopened by its URL, it is the same replica
    assert "endpoint=https%3A%2F%2Fs3.example.com" in S3Storage("s3://bucket/app?endpoint=s3.example.com").url
    assert "http%3A%2F%2Fminio.local" in S3Storage("s3://bucket/app?endpoint=minio.local").url
    for url, needle in [
        ("s3://bucket/app?endpoint=http://h:9&force-path-style=maybe", "force-path-style=maybe is not true or false"),
        ("s3://bucket/app?forcePathStyle=true&force-path-style=false", "force-path-style is given more than once"),
        ("s3://bucket/app?endpoint=http://a:1&endpoint=http://b:1", "endpoint is given more than once"),
        ("s3://bucket/app?storage-class=GLACIER", "unknown option(s) storage-class"),
        ("s3://re plicas/app", "'re plicas' is not a bucket name"),
        # parse_qs drops an option without a value: `&bogus` and `?endpoint=$UNSET` passed silently,
        # the latter sending the keys to AWS
        ("s3://bucket/app?endpoint=http://h:9&bogus", "unknown option(s) bogus"),
        ("s3://bucket/app?bogus=", "unknown option(s) bogus"),
        ("s3://bucket/app?endpoint=", "endpoint has no value"),
        ("s3://bucket/app?endpoint=http://h:9&forcePathStyle", "force-path-style has no value"),
    ]:
        with pytest.raises(UsageError, match=re.escape(needle)):
            S3Storage(url)


def test_force_path_style_false_sends_requests_where_litestream_sends_them(monkeypatch: pytest.MonkeyPatch) -> None:
    """With an endpoint and `force-path-style=false`, the S3 client took the server's address as
    the bucket's own host: its requests named no bucket, and the path's first folder became one
    (a replicator wrote into another bucket). As the AWS SDK: `bucket.host` for a host name, and
    path-style after all for an IP address (tests/test_s3.py shows that one against Litestream)."""
    from ltxkit.replica.s3 import S3Error, S3Storage

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "a")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "b")
    storage = S3Storage("s3://replicas/app?endpoint=http://localhost:1&force-path-style=false")
    with pytest.raises(S3Error) as info:
        storage.has_any("")
    assert "replicas.localhost:1" in str(info.value), info.value
    assert "force-path-style=false" in storage.url  # the URL the user gave, not the host it made


def test_credentials_files_are_read_as_the_aws_tools_read_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A `%` in a secret and a section given twice gave "internal error" (Python's INI defaults);
    a profile kept in ~/.aws/config, which Litestream finds, was "no credentials"; a file that is
    no INI file was a three-line internal error."""
    from ltxkit.replica.s3 import S3Error, _credentials

    for prefix in ("AWS", "LITESTREAM"):
        monkeypatch.delenv(f"{prefix}_ACCESS_KEY_ID", raising=False)
        monkeypatch.delenv(f"{prefix}_SECRET_ACCESS_KEY", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    creds, config = tmp_path / "credentials", tmp_path / "config"
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(creds))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    url = "s3://bucket/app"

    creds.write_text("[default]\naws_access_key_id = k\naws_secret_access_key = abc%def\n")
    assert _credentials(url) == {"access_key_id": "k", "secret_access_key": "abc%def"}
    creds.write_text("[default]\naws_access_key_id = k\n[default]\naws_secret_access_key = s\n")
    assert _credentials(url) == {"access_key_id": "k", "secret_access_key": "s"}

    creds.unlink()
    config.write_text("[profile prof]\naws_access_key_id = pk\naws_secret_access_key = ps\n")
    monkeypatch.setenv("AWS_PROFILE", "prof")
    assert _credentials(url) == {"access_key_id": "pk", "secret_access_key": "ps"}
    creds.write_text("[prof]\naws_access_key_id = ck\naws_secret_access_key = cs\n")
    assert _credentials(url)["access_key_id"] == "ck"  # the credentials file first, as the SDK reads them

    creds.write_text("aws_access_key_id = k\n")
    with pytest.raises(S3Error) as info:
        _credentials(url)
    message = str(info.value)
    assert message.startswith(f"{url}: {creds}: cannot read it as an AWS credentials file") and "\n" not in message


def test_a_profile_asked_for_by_name_and_missing_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from ltxkit.replica.s3 import S3Error, S3Storage

    for prefix in ("AWS", "LITESTREAM"):
        monkeypatch.delenv(f"{prefix}_ACCESS_KEY_ID", raising=False)
        monkeypatch.delenv(f"{prefix}_SECRET_ACCESS_KEY", raising=False)
    creds = tmp_path / "credentials"
    creds.write_text("[work]\naws_access_key_id = a\naws_secret_access_key = b\n")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(creds))
    monkeypatch.setenv("AWS_PROFILE", "work")
    S3Storage("s3://bucket/app")  # found
    monkeypatch.setenv("AWS_PROFILE", "nosuch")
    with pytest.raises(S3Error, match=f"AWS_PROFILE names 'nosuch', which neither {re.escape(str(creds))} nor "):
        S3Storage("s3://bucket/app")


def test_etags_compare_whatever_quotes_a_provider_puts_around_them() -> None:
    """The replicator compares the ETag its PUT got with the one a listing shows: a provider that
    quotes one and not the other must not look like another replicator replacing a file."""
    from ltxkit.replica.s3 import _etag

    assert _etag('"9b2cf535f27731c974343645a3985328"') == _etag("9b2cf535f27731c974343645a3985328")
    assert _etag('W/"abc-2"') == _etag(' "abc-2" ') == "abc-2"  # weak marker, spaces, a multipart tag
    assert _etag('"abc"') != _etag('"abd"')
    assert _etag(None) is None and _etag("") is None and _etag('""') is None


def test_an_s3_replicator_removes_the_local_staging_killed_ones_left(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """S3 builds its files in $TMPDIR, outside any replica a later run looks in: a replicator
    killed mid-build left its staging (a snapshot as large as the database) there for good."""
    import subprocess
    import tempfile

    from ltxkit.replica import s3

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "a")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "b")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(s3, "_swept_tmp", False, raising=False)
    gone = subprocess.Popen(["true"])
    gone.wait()  # a process id that no process holds now
    dead = tmp_path / f".ltxkit-staging-{gone.pid}-abc"
    dead.mkdir()
    (dead / "0000000000000009-0000000000000009.ltx").write_bytes(b"x" * 1000)
    live = tmp_path / f".ltxkit-staging-{os.getpid()}-def"  # a build in progress: kept
    live.mkdir()
    other = tmp_path / "unrelated"
    other.mkdir()
    storage = s3.S3Storage("s3://bucket/app?endpoint=http://127.0.0.1:9")
    made = storage.make_staging()
    assert made.parent == tmp_path and made.name.startswith(f".ltxkit-staging-{os.getpid()}-")
    assert not dead.exists() and live.exists() and other.exists()
    assert storage.stale_staging() == ()  # nothing of it is the replica's: verify names none


def _client_error(endpoint: str) -> str:
    """The text of the error the real S3 client raises for one GET from `endpoint` (short timeouts)."""
    from datetime import timedelta

    import obstore
    from obstore.store import S3Store

    store = S3Store(
        "b",
        endpoint=endpoint,
        region="us-east-1",
        access_key_id="a",
        secret_access_key="b",
        client_options={"timeout": "1s", "connect_timeout": "1s", "allow_http": True},
        retry_config={
            "max_retries": 1,
            "retry_timeout": timedelta(seconds=5),
            "backoff": {"init_backoff": timedelta(milliseconds=10), "max_backoff": timedelta(seconds=0.01), "base": 2},
        },
    )
    with pytest.raises(Exception) as info:
        obstore.get(store, "k").bytes()
    return str(info.value)


def test_a_store_that_does_not_answer_is_said_to_have_timed_out() -> None:
    import socket

    from ltxkit.replica.s3 import _transport_problem

    silent = socket.socket()  # accepts connections (the kernel's backlog), answers nothing
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    port = silent.getsockname()[1]
    try:
        said = _transport_problem(_client_error(f"http://127.0.0.1:{port}"))
    finally:
        silent.close()
    assert said is not None and said.startswith(f"timed out: http://127.0.0.1:{port} did not answer (gave up after ")
    assert said.endswith(" and 1 retries)")
    refused = _transport_problem(_client_error("http://127.0.0.1:9"))
    assert refused is not None and refused.startswith("cannot connect to http://127.0.0.1:9: connection refused")
    assert _transport_problem("Generic S3 error: some other failure") is None


def test_a_store_that_cannot_be_reached_is_an_unreachable_s3_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """What repair's back-out tells apart: a store that does not answer (no step after it is
    tried: each would wait out its timeout) from one that refuses a step (the rest still go)."""
    from ltxkit.replica.s3 import S3Error, S3Storage

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "k")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s")
    storage = S3Storage("s3://bucket/app?endpoint=http://127.0.0.1:9")
    with pytest.raises(S3Error) as info:
        storage.read_bytes("0000/x.ltx")
    assert info.value.unreachable and not info.value.refused
    assert "cannot connect to http://127.0.0.1:9" in str(info.value)
