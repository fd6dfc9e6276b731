"""s3:// replicas on a real SeaweedFS (no mocks), written by the real Litestream and by ltxkit."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import harness as H
from harness.seaweed import SeaweedFS
from ltxkit.format.schema import parse_filename
from ltxkit.replica.storage import open_storage
from tests.replica_builder import Db, write_ltx

pytestmark = pytest.mark.litestream


@pytest.fixture(scope="module")
def seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedFS]:
    sw = SeaweedFS(tmp_path_factory.mktemp("seaweed")).start()
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(sw.env)  # credentials for ltxkit and Litestream; no AWS_CA_BUNDLE (Litestream)
    try:
        yield sw
    finally:
        os.environ.clear()
        os.environ.update(saved)
        sw.stop()


def ltxkit(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ltxkit", *args],
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
        env=env,
    )


def litestream_once(db: Path, url: str) -> None:
    cfg = H.write_config(db.parent / f"{db.name}.s3.yml", {"dbs": [{"path": str(db), "replica": {"url": url}}]})
    r = subprocess.run([H.litestream_bin(), "replicate", "-once", "-config", str(cfg)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def litestream_restore(url: str, out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [H.litestream_bin(), "restore", "-o", str(out), *extra, url], capture_output=True, text=True, timeout=120
    )


def codes(report: str) -> set[str]:
    return {f["code"] for f in json.loads(report)["findings"]}


@pytest.fixture(scope="module")
def litestream_replica(seaweed: SeaweedFS, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, list[str]]:
    """A replica Litestream wrote to SeaweedFS: 6 syncs, a few ms apart; returns (db, url, times)."""
    work = tmp_path_factory.mktemp("ls-s3")
    db = H.make_db(work / "app.db", rows=30)
    url = seaweed.url("apps/one")
    times = []
    with H.pin_wal(db):
        for i in range(6):
            H.write_rows(db, 5, size=700)
            litestream_once(db, url)
            times.append(H.rfc3339_ms(int(time.time() * 1000)))
            time.sleep(0.05 if i != 2 else 1.2)
    return db, url, times


def test_litestream_replica_on_s3_verifies_and_restores_byte_identical(
    litestream_replica: tuple[Path, str, list[str]], tmp_path: Path
) -> None:
    db, url, times = litestream_replica
    keys = [e.key for e in open_storage(url).list("")]
    assert keys and all(k.startswith("0000/") for k in keys)  # Litestream's object layout
    v = ltxkit("verify", url)
    assert v.returncode == 0, v.stdout + v.stderr
    for extra_ls, extra_lk, name in [
        ((), (), "latest"),
        (("-txid", f"{3:016x}"), ("--txid", f"{3:016x}"), "txid"),
        (("-timestamp", times[2]), ("--timestamp", times[2]), "timestamp"),
    ]:
        theirs, ours = tmp_path / f"ls-{name}.db", tmp_path / f"lk-{name}.db"
        r = litestream_restore(url, theirs, *extra_ls)
        assert r.returncode == 0, r.stderr
        k = ltxkit("restore", url, "-o", str(ours), "-q", *extra_lk)
        assert k.returncode == 0, k.stderr
        assert theirs.read_bytes() == ours.read_bytes(), name
    assert H.logical_dump(tmp_path / "lk-latest.db") == H.logical_dump(db)
    assert H.row_count(tmp_path / "lk-timestamp.db") == H.row_count(tmp_path / "lk-txid.db")


@contextlib.contextmanager
def replicating(tmp_path: Path, url: str, rows: int = 20) -> Iterator[tuple[Path, H.Writer, H.LtxkitReplicator]]:
    """A database with a writer and an `ltxkit replicate` of it to `url` (not started yet); the
    replicator is killed and the writer closed whatever the test did."""
    db = H.make_db(tmp_path / "app.db", rows=rows)
    writer = H.Writer(db)
    rep = H.LtxkitReplicator(db, url)
    try:
        yield db, writer, rep
    finally:
        if rep.alive:
            rep.kill9()
        writer.close()


def write_until_it_stops(rep: H.LtxkitReplicator, writer: H.Writer, seconds: float, pause: float) -> None:
    """Commit small transactions until the replicator exits or `seconds` pass."""
    rep.commit_until_it_stops(lambda: writer.write(2), seconds, pause)


def _copy_replica(src_url: str, dst_url: str) -> None:
    src, dst = open_storage(src_url), open_storage(dst_url, create=True)
    for e in src.list(""):
        dst.put_bytes(e.key, src.read_bytes(e.key))


def _replace(url: str, key: str, data: bytes) -> None:
    storage = open_storage(url)
    storage.delete([key])
    storage.put_bytes(key, data)


def _mirror_to_directory(url: str, root: Path) -> None:
    storage = open_storage(url)
    for e in storage.list(""):
        level, name = e.key.split("/")
        path = root / "ltx" / str(int(level, 16)) / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(storage.read_bytes(e.key))


@pytest.mark.parametrize("damage", ["flip", "truncate", "delete-l0"])
def test_damaged_objects_get_the_same_codes_as_on_a_directory(
    litestream_replica: tuple[Path, str, list[str]], seaweed: SeaweedFS, tmp_path: Path, damage: str
) -> None:
    _db, url, _times = litestream_replica
    copy = seaweed.url(f"damaged/{damage}")
    _copy_replica(url, copy)
    storage = open_storage(copy)
    key = [e.key for e in storage.list("0000/")][3]
    data = storage.read_bytes(key)
    if damage == "flip":
        _replace(copy, key, data[:200] + bytes([data[200] ^ 0xFF]) + data[201:])
    elif damage == "truncate":
        _replace(copy, key, data[: len(data) - 40])
    else:
        storage.delete([key])
    local = tmp_path / "local"
    _mirror_to_directory(copy, local)
    on_s3 = ltxkit("verify", copy, "--format", "json")
    on_dir = ltxkit("verify", str(local), "--format", "json")
    assert on_s3.returncode == on_dir.returncode == 1
    found = codes(on_s3.stdout)
    assert found == codes(on_dir.stdout)
    expected = {"flip": "file-checksum-mismatch", "truncate": "truncated", "delete-l0": "txid-gap"}[damage]
    assert expected in found or (damage == "flip" and "page-decompress-failed" in found), found
    if damage != "delete-l0":  # the finding names the object by a URL that inspect takes as it is
        base, _, query = copy.partition("?")
        named = {f["path"] for f in json.loads(on_s3.stdout)["findings"] if f["code"] != "txid-gap"}
        assert f"{base}/{key}?{query}" in named, named
        again = ltxkit("inspect", f"{base}/{key}?{query}", "--format", "json")
        assert again.returncode == 1 and json.loads(again.stdout)["defects"], again.stdout + again.stderr


def test_repair_from_db_on_s3_keeps_every_original_in_quarantine(
    litestream_replica: tuple[Path, str, list[str]], seaweed: SeaweedFS, tmp_path: Path
) -> None:
    db, url, _times = litestream_replica
    copy = seaweed.url("repair/one")
    _copy_replica(url, copy)
    storage = open_storage(copy)
    key = [e.key for e in storage.list("0000/")][-1]
    data = storage.read_bytes(key)
    _replace(copy, key, data[:300] + bytes([data[300] ^ 0x55]) + data[301:])
    assert ltxkit("verify", copy).returncode == 1
    r = ltxkit("repair", copy, "--rebuild-snapshot", "--from-db", str(db), "--yes")
    assert r.returncode == 0, r.stdout + r.stderr
    base, _, query = copy.partition("?")
    moved_to = next(line for line in r.stdout.splitlines() if line.startswith("moved "))
    where = moved_to.split()[4]  # "moved 1 file to URL (see ...)": the query after the folder
    assert where.startswith(f"{base}/quarantine/") and where.endswith(f"?{query}"), moved_to
    assert ltxkit("verify", copy).returncode == 0
    out = tmp_path / "after.db"
    assert litestream_restore(copy, out).returncode == 0
    assert H.logical_dump(out) == H.logical_dump(db)
    quarantined = [e.key for e in storage.list("quarantine/")]
    assert any(k.endswith(key.rsplit("/", 1)[1]) for k in quarantined), quarantined
    moved = next(k for k in quarantined if k.endswith(key.rsplit("/", 1)[1]))
    assert storage.read_bytes(moved)[:300] == data[:300]  # the original bytes, damage included
    assert any(k.endswith("manifest.json") for k in quarantined)


def test_ltxkit_replicate_to_s3_survives_kill9_and_checkpoint(seaweed: SeaweedFS, tmp_path: Path) -> None:
    url = seaweed.url("ltxkit/app")
    with replicating(tmp_path, url, rows=30) as (db, writer, rep):
        rep.start()
        writer.run_for(0.8)
        rep.kill9()
        writer.run_for(0.3)
        writer.checkpoint("TRUNCATE")
        writer.run_for(0.3)
        rep.start()
        writer.run_for(0.8)
        assert rep.stop() == 0, rep.log_text()[-3000:]
    out = tmp_path / "restored.db"
    r = litestream_restore(url, out)
    assert r.returncode == 0, r.stderr
    assert H.logical_dump(out) == H.logical_dump(db)
    assert H.integrity_check(out) == "ok"
    assert ltxkit("verify", url).returncode == 0
    # the objects carry Litestream's timestamp metadata
    storage = open_storage(url)
    first = storage.list("0000/")[0]
    assert storage.exact_created_ns(first.key) is not None


def test_listing_pages_through_more_than_1000_keys(seaweed: SeaweedFS, tmp_path: Path) -> None:
    chain = tmp_path / "chain"
    db = Db(sound=True)
    write_ltx(chain, 0, 1, 1, db.write(list(range(1, 9))), db.commit)
    for txid in range(2, 1101):  # 1,100 small increments, the database size unchanged
        write_ltx(chain, 0, txid, txid, db.write([3, 4]), db.commit)
    url = seaweed.url("many/keys")
    storage = open_storage(url, create=True)
    files = sorted((tmp_path / "chain" / "ltx" / "0").glob("*.ltx"))
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda p: storage.put_bytes(f"0000/{p.name}", p.read_bytes()), files))
    assert len(storage.list("0000/")) == 1100
    v = ltxkit("verify", url, "--format", "json")
    assert v.returncode == 0, v.stderr
    assert json.loads(v.stdout)["replicas"][0]["files"] == 1100


def test_bad_s3_locations_are_one_line_exit_2(seaweed: SeaweedFS) -> None:
    env_no_creds = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "LITESTREAM_"))}
    env_no_creds["HOME"] = "/nonexistent"
    wrong_secret = {**os.environ, "AWS_SECRET_ACCESS_KEY": "wrong"}
    unknown_key = {**os.environ, "AWS_ACCESS_KEY_ID": "nobody"}
    cases = [
        (seaweed.url("apps/one"), env_no_creds, "no credentials"),
        (seaweed.url("apps/one"), wrong_secret, "the secret key does not match the access key"),
        (seaweed.url("apps/one"), unknown_key, "the server does not know the access key"),
        (f"s3://no-such-bucket/x?endpoint={seaweed.endpoint}", None, "no such bucket (NoSuchBucket)"),
        ("s3://replicas/x?endpoint=http://127.0.0.1:9", None, "connect to http://127.0.0.1:9: connection refused"),
        (seaweed.url("nothing/here"), None, "not a replica"),
        # endpoints the S3 client cannot parse: it used to panic (a Rust traceback, exit 1)
        ("s3://replicas/x?endpoint=notaurl", None, "cannot connect to https://notaurl"),  # a scheme, as Litestream adds
        ("s3://replicas/x?endpoint=ftp://h", None, "endpoint 'ftp://h' must be http"),
        ("s3://replicas/x?endpoint=http://[::1", None, "not a valid URL"),
        ("s3://replicas/x?endpoint=http://127.0.0.1:99999", None, "Port out of range"),
        ("s3://replicas/x?endpoint=http://h:abc", None, "endpoint 'http://h:abc'"),
    ]
    for url, env, needle in cases:
        r = ltxkit("verify", url, env=env)
        assert r.returncode == 2, (url, r.stdout, r.stderr)
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and needle in lines[0] and "Traceback" not in r.stderr, r.stderr


def test_a_store_that_fails_one_path_leaves_the_others_checked_and_reported(
    seaweed: SeaweedFS, litestream_replica: tuple[Path, str, list[str]]
) -> None:
    _db, url, _rows = litestream_replica
    missing = f"s3://no-such-bucket/x?endpoint={seaweed.endpoint}"
    r = ltxkit("verify", missing, url, "--format", "json")
    assert r.returncode == 2, r.stdout + r.stderr  # could not check everything
    report = json.loads(r.stdout)
    assert [rep["ok"] for rep in report["replicas"]] == [True]  # the reachable replica was still checked
    assert len(report["could_not_check"]) == 1 and "no-such-bucket" in report["could_not_check"][0]
    assert "no such bucket (NoSuchBucket)" in r.stderr and "Traceback" not in r.stderr


def test_fleet_of_20_replicas_with_one_broken(seaweed: SeaweedFS, tmp_path: Path) -> None:
    chain = tmp_path / "chain"
    db = Db(sound=True)
    write_ltx(chain, 0, 1, 1, db.write(list(range(1, 9))), db.commit)
    for txid in range(2, 5):
        write_ltx(chain, 0, txid, txid, db.write([3, 4]), db.commit)
    files = sorted((chain / "ltx" / "0").glob("*.ltx"))
    for i in range(20):
        storage = open_storage(seaweed.url(f"fleet/app{i:02d}"), create=True)
        for p in files:
            data = p.read_bytes()
            if i == 13 and p.name.startswith("0000000000000002"):
                data = data[:150] + bytes([data[150] ^ 0xFF]) + data[151:]
            storage.put_bytes(f"0000/{p.name}", data)
    r = ltxkit("verify", seaweed.url("fleet"), "--recursive")
    assert r.returncode == 1, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    verdicts = [line for line in lines if line.startswith(("ok   ", "FAIL "))]
    assert len(verdicts) == 20
    bad = [line for line in verdicts if line.startswith("FAIL")]
    assert len(bad) == 1 and "fleet/app13" in bad[0] and "file-checksum-mismatch" in bad[0]
    assert "20 replicas, 1 with errors" in r.stdout
    for i in range(3):  # a healthy fleet: one verdict line, not every replica's name
        storage = open_storage(seaweed.url(f"fleet-ok/app{i}"), create=True)
        for p in files:
            storage.put_bytes(f"0000/{p.name}", p.read_bytes())
    fine = ltxkit("verify", seaweed.url("fleet-ok"), "--recursive", "--structure-only")
    assert fine.returncode == 0, fine.stdout + fine.stderr
    assert fine.stdout.strip().splitlines()[-1] == "ok: no defects found (content not checked in any of the 3 replicas)"
    junit = ltxkit("verify", seaweed.url("fleet"), "-r", "--format", "junit")
    assert junit.returncode == 1 and junit.stdout.count("<testsuite ") == 20


def test_a_fleet_finds_replicas_whose_names_a_url_would_misread(seaweed: SeaweedFS, tmp_path: Path) -> None:
    """Replicas found below a prefix were named by their raw keys: `#` ended the path (the endpoint
    went with it, and the keys were sent to AWS), `?` began a second query, `%41` became `A`."""
    chain = tmp_path / "chain"
    db = Db(sound=True)
    write_ltx(chain, 0, 1, 1, db.write(list(range(1, 9))), db.commit)
    write_ltx(chain, 0, 2, 2, db.write([3, 4]), db.commit)
    names = ["h#x", "q?x", "p+x", "sp ace/x%41"]
    for name in names:
        storage = open_storage(seaweed.url("odd"), create=True)
        for p in sorted((chain / "ltx" / "0").glob("*.ltx")):
            storage.put_bytes(f"{name}/0000/{p.name}", p.read_bytes())
    r = ltxkit("verify", seaweed.url("odd"), "--recursive", "--structure-only", "--format", "json")
    assert r.returncode == 0, r.stdout + r.stderr
    found = [replica["path"] for replica in json.loads(r.stdout)["replicas"]]
    assert len(found) == len(names)
    for path in found:  # each URL names its folder, on the same endpoint
        storage = open_storage(path)
        assert path.endswith(f"?endpoint={seaweed.endpoint}") and storage.root.rsplit("/", 1)[0] in (
            "odd", "odd/sp ace"
        )
    assert sorted(open_storage(path).root for path in found) == sorted(f"odd/{n}" for n in names)


def test_force_path_style_false_with_an_ip_endpoint_reads_what_litestream_wrote(
    seaweed: SeaweedFS, tmp_path: Path
) -> None:
    """`force-path-style=false` with an endpoint: ltxkit's requests named no bucket and wrote into
    a bucket named after the path's first folder, and read nothing of Litestream's replica. With an
    IP address endpoint the AWS SDK stays path-style, and so does ltxkit now."""
    db = H.make_db(tmp_path / "app.db", rows=30)
    url = seaweed.url("vhost/app") + "&force-path-style=false"
    litestream_once(db, url)
    r = ltxkit("verify", url, "--structure-only")
    assert r.returncode == 0, r.stdout + r.stderr
    ours, theirs = tmp_path / "lk.db", tmp_path / "ls.db"
    assert ltxkit("restore", url, "-o", str(ours), "-q").returncode == 0
    assert litestream_restore(url, theirs).returncode == 0
    assert ours.read_bytes() == theirs.read_bytes()
    H.write_rows(db, 5)
    assert H.run_once(db, url).returncode == 0  # ltxkit continues it where Litestream reads
    assert litestream_restore(url, tmp_path / "ls2.db").returncode == 0
    assert H.logical_dump(tmp_path / "ls2.db") == H.logical_dump(db)


def test_recursive_on_a_directory_and_nothing_found(tmp_path: Path) -> None:
    for name in ("a", "b/c"):
        (tmp_path / "fleet" / name / "ltx" / "0").mkdir(parents=True)
        db = Db(sound=True)
        write_ltx(tmp_path / "fleet" / name, 0, 1, 1, db.write(list(range(1, 9))), db.commit)
    r = ltxkit("verify", str(tmp_path / "fleet"), "-r")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "2 replicas, 0 with errors" in r.stdout
    (tmp_path / "empty").mkdir()
    r = ltxkit("verify", str(tmp_path / "empty"), "-r")
    assert r.returncode == 2 and "no replica below it" in r.stderr


def test_large_files_from_s3_are_decoded_in_one_process(
    litestream_replica: tuple[Path, str, list[str]], tmp_path: Path
) -> None:
    """Forking after obstore started its threads can hang the child: remote replicas never fork.
    Here every file counts as large, as a 300 MB snapshot would, with two jobs asked for."""
    _db, url, _times = litestream_replica
    script = f"""
import sys
import ltxkit.restore as restore_mod, ltxkit.verify.engine as verify_mod
from ltxkit.replica.storage import open_storage
restore_mod.SPLIT_MIN_BYTES = 0
verify_mod.PARALLEL_MIN_BYTES = 0
storage = open_storage({url!r})
restore_mod.restore_to_path(storage, __import__("pathlib").Path({str(tmp_path / "out.db")!r}), jobs=2)
report = verify_mod.verify_paths([{url!r}], jobs=2)
print("ok" if not report.replicas[0].errors else "errors")
"""
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr
    assert (tmp_path / "out.db").stat().st_size > 0


def _upload_directory(root: Path, url: str) -> None:
    storage = open_storage(url, create=True)
    for path in sorted((root / "ltx").glob("*/*.ltx")):
        storage.put_bytes(f"{int(path.parent.name):04x}/{path.name}", path.read_bytes())


def test_the_seeds_snapshot_hole_on_s3_is_named_as_on_a_directory(seaweed: SeaweedFS, tmp_path: Path) -> None:
    """#752's replica (a Litestream snapshot missing pages) in object storage."""
    rep = H.make_seed_shape(tmp_path / "seed")
    url = seaweed.url("seed/hole")
    _upload_directory(rep.replica_dir, url)
    on_s3 = ltxkit("verify", url, "--format", "json")
    on_dir = ltxkit("verify", str(rep.replica_dir), "--format", "json")
    assert on_s3.returncode == on_dir.returncode == 1, on_s3.stderr
    assert codes(on_s3.stdout) == codes(on_dir.stdout)
    assert {"snapshot-nonsequential-pages", "unrestorable"} <= codes(on_s3.stdout)
    assert litestream_restore(url, tmp_path / "ls.db").returncode != 0  # Litestream agrees it is broken


def test_retention_racing_verify_on_s3_is_not_damage(seaweed: SeaweedFS, tmp_path: Path) -> None:
    """An L0 object deleted (covered by L1, as retention would) between listing and reading."""
    from ltxkit.verify.engine import check_replica

    db = Db(sound=True)
    write_ltx(tmp_path, 0, 1, 1, db.write(list(range(1, 9))), db.commit)
    for txid in range(2, 7):
        write_ltx(tmp_path, 0, txid, txid, db.write([3, txid + 6]), db.commit)
    write_ltx(tmp_path, 1, 1, 6, dict(db.pages), db.commit)
    url = seaweed.url("race/one")
    _upload_directory(tmp_path, url)
    storage = open_storage(url)
    victim = "0000/0000000000000003-0000000000000003.ltx"
    real_read = storage.read_bytes

    def read_after_retention(key: str, *, listed_size: int | None = None) -> bytes:
        if key == victim:
            storage.delete([victim])
        return real_read(key, listed_size=listed_size)

    storage.read_bytes = read_after_retention  # type: ignore[method-assign]
    summary = check_replica(storage, url)
    found = {str(f.code) for f in summary.findings} | {str(x.code) for fc in summary.files for x in fc.findings}
    assert victim not in {e.key for e in storage.list("0000/")}
    assert found == set(), found
    assert summary.latest_txid == 6


def test_large_objects_read_in_order_and_by_seeks_are_exact(seaweed: SeaweedFS) -> None:
    """The ranged reader: small first GETs, doubling, then the next chunk fetched ahead."""
    import random

    from ltxkit.replica import s3

    rng = random.Random(7)
    data = rng.randbytes(3 * s3._READ_AHEAD + 12345)
    storage = open_storage(seaweed.url("ranges/one"), create=True)
    storage.put_bytes("blob", data)
    with storage.open("blob") as fh:  # in order, odd sizes: every byte once
        parts = []
        while chunk := fh.read(rng.choice([1, 4096, 100_000, 3 << 20])):
            parts.append(chunk)
    assert b"".join(parts) == data
    with storage.open("blob") as fh:  # seeks away from a read-ahead in flight
        fh.read(2 * s3._READ_AHEAD)
        for _ in range(30):
            at = rng.randrange(len(data))
            n = rng.choice([1, 5000, s3._READ_AHEAD + 3])
            fh.seek(at)
            assert fh.read(n) == data[at : at + n]
        fh.seek(-10, 2)
        assert fh.read() == data[-10:]


def test_inspect_one_object(litestream_replica: tuple[Path, str, list[str]], seaweed: SeaweedFS) -> None:
    _db, url, _times = litestream_replica
    storage = open_storage(url)
    key = storage.list("0000/")[2].key
    base, _, query = url.partition("?")
    r = ltxkit("inspect", f"{base}/{key}?{query}", "--format", "json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    name = key.rsplit("/", 1)[1]
    assert doc["path"] == f"{base}/{key}?{query}"
    assert (int(str(doc["header"]["min_txid"]), 16), int(str(doc["header"]["max_txid"]), 16)) == parse_filename(name)
    assert doc["ok"] is True and doc["size"] == len(storage.read_bytes(key))
    damaged = seaweed.url("inspect/damaged")
    data = storage.read_bytes(key)
    open_storage(damaged, create=True).put_bytes("0000/" + name, data[:200] + bytes([data[200] ^ 0xFF]) + data[201:])
    base2, _, query2 = damaged.partition("?")
    bad = ltxkit("inspect", f"{base2}/0000/{name}?{query2}", "--format", "json")
    assert bad.returncode == 1 and json.loads(bad.stdout)["defects"], bad.stdout + bad.stderr
    missing = ltxkit("inspect", f"{base2}/0000/nope.ltx?{query2}")
    assert missing.returncode == 2 and missing.stderr.strip().endswith("no such object"), missing.stderr
    # a missing bucket is one, not a missing object (a HEAD's 404 cannot tell them apart)
    nob = ltxkit("inspect", f"s3://no-such-bucket/x/0000/{name}?endpoint={seaweed.endpoint}")
    assert nob.returncode == 2 and "no such bucket (NoSuchBucket)" in nob.stderr, nob.stderr
    # keys the server refuses: a HEAD's 403 has no body to say why; the status does
    refused = ltxkit("inspect", f"{base}/{key}?{query}", env={**os.environ, "AWS_SECRET_ACCESS_KEY": "wrong"})
    assert refused.returncode == 2 and refused.stderr.startswith(f"ltxkit: {base}/{key}?{query}: "), refused.stderr
    assert "access denied (HTTP 403 Forbidden: wrong keys" in refused.stderr, refused.stderr


def test_the_window_on_s3_gives_the_times_restore_compares(litestream_replica: tuple[Path, str, list[str]]) -> None:
    """The window's times came from the listing: upload times, whole seconds. `restore
    --timestamp` compares the `litestream-timestamp` metadata, so the window named times restore
    refused as too early. They are now the metadata's."""
    from ltxkit.inspect import iso_ms

    _db, url, _times = litestream_replica
    storage = open_storage(url)
    r = ltxkit("verify", url, "--format", "json")
    assert r.returncode == 0, r.stdout + r.stderr
    window = json.loads(r.stdout)["replicas"][0]["window"]
    by_end = {e.key.rsplit("/", 1)[1][17:33]: e.key for e in storage.list("0000/")}  # max TXID -> key
    for end in ("earliest", "latest"):  # each end: the first ms a restore reads its file
        exact = storage.exact_created_ns(by_end[window[f"{end}_txid"]])
        assert exact is not None and window[f"{end}_time"] == iso_ms(exact // 1_000_000 + 1), (end, window)
    # the earliest time restores; the latest time restores the latest state (it named the newest
    # file's own time, which restored the point before it)
    restored = ltxkit("restore", url, "-o", str(_db.parent / "w1.db"), "--timestamp", window["earliest_time"])
    assert restored.returncode == 0, restored.stderr
    latest, at_end = _db.parent / "w-latest.db", _db.parent / "w-end.db"
    assert ltxkit("restore", url, "-o", str(latest), "-q").returncode == 0
    restored = ltxkit("restore", url, "-o", str(at_end), "-q", "--timestamp", window["latest_time"])
    assert restored.returncode == 0, restored.stderr
    assert at_end.read_bytes() == latest.read_bytes()


def test_verify_checks_one_object_as_it_checks_one_file(
    litestream_replica: tuple[Path, str, list[str]], seaweed: SeaweedFS, tmp_path: Path
) -> None:
    """`ltxkit verify FILE.ltx` works on a local file; on an object it said "not a replica"."""
    _db, url, _times = litestream_replica
    storage = open_storage(url)
    key = storage.list("0000/")[2].key
    name = key.rsplit("/", 1)[1]
    base, _, query = url.partition("?")
    good = ltxkit("verify", f"{base}/{key}?{query}", "--format", "json")
    assert good.returncode == 0, good.stdout + good.stderr
    [checked] = json.loads(good.stdout)["files"]
    assert checked["path"] == f"{base}/{key}?{query}" and checked["ok"] is True
    data = storage.read_bytes(key)
    damaged = data[:-30] + bytes([data[-30] ^ 0xFF]) + data[-29:]  # inside the trailer's checksums
    open_storage(seaweed.url("one-object/damaged"), create=True).put_bytes(f"0000/{name}", damaged)
    local = tmp_path / name
    local.write_bytes(damaged)
    bad_base, _, bad_query = seaweed.url("one-object/damaged").partition("?")
    remote = ltxkit("verify", f"{bad_base}/0000/{name}?{bad_query}", "--format", "json")
    here = ltxkit("verify", str(local), "--format", "json")
    assert remote.returncode == here.returncode == 1, remote.stdout + remote.stderr
    assert codes(remote.stdout) == codes(here.stdout) != set()
    missing = ltxkit("verify", f"{bad_base}/0000/{name.replace('.ltx', '0.ltx')}?{bad_query}")
    assert missing.returncode == 2 and "no such object" in missing.stderr, missing.stderr


def test_a_path_above_replicas_is_not_a_replica_and_says_where_they_are(
    litestream_replica: tuple[Path, str, list[str]], seaweed: SeaweedFS, tmp_path: Path
) -> None:
    """A prefix holding replicas (or anything else) but no level folders was checked as an empty
    replica: `no-snapshot`, exit 1, a damaged replica as far as CI could tell. It is a wrong path."""
    db, _url, _times = litestream_replica
    parent = seaweed.url("apps")  # holds apps/one
    for args in (("verify", parent), ("restore", parent, "-o", str(tmp_path / "out.db")),
                 ("repair", parent, "--rebuild-snapshot", "--from-db", str(db), "--dry-run"), ("verify", f"s3://replicas/?endpoint={seaweed.endpoint}")):
        r = ltxkit(*args)
        assert r.returncode == 2, (args, r.stdout, r.stderr)
        assert "not a replica (no level folders 0000-0009 below it; it holds " in r.stderr, r.stderr
        assert "verify --recursive" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "out.db").exists()
    assert {e.key.split("/")[0] for e in open_storage(parent, create=True).list("")} == {"one"}  # nothing written


def _rfc3339_ns(ns: int) -> str:
    seconds, frac = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{frac:09d}Z"


def test_a_time_equal_to_an_objects_timestamp_restores_what_litestream_restores(
    litestream_replica: tuple[Path, str, list[str]], tmp_path: Path
) -> None:
    """Read in floats, `…22.475Z` was `…22.474999808`: the file written at that instant was left
    out, where Litestream (integers) takes it. Every inner object's own time, to the nanosecond."""
    _db, url, _times = litestream_replica
    storage = open_storage(url)
    files = storage.list("0000/")
    uploaded = [e.created_ns for e in files]  # LastModified: Litestream's window (README)
    checked = 0
    for i, entry in enumerate(files[1:], 1):
        ns = storage.exact_created_ns(entry.key)
        assert ns is not None
        if not min(uploaded) <= ns <= max(uploaded):
            continue
        checked += 1
        when = _rfc3339_ns(ns)
        theirs, ours = tmp_path / f"ls-{i}.db", tmp_path / f"lk-{i}.db"
        r = litestream_restore(url, theirs, "-timestamp", when)
        assert r.returncode == 0, r.stderr
        k = ltxkit("restore", url, "-o", str(ours), "-q", "--timestamp", when)
        assert k.returncode == 0, k.stderr
        assert theirs.read_bytes() == ours.read_bytes(), (entry.key, when)
    assert checked >= 2, "the fixture's syncs should fall inside the window"


def test_a_time_up_to_the_newest_upload_is_not_too_recent(seaweed: SeaweedFS, tmp_path: Path) -> None:
    """Files made 5 s before their upload: Litestream's window is the upload second, later than
    any file's own time. A time there restores the latest state for both (ltxkit refused it)."""
    chain = tmp_path / "chain"
    db = Db(sound=True)
    write_ltx(chain, 0, 1, 1, db.write(list(range(1, 9))), db.commit)
    for txid in (2, 3):
        write_ltx(chain, 0, txid, txid, db.write([3, 4]), db.commit)
    url = seaweed.url("window/upload")
    storage = open_storage(url, create=True)
    made_ms = int(time.time() * 1000) - 5000
    for n, path in enumerate(sorted((chain / "ltx" / "0").glob("*.ltx"))):
        storage.publish(f"0000/{path.name}", path, created_ms=made_ms + n)
    newest_upload = max(e.created_ns for e in storage.list("0000/"))
    assert newest_upload > (made_ms + 2) * 1_000_000
    when = _rfc3339_ns(newest_upload)
    theirs, ours, latest = tmp_path / "ls.db", tmp_path / "lk.db", tmp_path / "latest.db"
    r = litestream_restore(url, theirs, "-timestamp", when)
    assert r.returncode == 0, r.stderr
    k = ltxkit("restore", url, "-o", str(ours), "-q", "--timestamp", when)
    assert k.returncode == 0, k.stderr
    assert ltxkit("restore", url, "-o", str(latest), "-q").returncode == 0
    assert ours.read_bytes() == theirs.read_bytes() == latest.read_bytes()
    later = _rfc3339_ns(newest_upload + 1_000_000_000)
    assert litestream_restore(url, tmp_path / "ls2.db", "-timestamp", later).returncode == 1
    refused = ltxkit("restore", url, "-o", str(tmp_path / "lk2.db"), "--timestamp", later)
    assert refused.returncode == 2 and "no restore point is that recent" in refused.stderr, refused.stderr


def test_a_percent_encoded_path_names_the_replica_litestream_reads(seaweed: SeaweedFS, tmp_path: Path) -> None:
    """`sp%20ace` is the folder `sp ace` for both tools (ltxkit wrote the literal `sp%20ace`)."""
    db = H.make_db(tmp_path / "app.db", rows=25)
    url = seaweed.url("sp%20ace/app")
    r = H.run_once(db, url)
    assert r.returncode == 0, r.stderr
    assert [e.key for e in open_storage(seaweed.url("sp ace/app")).list("0000/")]
    out = tmp_path / "ls.db"
    assert litestream_restore(url, out).returncode == 0
    assert H.logical_dump(out) == H.logical_dump(db)
    H.write_rows(db, 5)
    litestream_once(db, url)  # and Litestream's next file lands where ltxkit reads
    ours = tmp_path / "lk.db"
    k = ltxkit("restore", url, "-o", str(ours), "-q")
    assert k.returncode == 0, k.stderr
    assert H.logical_dump(ours) == H.logical_dump(db)


def test_two_replicators_on_one_s3_replica_stop_instead_of_taking_turns(seaweed: SeaweedFS, tmp_path: Path) -> None:
    """No lock exists on S3: the create-only publish that finds the other's object stops one."""
    url = seaweed.url("two/writers")
    with replicating(tmp_path / "one", url) as (_, w1, r1), replicating(tmp_path / "two", url) as (_, w2, r2):
        r1.start()
        r2.start()
        deadline = time.monotonic() + 30
        while r1.alive and r2.alive and time.monotonic() < deadline:
            w1.run_for(0.1)
            w2.run_for(0.1)
        stopped = [rep for rep in (r1, r2) if not rep.alive]
        assert stopped, "both replicators still running after 30 s of writes to both databases"
        for rep in stopped:
            assert rep.wait_dead(5) == 1, rep.log_text()[-2000:]
            assert "another replicator" in rep.log_text(), rep.log_text()[-2000:]


def test_a_read_with_the_listed_size_is_the_whole_object_whatever_its_size_now(seaweed: SeaweedFS) -> None:
    """Restore and verify read small objects in one ranged GET sized from the listing; an object
    that grew or shrank since it was listed still comes back whole, never cut to the old size."""
    storage = open_storage(seaweed.url("sizes/one"), create=True)
    data = bytes(range(256)) * 40
    storage.put_bytes("0000/a.ltx", data)
    storage.put_bytes("0000/empty.ltx", b"")
    for listed in (len(data), len(data) - 1, len(data) - 700, len(data) + 1, len(data) * 3, 1):
        assert storage.read_bytes("0000/a.ltx", listed_size=listed) == data, listed
    assert storage.read_bytes("0000/empty.ltx", listed_size=0) == b""
    with pytest.raises(FileNotFoundError):
        storage.read_bytes("0000/gone.ltx", listed_size=10)


def test_a_litestream_beside_it_on_s3_stops_the_replicator(seaweed: SeaweedFS, tmp_path: Path) -> None:
    """Litestream uploads the same TXIDs a little after ltxkit, replacing files ltxkit has moved
    past: the check of ltxkit's newest file alone could miss it for good. The periodic listing of
    level 0 (ETags against the ones ltxkit's PUTs got) stops the replicator, exit 1."""
    url = seaweed.url("beside/litestream")
    with replicating(tmp_path, url) as (db, writer, rep):
        rep.start()
        writer.write(5)
        rep.wait_for(lambda: bool(rep.published()))
        beside = {"replica": {"type": None, "path": None, "url": url}}
        with H.Replicator(db, tmp_path / "unused", db_overrides=beside):
            write_until_it_stops(rep, writer, 60, 0.3)
            assert not rep.alive, "ltxkit replicate went on beside Litestream for 60 s"
        assert rep.wait_dead() == 1
        last = rep.log_text().strip().splitlines()[-1]
        assert "another replicator " in last and "One replicator per replica" in last, last


def test_a_file_replaced_behind_the_newest_stops_the_replicator(seaweed: SeaweedFS, tmp_path: Path) -> None:
    """What a lagging Litestream does, made certain: a file ltxkit published and has moved past
    is replaced by other bytes. Only the periodic listing of level 0 sees it (every 10 s)."""
    url = seaweed.url("behind/newest")
    with replicating(tmp_path, url) as (_db, writer, rep):
        rep.start()
        rep.publish_while(lambda: writer.write(2), 4)
        victim = rep.published()[1]["key"]
        data = open_storage(url).read_bytes(victim)
        _replace(url, victim, data[:-1] + bytes([data[-1] ^ 1]))
        write_until_it_stops(rep, writer, 40, 0.5)
        assert not rep.alive, "ltxkit replicate went on after a file it published was replaced"
        assert rep.wait_dead() == 1
        last = rep.log_text().strip().splitlines()[-1]
        assert f"another replicator replaced {victim}, a file this one published" in last, last


def test_its_newest_file_replaced_by_a_shorter_one_stops_the_replicator_at_once(
    seaweed: SeaweedFS, tmp_path: Path
) -> None:
    """Another replicator's file under the name of this one's newest, and shorter: the check of
    its last 8 bytes asked for a range past the object's end, and the 416 was logged as a failed
    sync, retried, and followed by nine more files before the sweep stopped it."""
    url = seaweed.url("behind/shorter")
    with replicating(tmp_path, url) as (_db, writer, rep):
        rep.start()
        rep.publish_while(lambda: writer.write(2), 3)
        time.sleep(1)  # idle: what it published last is the replica's newest file
        newest = rep.published()[-1]["key"]
        data = open_storage(url).read_bytes(newest)
        _replace(url, newest, data[: len(data) // 2])
        write_until_it_stops(rep, writer, 20, 0.3)
        assert not rep.alive, "ltxkit replicate went on after its newest file was replaced"
        assert rep.wait_dead() == 1
        log = rep.log_text()
        assert f"another replicator replaced {newest}, a file this one published" in log.strip().splitlines()[-1]
        assert "sync failed" not in log and "Range Not Satisfiable" not in log, log[-3000:]
        txid = parse_filename(newest.rsplit("/", 1)[1])[1]
        assert max(parse_filename(e.key.rsplit("/", 1)[1])[1] for e in open_storage(url).list("0000/")) == txid


def test_a_level_folder_of_an_s3_replica_is_refused_as_a_replica(seaweed: SeaweedFS, tmp_path: Path) -> None:
    """`s3://bucket/app/0000` as the replica wrote `app/0000/0000/...` inside the replica `app`."""
    db = H.make_db(tmp_path / "app.db", rows=10)
    url = seaweed.url("inner/app")
    assert H.run_once(db, url).returncode == 0
    keys = sorted(e.key for e in open_storage(url).list(""))
    inner = seaweed.url("inner/app/0000")
    r = H.run_once(db, inner)
    assert r.returncode == 2 and "a folder of the replica s3://" in r.stderr and "inner/app?" in r.stderr, r.stderr
    assert sorted(e.key for e in open_storage(url).list("")) == keys
    other = H.make_db(tmp_path / "b.db", rows=3)
    assert H.run_once(other, seaweed.url("inner/0000")).returncode == 0  # a level's name, with no replica above


def test_a_litestream_s3_config_by_fields_is_replicated_to_s3_and_litestream_restores_it(
    seaweed: SeaweedFS, tmp_path: Path
) -> None:
    """Litestream's other way to name an S3 replica: `type: s3` and its fields, keys included,
    not a URL. ltxkit took `path:` as a local directory and backed up there, exit 0."""
    from harness.seaweed import ACCESS_KEY, BUCKET, SECRET_KEY

    db = H.make_db(tmp_path / "app.db", rows=30)
    cfg = H.write_config(tmp_path / "litestream.yml", {
        "access-key-id": ACCESS_KEY,  # the top's keys: every replica's default, as in Litestream
        "secret-access-key": SECRET_KEY,
        "dbs": [{"path": str(db), "replica": {
            "type": "s3", "bucket": BUCKET, "path": "by-fields/app",
            "endpoint": seaweed.endpoint,
            "region": "us-east-1", "force-path-style": True,
        }}],
    })
    (tmp_path / "by-fields").mkdir()  # where the old reading wrote: it must stay empty
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "LITESTREAM_"))}
    env["HOME"] = str(tmp_path)  # no ~/.aws: the keys come from the config or nowhere
    r = subprocess.run([sys.executable, "-m", "ltxkit", "replicate", "--config", str(cfg), "--once"],
                       capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stderr
    assert "ignored" not in r.stderr, r.stderr  # every field was used
    assert list((tmp_path / "by-fields").iterdir()) == []
    assert open_storage(seaweed.url("by-fields/app")).top_names() >= {"0000"}
    out = tmp_path / "litestream.db"
    restored = subprocess.run([H.litestream_bin(), "restore", "-config", str(cfg), "-o", str(out), str(db)],
                              capture_output=True, text=True, timeout=120, env=env)
    assert restored.returncode == 0, restored.stderr
    assert H.logical_dump(out) == H.logical_dump(db)


def test_a_config_whose_s3_fields_ltxkit_would_not_use_is_refused(tmp_path: Path) -> None:
    from ltxkit.replicate.config import ConfigError, load
    from ltxkit.replicate.engine import Options

    def replica(**fields: object) -> dict[str, object]:
        return {"dbs": [{"path": "/data/app.db", "replica": fields}]}

    for data, needle in [
        (replica(bucket="b", path="app"), "bucket given for a replica that is not S3"),  # Litestream: a directory
        (replica(type="gcs", bucket="b", path="app"), "type 'gcs' is not supported"),
        (replica(type="s3", path="app"), "needs a `bucket:`"),
        (replica(url="s3://b/app", bucket="b"), "not both"),
        (replica(type="s3", bucket="b", **{"access-key-id": "k"}), "both access-key-id and secret-access-key"),
        (replica(type="s3", bucket="b", **{"force-path-style": "maybe"}), "not true or false"),
        (replica(type="s3", bucket="b", endpoint="minio:9000"), "needs its scheme"),  # Litestream hangs on it
    ]:
        with pytest.raises(ConfigError, match=needle):
            load(data, "cfg.yml", base=Options(), policy=None)
    got = load({"endpoint": "http://minio:9000", "region": "eu-west-1", "dbs": [
        {"path": "/a.db", "replica": {"type": "s3", "bucket": "b", "path": "/x y/app/", "force-path-style": False}},
        {"path": "/b.db", "replica": {"url": "s3://c/p?region=us-east-2&forcePathStyle=true", "endpoint": "http://h:1"}},
    ]}, "cfg.yml", base=Options(), policy=None)
    assert [d.replica for d in got.dbs] == [
        "s3://b/x%20y/app?endpoint=http://minio:9000&region=eu-west-1&force-path-style=false",
        "s3://c/p?region=eu-west-1&forcePathStyle=true&endpoint=http://h:1",  # the config's fields win
    ]
    assert got.warnings == [] and got.dbs[0].credentials is None


def test_replicate_with_refused_credentials_stops_at_once(seaweed: SeaweedFS, tmp_path: Path) -> None:
    """A replicator retries what may pass (a server that is down); credentials the server refuses
    will not pass, so the start says so in one line, exit 2, before anything is made locally."""
    db = H.make_db(tmp_path / "app.db", rows=5)
    r = subprocess.run(
        [sys.executable, "-m", "ltxkit", "replicate", str(db), seaweed.url("refused/app")],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "AWS_SECRET_ACCESS_KEY": "wrong"},
    )
    assert r.returncode == 2, r.stderr[-2000:]
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "the secret key does not match the access key" in lines[0], r.stderr
    assert not (tmp_path / ".app.db-ltxkit").exists()  # no state made for a replica it cannot write


def test_a_store_that_refuses_connections_is_logged_once_not_every_sync(tmp_path: Path) -> None:
    """Every sync against a port nobody listens on fails the same way, but its words carry how
    long the retries took ("gave up after 0.6 s", then "0.7 s"): each sync was logged as a new
    error, a line a second for as long as the outage lasted."""
    db = H.make_db(tmp_path / "app.db", rows=5)
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "a", "AWS_SECRET_ACCESS_KEY": "b"}
    log = tmp_path / "replicate.log"
    with log.open("wb") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "ltxkit", "replicate", str(db), "s3://replicas/app?endpoint=http://127.0.0.1:1",
             "--interval", "100ms"],
            stdout=fh, stderr=fh, env=env, stdin=subprocess.DEVNULL,
        )
    try:
        deadline = time.monotonic() + 60
        while "sync failed" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(5)  # several more syncs, each failing after its retries
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
    text = log.read_text()
    failed = [line for line in text.splitlines() if "sync failed, will retry" in line]
    assert len(failed) == 1 and "cannot connect to http://127.0.0.1:1" in failed[0], text
    assert proc.returncode == 1 and "stopped, but its last sync failed; nothing of it is in the replica" in text


@contextlib.contextmanager
def stalled(seaweed: SeaweedFS) -> Iterator[None]:
    """SeaweedFS frozen (SIGSTOP): connections are accepted by the kernel, no request is answered,
    as a server that hangs does. Thawed whatever the test did."""
    assert seaweed.proc is not None
    os.kill(seaweed.proc.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(seaweed.proc.pid, signal.SIGCONT)


def test_a_stop_while_the_store_hangs_ends_within_the_grace_and_says_what_is_not_published(
    seaweed: SeaweedFS, tmp_path: Path
) -> None:
    url = seaweed.url("stalled/stop")
    with replicating(tmp_path, url) as (_db, writer, rep):
        rep.start()
        writer.write(2)
        rep.wait_for(lambda: len(rep.published()) >= 2)
        published = max(int(e["max_txid"], 16) for e in rep.published())
        with stalled(seaweed):
            writer.write(2)
            time.sleep(1.5)  # the next sync is under way, waiting on the frozen server
            assert rep.proc is not None
            rep.proc.send_signal(signal.SIGTERM)
            started = time.monotonic()
            code = rep.wait_dead(60)
            took = time.monotonic() - started
        assert code == 1, rep.log_text()[-2000:]
        assert took < 40, took  # the grace is 20 s; it waited out the request's timeout before (60 s and more)
        last = rep.log_text().strip().splitlines()[-1]
        assert "stopped without its last sync" in last and "did not answer within 20 s" in last, last
        # the PUT it waited on may still land once the server answers: "may", and the next start sees it
        assert f"commits after TXID {published:016x} may not be in the replica" in last, last
        assert "an upload was still in flight" in last, last


def test_a_replicator_whose_store_does_not_answer_at_its_start_says_it_is_waiting(
    seaweed: SeaweedFS, tmp_path: Path
) -> None:
    """Its first request waits up to a minute on a store that accepts connections and answers
    nothing, and the log stayed empty all that time; it says it is waiting after a few seconds."""
    db = H.make_db(tmp_path / "app.db", rows=5)
    with stalled(seaweed):
        proc = subprocess.Popen(
            [sys.executable, "-m", "ltxkit", "replicate", str(db), seaweed.url("hung/app")],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        time.sleep(8)
        proc.send_signal(signal.SIGINT)
        _out, errs = proc.communicate(timeout=60)
    first = errs.strip().splitlines()[0]
    assert "waiting" in first and "no answer yet to the first request; waiting for it" in first, errs
    assert seaweed.url("hung/app") in first


@pytest.mark.parametrize("command", ["verify", "restore"])
def test_ctrl_c_ends_a_command_waiting_on_a_hung_store_at_once(
    seaweed: SeaweedFS, litestream_replica: tuple[Path, str, list[str]], tmp_path: Path, command: str
) -> None:
    _db, url, _rows = litestream_replica
    args = [sys.executable, "-m", "ltxkit", command, url]
    if command == "restore":
        args += ["-o", str(tmp_path / "out.db")]
    with stalled(seaweed):
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(2)  # well inside its first request
        proc.send_signal(signal.SIGINT)
        started = time.monotonic()
        _out, errs = proc.communicate(timeout=60)
        took = time.monotonic() - started
    assert proc.returncode == 130, errs
    assert took < 5, took  # it waited for the request's 60 s timeout before
    assert errs.strip().splitlines()[-1] == "ltxkit: interrupted"
    assert not list(tmp_path.iterdir())  # a restore leaves nothing behind


def test_only_the_levels_present_are_listed_and_none_is_missed(seaweed: SeaweedFS) -> None:
    """A replica's levels, ledger and 0.3 generations are found from one listing of its top."""
    from ltxkit.replica.layout import holds_legacy_generations, list_replica
    from ltxkit.verify.ledger_check import ledger_keys

    storage = open_storage(seaweed.url("levels/app"), create=True)
    for key in ("0000/0000000000000005-0000000000000005.ltx", "0001/0000000000000001-0000000000000004.ltx",
                "0003/0000000000000001-0000000000000002.ltx", "0009/0000000000000001-0000000000000003.ltx",
                "ledger/0000/0000000000000005-0000000000000005.json", "generations/abc/snapshots/x"):
        storage.put_bytes(key, b"x")
    top = storage.top_names()
    assert top == {"0000", "0001", "0003", "0009", "ledger", "generations"}
    assert sorted((f.level, f.min_txid) for f in list_replica(storage).files) == [(0, 5), (1, 1), (3, 1), (9, 1)]
    assert ledger_keys(storage, top=top) == {"ledger/0000/0000000000000005-0000000000000005.json"}
    assert holds_legacy_generations(storage, top=top)
    empty = open_storage(seaweed.url("levels/none"), create=True)
    assert empty.top_names() == frozenset() and list_replica(empty).files == []


def test_opening_a_replica_to_read_lists_its_top_once(seaweed: SeaweedFS, monkeypatch: pytest.MonkeyPatch) -> None:
    """The listing that finds a replica also says what is in it: the command's first question
    costs no second request, and every later one lists afresh."""
    import obstore

    writer = open_storage(seaweed.url("opening/app"), create=True)
    writer.put_bytes("0000/0000000000000001-0000000000000001.ltx", b"x")
    listings: list[object] = []
    real = obstore.list_with_delimiter
    monkeypatch.setattr(obstore, "list_with_delimiter", lambda *a, **k: listings.append(a[1:]) or real(*a, **k))
    reader = open_storage(seaweed.url("opening/app"))
    assert len(listings) == 1
    writer.put_bytes("0009/0000000000000001-0000000000000001.ltx", b"x")  # after the opening listing
    assert reader.top_names() == {"0000"} and len(listings) == 1  # the opening's answer, no request
    assert reader.top_names() == {"0000", "0009"} and len(listings) == 2  # then the store's, fresh
    again = open_storage(seaweed.url("opening/app"), create=True)  # a replicator's: nothing kept
    assert again.top_names() == {"0000", "0009"} and len(listings) == 4


def test_ctrl_c_in_a_fleet_verify_leaves_no_temporary_files(seaweed: SeaweedFS, tmp_path: Path) -> None:
    """Replicas are checked several at once, each content check restoring into a temporary
    directory; an interrupt ends the run at once and none of those directories stays behind."""
    db = Db(sound=True)
    chain = tmp_path / "chain"
    write_ltx(chain, 0, 1, 1, db.write(list(range(1, 40))), db.commit)
    for txid in range(2, 30):
        write_ltx(chain, 0, txid, txid, db.write([3, 4, txid]), db.commit)
    files = sorted((chain / "ltx" / "0").glob("*.ltx"))
    for i in range(16):
        storage = open_storage(seaweed.url(f"fleet-int/app{i:02d}"), create=True)
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda p, s=storage: s.put_bytes(f"0000/{p.name}", p.read_bytes()), files))
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = {**os.environ, "TMPDIR": str(tmp)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "ltxkit", "verify", seaweed.url("fleet-int"), "--recursive"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    deadline = time.monotonic() + 30
    while not any(tmp.glob("ltxkit-verify-*")) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.005)
    assert proc.poll() is None, "verify ended before a content check began"
    proc.send_signal(signal.SIGINT)
    _out, errs = proc.communicate(timeout=30)
    assert proc.returncode == 130, errs
    assert errs.strip().splitlines()[-1] == "ltxkit: interrupted"
    assert list(tmp.iterdir()) == []
