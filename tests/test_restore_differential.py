"""Differential restore: ltxkit and the real `litestream restore` must write the same bytes.

Random histories (a snapshot, increments of mixed sizes, VACUUM shrinks, L1/L2 compactions, L9
snapshots, L0 files dropped as retention does) are written as LTX files in Litestream's layout,
then restored at the latest state and at every TXID by both tools, ltxkit with one process and
with two (its span path: files above `SPLIT_MIN_BYTES` are decoded by several processes at once).
Where Litestream refuses, ltxkit must refuse and leave nothing; where it restores, the bytes must
be equal.

The span threshold is lowered for the random histories (their files are kilobytes, the real
threshold is 32 MiB), so every "big" increment goes through the span path; one fixed history with
files above the real threshold is restored through the CLI's defaults, as a user would.

Default run: a fixed set of examples plus a few random ones. `LTXKIT_LONG=1`: hundreds.
"""

from __future__ import annotations

import itertools
import os
import random
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import harness as H
from ltxkit import restore as restore_mod
from ltxkit.replica.storage import LocalStorage
from ltxkit.restore import RestoreError, restore_to_path
from tests.replica_builder import page_bytes, split_spy, write_ltx

pytestmark = pytest.mark.litestream

ROOT = Path(__file__).resolve().parent.parent
LONG = os.environ.get("LTXKIT_LONG") == "1"
SPLIT = 24 << 10  # the span threshold for the random histories: a "big" increment is above it
MAX_PAGES = {512: 160, 4096: 48, 65536: 12}


@dataclass(frozen=True)
class Step:
    """One transaction: the pages it writes and the database size after it; `dense` pages are
    random bytes (LZ4 cannot shrink them, so the file is as big as its pages)."""

    pgnos: tuple[int, ...]
    commit: int
    dense: bool


@dataclass(frozen=True)
class History:
    page_size: int
    steps: tuple[Step, ...]  # steps[0] is TXID 1, the snapshot
    l1: tuple[tuple[int, int], ...] = ()
    l2: tuple[tuple[int, int], ...] = ()
    l9: tuple[int, ...] = ()
    drop_l0: bool = False  # delete the L0 files an L1 file covers, as Litestream's retention does

    @property
    def last(self) -> int:
        return len(self.steps)


def content(pgno: int, txid: int, page_size: int, dense: bool) -> bytes:
    if not dense:
        return page_bytes(pgno, txid, page_size)
    return random.Random(pgno * 1_000_003 + txid).randbytes(page_size)


def states(h: History) -> list[tuple[int, dict[int, bytes]]]:
    """(commit, newest page of each pgno written in TXIDs 1..t) for every t, index 0 unused."""
    out: list[tuple[int, dict[int, bytes]]] = [(0, {})]
    for txid, step in enumerate(h.steps, 1):
        pages = dict(out[-1][1])
        pages.update({p: content(p, txid, h.page_size, step.dense) for p in step.pgnos})
        out.append((step.commit, {p: b for p, b in pages.items() if p <= step.commit}))
    return out


def merged(h: History, lo: int, hi: int) -> dict[int, bytes]:
    """The pages of one compacted file for TXIDs lo..hi: the newest version of each written page
    within the range, none above the range's final commit."""
    pages: dict[int, bytes] = {}
    for txid in range(lo, hi + 1):
        step = h.steps[txid - 1]
        pages.update({p: content(p, txid, h.page_size, step.dense) for p in step.pgnos})
    commit = h.steps[hi - 1].commit
    return {p: b for p, b in pages.items() if p <= commit}


def write_history(h: History, root: Path) -> None:
    ps = h.page_size
    covered = {t for lo, hi in h.l1 for t in range(lo, hi + 1)} if h.drop_l0 else set()
    for txid, step in enumerate(h.steps, 1):
        if txid not in covered:
            write_ltx(root, 0, txid, txid, merged(h, txid, txid), step.commit, page_size=ps)
    for level, ranges in ((1, h.l1), (2, h.l2)):
        for lo, hi in ranges:
            write_ltx(root, level, lo, hi, merged(h, lo, hi), h.steps[hi - 1].commit, page_size=ps)
    for t in h.l9:
        write_ltx(root, 9, 1, t, merged(h, 1, t), h.steps[t - 1].commit, page_size=ps)


# ---- the strategy ------------------------------------------------------------------------------


@st.composite
def histories(draw: st.DrawFn) -> History:
    ps = draw(st.sampled_from([512, 4096, 65536]))
    top = MAX_PAGES[ps]
    commit = draw(st.integers(3, top))
    steps = [Step(tuple(range(1, commit + 1)), commit, draw(st.booleans()))]
    for _ in range(draw(st.integers(1, 9))):
        kind = draw(st.sampled_from(["tiny", "tiny", "big", "mixed", "grow", "shrink"]))
        if kind == "tiny":
            pgnos = set(draw(st.lists(st.integers(1, commit), min_size=1, max_size=2)))
            dense = draw(st.booleans())
        elif kind == "big":
            lo = draw(st.integers(1, max(1, commit // 3)))
            pgnos, dense = set(range(lo, commit + 1)), True
        elif kind == "mixed":
            pgnos = set(draw(st.lists(st.integers(1, commit), min_size=1, max_size=commit)))
            dense = draw(st.booleans())
        elif kind == "grow" and commit < top:
            new = draw(st.integers(commit + 1, top))
            pgnos = set(range(commit + 1, new + 1)) | set(draw(st.lists(st.integers(1, commit), max_size=4)))
            commit, dense = new, draw(st.booleans())
        elif commit > 2:  # VACUUM: the database shrinks, pages are rewritten
            commit = draw(st.integers(2, commit - 1))
            pgnos = {1, 2} | set(draw(st.lists(st.integers(1, commit), max_size=commit)))
            dense = draw(st.booleans())
        else:
            pgnos, dense = {1}, False
        steps.append(Step(tuple(sorted(pgnos)), commit, dense))
    last = len(steps)

    def ranges(limit: int) -> tuple[tuple[int, int], ...]:
        if limit < 1:
            return ()
        start = draw(st.integers(1, limit))
        cuts = sorted(draw(st.sets(st.integers(start, limit - 1), max_size=4))) if limit > start else []
        bounds = [start - 1, *cuts, limit]
        return tuple((a + 1, b) for a, b in itertools.pairwise(bounds))

    l1 = ranges(draw(st.integers(0, last))) if draw(st.booleans()) else ()
    l2 = ranges(draw(st.integers(0, last))) if draw(st.booleans()) else ()
    l9 = tuple(sorted(draw(st.sets(st.integers(1, last), max_size=3))))
    return History(ps, tuple(steps), l1, l2, l9, drop_l0=bool(l1) and draw(st.booleans()))


# ---- running both tools ------------------------------------------------------------------------


def litestream_restore(replica: Path, out: Path, txid: int | None) -> bytes | None:
    r = H.restore(replica, out, txid=txid)
    if r.returncode != 0:
        assert not out.exists(), r.stderr
        return None
    data = out.read_bytes()
    out.unlink()
    return data


def ltxkit_restore(replica: Path, out: Path, txid: int | None, jobs: int) -> bytes | None:
    try:
        restore_to_path(LocalStorage(replica), out, txid=txid, jobs=jobs)
    except RestoreError:
        assert not out.exists()
        return None
    data = out.read_bytes()
    out.unlink()
    return data


def cli_restore(replica: Path, out: Path, *args: str, split: int | None = None) -> subprocess.CompletedProcess[str]:
    """`ltxkit restore` as a user runs it; `split` lowers the span threshold in that process."""
    code = "import sys\nfrom ltxkit.cli import main\n"
    if split is not None:
        code = f"import ltxkit.restore\nltxkit.restore.SPLIT_MIN_BYTES = {split}\n" + code
    return subprocess.run(
        [sys.executable, "-c", code + "main()", "restore", str(replica), "-o", str(out), "-q", *args],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )


def check_history(h: History) -> list[str]:
    """Both tools at the latest state and at every TXID; returns the keys decoded in spans."""
    with tempfile.TemporaryDirectory(prefix="ltxkit-diff-") as tmp:
        root = Path(tmp)
        replica = root / "replica"
        write_history(h, replica)
        model = states(h)
        split: list[str] = []
        for txid in [None, *range(1, h.last + 1)]:
            want = litestream_restore(replica, root / "ls.db", txid)
            if txid is None:
                assert want is not None, "the latest state of every history is restorable"
                commit, pages = model[h.last]
                assert want == b"".join(pages[p] for p in range(1, commit + 1))  # the oracle agrees with the model
            for jobs in (1, 2):
                with split_spy(SPLIT) as spans:
                    got = ltxkit_restore(replica, root / f"lk{jobs}.db", txid, jobs)
                split += spans
                assert (got is None) == (want is None), f"txid={txid} jobs={jobs}: one tool refused, the other did not"
                assert got == want, f"txid={txid} jobs={jobs}: bytes differ from litestream restore"
        # the CLI, as a user runs it, at the latest state with two processes
        r = cli_restore(replica, root / "cli.db", "--jobs", "2", split=SPLIT)
        assert r.returncode == 0, r.stderr
        assert (root / "cli.db").read_bytes() == want_latest(h)
        return split


def want_latest(h: History) -> bytes:
    commit, pages = states(h)[h.last]
    return b"".join(pages[p] for p in range(1, commit + 1))


# ---- fixed examples: the shapes that found (or would find) bugs --------------------------------


def _full(n: int) -> tuple[int, ...]:
    return tuple(range(1, n + 1))


# big file, small L0, big file: the held-back pages of the small file must land before the
# second big file's workers write (the planted "no flush before a split file" bug)
BIG_SMALL_BIG = History(4096, (Step(_full(40), 40, True), Step((5, 30), 40, False), Step(_full(40), 40, True)))
BIG_SMALL_BIG_512 = History(
    512, (Step(_full(120), 120, True), Step((1, 7, 99), 120, True), Step((3, 7), 120, False),
          Step(tuple(range(2, 121)), 120, True), Step((7,), 120, False))
)
SHRINK_GROW = History(
    4096,
    (Step(_full(40), 40, True), Step((1, 2, 5), 20, False), Step((1, *range(21, 45)), 44, True),
     Step(_full(10), 10, True), Step((3,), 10, False)),
    l1=((1, 2), (3, 4)), l2=((1, 4),), l9=(3,),
)
COMPACTED_DROPPED = History(
    512,
    (Step(_full(60), 60, False), Step((4, 5), 60, False), Step(tuple(range(1, 61)), 60, True),
     Step((60,), 60, False), Step((1, 2, 61, 62), 62, False), Step((9,), 62, True)),
    l1=((1, 3), (4, 5)), l2=((2, 4),), l9=(2, 5), drop_l0=True,
)
BIG_PAGES = History(
    65536, (Step(_full(12), 12, True), Step((2,), 12, False), Step(_full(12), 12, True), Step((1, 2), 6, True)),
    l9=(2,),
)
FIXED = [BIG_SMALL_BIG, BIG_SMALL_BIG_512, SHRINK_GROW, COMPACTED_DROPPED, BIG_PAGES]


@pytest.mark.parametrize("h", FIXED, ids=["big-small-big", "big-small-big-512", "shrink-grow", "compacted-dropped",
                                          "64k-pages"])
def test_fixed_histories_restore_as_litestream_does(h: History) -> None:
    split = check_history(h)
    if h in (BIG_SMALL_BIG, BIG_SMALL_BIG_512, BIG_PAGES):
        assert split, "a big file of this history must go through the span path"


@settings(
    max_examples=400 if LONG else 6,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(histories())
@example(BIG_SMALL_BIG)
def test_random_histories_restore_as_litestream_does(h: History) -> None:
    check_history(h)


def test_files_above_the_real_threshold_through_the_default_cli(tmp_path: Path) -> None:
    """No threshold lowered: a 64 KiB-page history whose big files exceed `SPLIT_MIN_BYTES`,
    restored with the CLI's defaults (one process per core, `--jobs 2` here as on CI's 2 cores)."""
    n = restore_mod.SPLIT_MIN_BYTES // 65536 + 8
    h = History(65536, (Step(_full(n), n, True), Step((3, 100, n - 1), n, False), Step(_full(n), n, True),
                        Step((100,), n, False)))
    replica = tmp_path / "replica"
    write_history(h, replica)
    sizes = sorted(p.stat().st_size for p in (replica / "ltx" / "0").iterdir())
    assert sizes[-1] > restore_mod.SPLIT_MIN_BYTES and sizes[0] < 1 << 20
    for txid in (None, 3):
        want = litestream_restore(replica, tmp_path / "ls.db", txid)
        assert want is not None
        args = [] if txid is None else ["--txid", f"{txid:016x}"]
        out = tmp_path / f"cli{txid}.db"
        r = cli_restore(replica, out, "--jobs", "2", *args)
        assert r.returncode == 0, r.stderr
        assert out.read_bytes() == want
