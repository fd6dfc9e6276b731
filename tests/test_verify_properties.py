"""Properties of `verify` and of the restore plan over generated replicas.

Each example builds a small replica (page size 512 to 4096, up to 40 pages) from a model database
(`tests.replica_builder.Db`): an L0 chain (TXID 1 a snapshot, then one single-TXID increment per
transaction, growing and shrinking the database), optional compactions at levels 1 and 2 (a TXID
range merged, newest page wins, commit of its last transaction), optional level-9 snapshots, and
optionally the L0 files under level-1 compactions pruned, as Litestream's retention does.

1. A healthy replica verifies with no finding at all (normal and quick), and restores to the
   model: the latest state, and every TXID the plan can reach.
2. Any single damage to one file (byte flip, truncation, insertion, deletion, appended bytes) is
   caught (an error finding on that file, or a replica-level error) or harmless (the latest
   restore is still exactly the model). Verify never raises; restore returns the model's bytes or
   raises `RestoreError`, never anything else.
3. Deleting an L0 file that no compaction covers is a `txid-gap` (error) when no level-9 snapshot
   reaches past it, a `txid-gap-bridged` (warning) when a newer snapshot bridges it and an older
   one exists (the latest restore is then still the model), and nothing when a snapshot sits at
   exactly that TXID or the gap lies below the oldest snapshot (verify checks gaps above it only).
4. A snapshot with one page removed (the #752 shape) is `snapshot-nonsequential-pages` or
   `snapshot-missing-pages` on that file (normal and quick), and `unrestorable` exactly when the
   latest plan reads it and no other planned file supplies that page (Litestream merges the plan
   before writing, so only then does `litestream restore` fail).
5. Verify is read-only: the replica tree (names, bytes, mtimes) is unchanged by `check_replica`
   in every mode (quick, normal, deep) in all of the above.
6. `restore_plan` chooses exactly what a plain transcription of Litestream's algorithm (FORMAT.md)
   chooses, or refuses with the same code, for any set of file names, for the latest state, any
   TXID and any timestamp.
7. A planned file that streams a page above its own commit stops the restore with a RestoreError
   (the shape once crashed restore with IndexError).
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from ltxkit.format import decode_file
from ltxkit.format.errors import Code
from ltxkit.replica.layout import SNAPSHOT_LEVEL, PlanError, ReplicaFile, restore_plan
from ltxkit.replica.storage import LocalStorage
from ltxkit.restore import RestoreError, plan_for, restore_into, restore_to_path
from ltxkit.verify.engine import check_replica, verify_paths
from ltxkit.verify.findings import Finding, ReplicaSummary, Severity
from tests.conftest import examples
from tests.filespec import FileSpec, flip_byte, insert_bytes
from tests.replica_builder import PAGE, Db, write_ltx

MAX_PAGES = 40
PAGE_SIZES = [512, 512, 1024, 4096]  # weighted: most examples stay small


def props(n: int) -> settings:
    return settings(
        max_examples=examples(n),
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )


# ---- the generated history ---------------------------------------------------------------------


@dataclass
class History:
    txns: list[tuple[list[int], int]]  # (pages written, commit after the transaction)
    compactions: dict[int, list[tuple[int, int]]]  # level -> disjoint (min_txid, max_txid) ranges
    snapshots: list[int]  # max_txid of each level-9 snapshot
    prune: bool  # drop L0 files that a level-1 compaction covers
    page_size: int = PAGE

    @property
    def n(self) -> int:
        return len(self.txns)


@st.composite
def segments(draw, n: int) -> list[tuple[int, int]]:
    """Disjoint TXID ranges within 1..n: cut 1..n into blocks, keep some of them."""
    out = []
    lo = 1
    while lo <= n:
        hi = draw(st.integers(lo, min(n, lo + 3)))
        if draw(st.booleans()):
            out.append((lo, hi))
        lo = hi + 1
    return out


@st.composite
def histories(draw, min_txns: int = 1, max_txns: int = 8, extras: bool = True) -> History:
    n = draw(st.integers(min_txns, max_txns))
    page_size = draw(st.sampled_from(PAGE_SIZES))
    commit = draw(st.integers(1, draw(st.sampled_from([12, MAX_PAGES]))))
    txns = [(list(range(1, commit + 1)), commit)]
    for _ in range(n - 1):
        kind = draw(st.sampled_from(["same", "same", "grow", "shrink"]))
        new = commit
        if kind == "grow" and commit < MAX_PAGES:
            new = draw(st.integers(commit + 1, MAX_PAGES))
        elif kind == "shrink" and commit > 1:
            new = draw(st.integers(1, commit - 1))
        changed = draw(st.sets(st.integers(1, new), max_size=4))
        changed |= set(range(commit + 1, new + 1))  # growth brings its new pages
        txns.append((sorted(changed), new))
        commit = new
    compactions: dict[int, list[tuple[int, int]]] = {}
    snapshots: list[int] = []
    prune = False
    if extras:
        # weighted so that most histories hold L0, L1, L2 and L9 files together
        for level in (1, 2):
            if draw(st.integers(0, 3)):
                compactions[level] = draw(segments(n))
        snapshots = sorted(draw(st.sets(st.integers(1, n), min_size=draw(st.sampled_from([0, 1, 1, 1])), max_size=2)))
        prune = bool(compactions.get(1)) and draw(st.booleans())
    return History(txns, compactions, snapshots, prune, page_size)


@dataclass
class Replica:
    root: Path
    history: History
    images: dict[int, bytes] = field(default_factory=dict)  # txid -> database image after it
    files: dict[str, Path] = field(default_factory=dict)  # key -> path

    @property
    def storage(self) -> LocalStorage:
        return LocalStorage(self.root)

    @property
    def label(self) -> str:
        return str(self.root)

    @property
    def latest(self) -> int:
        return self.history.n

    def path_of(self, key: str) -> str:
        return os.path.join(self.label, *key.split("/"))

    def tile_ends(self) -> set[int]:
        """TXIDs at which some file of the L0/L1 tiling ends: always reachable by a TXID restore."""
        covered = {t for lo, hi in self.history.compactions.get(1, []) for t in range(lo, hi + 1)}
        ends = {hi for _lo, hi in self.history.compactions.get(1, [])}
        ends |= {t for t in range(1, self.latest + 1) if not (self.history.prune and t in covered)}
        return ends | set(self.history.snapshots)


def build(root: Path, h: History) -> Replica:
    rep = Replica(root, h)
    db = Db(page_size=h.page_size)
    changes: dict[int, dict[int, bytes]] = {}
    states: dict[int, tuple[dict[int, bytes], int]] = {}
    for pgnos, commit in h.txns:
        changed = db.write(pgnos, commit)
        changes[db.txid] = changed
        states[db.txid] = (dict(db.pages), db.commit)
        rep.images[db.txid] = db.image()

    def put(level: int, lo: int, hi: int, pages: dict[int, bytes], commit: int) -> None:
        p = write_ltx(root, level, lo, hi, pages, commit, page_size=h.page_size)
        rep.files[p.relative_to(root).as_posix()] = p

    pruned = set()
    if h.prune:
        pruned = {t for lo, hi in h.compactions.get(1, []) for t in range(lo, hi + 1)}
    for t in range(1, h.n + 1):
        if t not in pruned:
            put(0, t, t, changes[t], states[t][1])
    for level, ranges in h.compactions.items():
        for lo, hi in ranges:
            merged: dict[int, bytes] = {}
            for t in range(lo, hi + 1):
                merged.update(changes[t])
            commit = states[hi][1]
            put(level, lo, hi, {p: v for p, v in merged.items() if p <= commit}, commit)
    for t in h.snapshots:
        pages, commit = states[t]
        put(SNAPSHOT_LEVEL, 1, t, pages, commit)
    return rep


# ---- helpers -----------------------------------------------------------------------------------


def tree_state(root: Path) -> dict[str, tuple]:
    """Names, bytes and mtimes of everything under `root` (directories too)."""
    out: dict[str, tuple] = {}
    for dirpath, _dirs, names in os.walk(root):
        rel = os.path.relpath(dirpath, root)
        out[rel + "/"] = ("dir", os.stat(dirpath).st_mtime_ns)
        for name in names:
            p = os.path.join(dirpath, name)
            st_ = os.stat(p)
            with open(p, "rb") as fh:
                out[os.path.join(rel, name)] = (fh.read(), st_.st_mtime_ns, st_.st_size)
    return out


def verify_read_only(rep: Replica) -> tuple[ReplicaSummary, ReplicaSummary]:
    """check_replica in every mode; assert the tree is untouched; return (normal, quick) summaries."""
    before = tree_state(rep.root)
    normal = check_replica(rep.storage, rep.label)
    quick = check_replica(rep.storage, rep.label, quick=True)
    check_replica(rep.storage, rep.label, deep=True)  # synthetic pages: integrity_check fails, that's fine
    assert tree_state(rep.root) == before, "verify changed the replica"
    return normal, quick


def all_findings(summary: ReplicaSummary) -> list[Finding]:
    out = list(summary.findings)
    for fc in summary.files:
        out.extend(fc.findings)
    return out


def errors(summary: ReplicaSummary) -> list[Finding]:
    return [f for f in all_findings(summary) if f.severity == Severity.ERROR]


def restore_latest(rep: Replica, out_dir: Path) -> bytes | RestoreError:
    """The latest restore's bytes, or the RestoreError it raised (any other exception propagates)."""
    out = out_dir / "latest.db"
    try:
        restore_to_path(rep.storage, out, force=True)
    except RestoreError as exc:
        assert not out.exists()
        return exc
    return out.read_bytes()


def describe(f: Finding) -> str:
    return f"{f.code}@{f.path}: {f.message}"


# ---- 1. healthy histories ------------------------------------------------------------------------


@props(80)
@given(histories())
def test_healthy_history_verifies_clean_and_restores_to_the_model(h: History) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        rep = build(Path(tmp) / "replica", h)
        event(f"healthy: levels {sorted({k.split('/')[1] for k in rep.files})}, prune={h.prune}")
        normal, quick = verify_read_only(rep)
        assert [describe(f) for f in all_findings(normal)] == []
        assert [describe(f) for f in all_findings(quick)] == []
        assert normal.latest_txid == rep.latest
        assert normal.commit == h.txns[-1][1]
        assert normal.page_size == h.page_size
        assert normal.plan == [f.key for f in plan_for(rep.storage)]

        assert restore_latest(rep, Path(tmp)) == rep.images[rep.latest]

        reachable = set()
        for t in range(1, rep.latest + 1):
            try:
                plan = plan_for(rep.storage, txid=t)
            except RestoreError as exc:
                assert exc.code in (Code.UNRESTORABLE, Code.NO_SNAPSHOT), (t, exc.message)
                continue
            assert plan[-1].max_txid == t
            buf = io.BytesIO()
            res = restore_into(rep.storage, plan, buf)
            assert res.txid == t and res.commit == h.txns[t - 1][1]
            assert buf.getvalue() == rep.images[t], f"restore to TXID {t} differs from the model"
            reachable.add(t)
        assert rep.tile_ends() <= reachable
        if not h.prune:
            assert reachable == set(range(1, rep.latest + 1))


# ---- 2. single damage to one file ----------------------------------------------------------------


@st.composite
def damage(draw, data: bytes) -> tuple[str, bytes]:
    kind = draw(st.sampled_from(["flip", "truncate", "insert", "delete", "append"]))
    n = len(data)
    if kind == "flip":
        return kind, flip_byte(data, draw(st.integers(0, n - 1)), draw(st.integers(1, 255)))
    if kind == "truncate":
        return kind, data[: draw(st.integers(0, n - 1))]
    if kind == "insert":
        return kind, insert_bytes(data, draw(st.integers(0, n)), draw(st.binary(min_size=1, max_size=8)))
    if kind == "delete":
        start = draw(st.integers(0, n - 1))
        return kind, data[:start] + data[start + draw(st.integers(1, 8)) :]
    return kind, data + draw(st.binary(min_size=1, max_size=16))


@props(200)
@given(histories(max_txns=6), st.data())
def test_single_damage_is_caught_or_harmless(h: History, data) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        rep = build(Path(tmp) / "replica", h)
        key = data.draw(st.sampled_from(sorted(rep.files)), label="file")
        planned = key in [f.key for f in plan_for(rep.storage)]  # the plan depends on names only
        victim = rep.files[key]
        good = victim.read_bytes()
        kind, bad = data.draw(damage(good), label="damage")
        assert bad != good
        mtime = victim.stat().st_mtime_ns
        victim.write_bytes(bad)
        os.utime(victim, ns=(mtime, mtime))

        normal, _quick = verify_read_only(rep)  # must not raise, must not write
        verify_paths([rep.label])
        verify_paths([rep.label], quick=True)
        verify_paths([str(victim)])
        verify_paths([str(victim)], quick=True)

        model = rep.images[rep.latest]
        result = restore_latest(rep, Path(tmp))
        if isinstance(result, bytes):
            assert result == model, f"{kind} of {key}: restore silently wrote different bytes"
        if not planned:  # restore reads only the plan's files
            assert result == model, f"{kind} of {key} (not in the plan) broke the restore: {result}"
        errs = errors(normal)
        event(f"damage: {kind}, {'caught' if errs else 'harmless'}, restore {'ok' if result == model else 'fails'}")
        caught = any(f.path in (rep.path_of(key), rep.label) for f in errs)
        assert caught or result == model, f"{kind} of {key}: not reported and the restore is not the model"
        if not errs:  # a clean verify promises the latest restore
            assert result == model, f"{kind} of {key}: verify is clean but restore failed: {result}"
        if result != model:
            # the latest restore reads the damaged file and fails: verify says the replica is unrestorable
            assert any(f.code == Code.UNRESTORABLE or f.path == rep.label for f in errs), [describe(f) for f in errs]


# ---- 3. a deleted L0 file: gap or bridged gap --------------------------------------------------


@props(60)
@given(histories(min_txns=3), st.data())
def test_deleted_l0_file_is_a_gap_or_a_bridged_gap(h: History, data) -> None:
    compacted = {t for level, rs in h.compactions.items() for lo, hi in rs for t in range(lo, hi + 1)}
    candidates = [t for t in range(2, h.n) if t not in compacted]
    assume(candidates)
    k = data.draw(st.sampled_from(candidates), label="deleted txid")
    # often add level-9 snapshots around the gap, so every case below is exercised
    extra = data.draw(st.sampled_from(["none", "newer", "older+newer", "at"]), label="extra snapshots")
    if extra != "none":
        add = {k} if extra == "at" else {data.draw(st.integers(k + 1, h.n), label="newer snapshot")}
        if extra == "older+newer":
            add.add(data.draw(st.integers(1, k - 1), label="older snapshot"))
        h = replace(h, snapshots=sorted(set(h.snapshots) | add))
    with tempfile.TemporaryDirectory() as tmp:
        rep = build(Path(tmp) / "replica", h)
        key = f"ltx/0/{k:016x}-{k:016x}.ltx"
        rep.files.pop(key).unlink()
        normal, _quick = verify_read_only(rep)
        codes = [f.code for f in all_findings(normal)]
        result = restore_latest(rep, Path(tmp))
        snaps = h.snapshots
        event(f"gap: codes {sorted(set(map(str, codes)))}")
        if not any(s >= k for s in snaps):
            gaps = [f for f in normal.findings if f.code == Code.TXID_GAP]
            assert gaps and all(f.path == rep.label for f in gaps), codes
            assert Code.TXID_GAP_BRIDGED not in codes
            assert isinstance(result, RestoreError) and result.code == Code.TXID_GAP
            # the state before the gap is still there
            buf = io.BytesIO()
            restore_into(rep.storage, plan_for(rep.storage, txid=k - 1), buf)
            assert buf.getvalue() == rep.images[k - 1]
        else:
            assert result == rep.images[rep.latest]
            assert Code.TXID_GAP not in codes
            assert not errors(normal), [describe(f) for f in errors(normal)]
            lost = k not in snaps  # a snapshot at exactly k holds that state
            if lost and min(snaps) < k:
                bridged = [f for f in normal.findings if f.code == Code.TXID_GAP_BRIDGED]
                assert [(f.context["min_txid"], f.context["max_txid"]) for f in bridged] == [(k, k)], codes
                assert codes == [Code.TXID_GAP_BRIDGED]
            else:
                # k is held by a snapshot, or lies below the oldest snapshot (not checked, by design)
                assert codes == []
            with pytest.raises(RestoreError) if lost else contextlib.nullcontext():
                plan_for(rep.storage, txid=k)  # that state is gone unless a snapshot holds it


# ---- 4. a page removed from a snapshot ---------------------------------------------------------


def remove_page(path: Path, pgno: int) -> None:
    """Rewrite the snapshot at `path` without page `pgno` (valid checksums, same header otherwise)."""
    decoded = decode_file(path.read_bytes())
    hdr = decoded.header
    spec = FileSpec(
        page_size=hdr.page_size,
        min_txid=hdr.min_txid,
        max_txid=hdr.max_txid,
        commit=hdr.commit,
        flags=hdr.flags,
        timestamp=hdr.timestamp,
        pages=[(p, page) for p, page in decoded.pages if p != pgno],
    )
    mtime = path.stat().st_mtime_ns
    path.write_bytes(spec.build())
    os.utime(path, ns=(mtime, mtime))


@props(60)
@given(histories(), st.data())
def test_snapshot_hole_is_named_and_unrestorable_when_planned(h: History, data) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        rep = build(Path(tmp) / "replica", h)
        snapshots = sorted(k for k in rep.files if k.split("/")[-1].startswith(f"{1:016x}-"))
        key = data.draw(st.sampled_from(snapshots), label="snapshot")
        commit = decode_file(rep.files[key].read_bytes()).header.commit
        pgno = data.draw(st.integers(1, commit), label="removed page")
        plan = plan_for(rep.storage)
        planned = key in [f.key for f in plan]
        # Litestream merges the plan's files (newest page wins) before it writes the database, so a
        # hole is fatal only when no other planned file supplies that page (and it is within the
        # final commit). Its decoder does not check snapshot page sequence (a TODO in ltx decoder.go).
        supplied = any(
            pgno in {p for p, _ in decode_file(rep.files[f.key].read_bytes()).pages} for f in plan if f.key != key
        )
        fatal = planned and pgno <= h.txns[-1][1] and not supplied
        remove_page(rep.files[key], pgno)
        event(f"hole: planned={planned} supplied={supplied} fatal={fatal}")

        normal, quick = verify_read_only(rep)
        want = Code.SNAPSHOT_MISSING_PAGES if pgno == commit else Code.SNAPSHOT_NONSEQUENTIAL_PAGES
        for summary in (normal, quick):
            on_file = [f for f in all_findings(summary) if f.path == rep.path_of(key)]
            assert want in [f.code for f in on_file], [describe(f) for f in on_file]
            assert all(f.severity == Severity.ERROR for f in on_file)
            unrestorable = [f for f in summary.findings if f.code == Code.UNRESTORABLE]
            assert bool(unrestorable) == fatal, [describe(f) for f in all_findings(summary)]
            assert all(f.path == rep.label for f in unrestorable)
        result = restore_latest(rep, Path(tmp))
        if fatal:
            assert isinstance(result, RestoreError), "restore read a snapshot with a hole without complaint"
        elif planned:
            # ltxkit's restore decodes every planned file strictly, so it refuses the hole even
            # where Litestream's merge would fill it; either outcome is acceptable, different bytes not.
            assert isinstance(result, RestoreError) or result == rep.images[rep.latest]
        else:
            assert result == rep.images[rep.latest]


# ---- restore refuses a page above its file's commit with a RestoreError, never a crash --------------


@pytest.mark.parametrize("shape", ["flip-commit", "flip-frame-pgno", "page-beyond-commit"])
def test_restore_reports_pages_beyond_commit_as_restore_error(shape: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "replica"
        if shape == "page-beyond-commit":  # checksums all valid; the file holds page 2 although its commit is 1
            path = root / "ltx" / "0" / f"{1:016x}-{1:016x}.ltx"
            path.parent.mkdir(parents=True)
            path.write_bytes(FileSpec(commit=1, pages=[1, 2]).build())
        else:  # a healthy two-page snapshot, one byte flipped: the file checksum no longer matches
            path = write_ltx(root, 0, 1, 1, {1: bytes(PAGE), 2: bytes(PAGE)}, 2)
            offset, mask = (15, 0x03) if shape == "flip-commit" else (102, 0x01)  # commit 2->1 / pgno 1->257
            path.write_bytes(flip_byte(path.read_bytes(), offset, mask))
        summary = check_replica(LocalStorage(root), str(root))
        assert errors(summary)  # verify catches it
        # expected: RestoreError(file-checksum-mismatch) for the flips, RestoreError(page-beyond-commit) otherwise
        with pytest.raises(RestoreError):
            restore_to_path(LocalStorage(root), Path(tmp) / "out.db")


# ---- 6. the restore plan against a plain transcription of Litestream's algorithm ------------------


def reference_plan(
    files: list[ReplicaFile], txid: int | None = None, timestamp_ns: int | None = None
) -> list[ReplicaFile] | Code:
    """FORMAT.md's algorithm, one rescan per step (as Litestream's CalcRestorePlan), no cleverness;
    a time after every file's creation is refused first (Litestream's CalcRestoreTarget), but for
    the millisecond after the newest file, which ltxkit accepts (README: `--timestamp`)."""

    def eligible(f: ReplicaFile) -> bool:
        return (txid is None or f.max_txid <= txid) and (timestamp_ns is None or f.created_ns < timestamp_ns)

    def first_ms_after(ns: int) -> int:
        return (ns // 1_000_000 + 1) * 1_000_000

    if timestamp_ns is not None and files and all(timestamp_ns > first_ms_after(f.created_ns) for f in files):
        return Code.UNRESTORABLE

    snaps = [f for f in files if f.level == SNAPSHOT_LEVEL and eligible(f)]
    plan = [max(snaps, key=lambda f: (f.min_txid, f.max_txid))] if snaps else []
    current = plan[0].max_txid if plan else 0
    lower = [f for f in files if f.level < SNAPSHOT_LEVEL]
    while txid is None or current < txid:
        cands = [f for f in lower if eligible(f) and f.min_txid <= current + 1 and f.max_txid > current]
        if not cands:
            break
        # reach furthest, then start earliest, then higher level, then older; then listing order
        best = min(cands, key=lambda f: (-f.max_txid, f.min_txid, -f.level, f.created_ns, files.index(f)))
        plan.append(best)
        current = best.max_txid
    if plan and txid is None and timestamp_ns is None and any(f.min_txid > current + 1 for f in lower):
        return Code.TXID_GAP
    if not plan:
        return Code.NO_SNAPSHOT
    if txid is not None and current < txid:
        return Code.UNRESTORABLE
    return plan


@st.composite
def file_sets(draw) -> list[ReplicaFile]:
    """Any set of replica file names (overlaps, gaps, duplicates across levels), listing-sorted."""
    out = {}
    for _ in range(draw(st.integers(0, 14))):
        level = draw(st.sampled_from([0, 0, 0, 1, 1, 2, 3, 9]))
        lo = 1 if level == SNAPSHOT_LEVEL else draw(st.integers(1, 16))
        hi = draw(st.integers(lo, lo + 4 if level == 0 else 18))
        mtime_ms = draw(st.integers(1, 20))
        key = f"ltx/{level}/{lo:016x}-{hi:016x}.ltx"
        out[key] = ReplicaFile(level, lo, hi, key, 100, mtime_ms * 1_000_000)
    return sorted(out.values(), key=lambda f: (f.level, f.min_txid, f.max_txid))


def restore_times() -> st.SearchStrategy[int]:
    """Times in ns: a whole ms, then nudged by up to a ms either way (files are created on whole ms)."""
    return st.builds(lambda ms, ns: ms * 1_000_000 + ns, st.integers(1, 22), st.integers(-999_999, 999_999))


@props(400)
@given(
    file_sets(),
    st.one_of(st.none(), st.integers(1, 20)),
    st.one_of(st.none(), restore_times()),
)
def test_restore_plan_matches_litestreams_algorithm(files: list[ReplicaFile], txid, timestamp_ns) -> None:
    want = reference_plan(files, txid, timestamp_ns)
    try:
        got: list[ReplicaFile] | Code = restore_plan(files, txid=txid, timestamp_ns=timestamp_ns)
    except PlanError as exc:
        got = exc.code
    if isinstance(want, list) and isinstance(got, list):
        assert [f.key for f in got] == [f.key for f in want]
    else:
        assert got == want
