"""Files that must agree page by page, checked from the page checksums the file checks kept.

A replica often holds one TXID range twice: a compaction (levels 1-8) beside the lower-level files
it merged, until retention deletes them; a snapshot (level 9) beside the files a restore of its
TXID reads without it. Each copy can be well-formed, with every checksum right, and still hold
other pages than its twin (a compaction written from a stale page, a file rewritten by hand or by
a buggy tool). A restore then takes whichever copy its plan picks, and nothing says the other one
disagrees: Litestream never compares them. Structure is not truth; two copies that disagree are.

- A compaction is exactly the merge of its inputs (LTX's compactor: the newest copy of each page,
  none beyond the last input's commit). Its inputs are the files of one lower level that tile its
  TXID range; when retention has taken some, there is nothing to compare it with.
- A snapshot at TXID t is the whole database at t: every page that a restore of t from the other
  files (an older snapshot and the files after it) writes, and no other.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from ltxkit.format.errors import Code
from ltxkit.replica.layout import SNAPSHOT_LEVEL, ReplicaFile, plan_ending_at
from ltxkit.verify.findings import FileCheck, Finding

#: the codes `check_agreement` reports: each names a sound file (whose twin may be the wrong one)
AGREEMENT_CODES = frozenset({Code.COMPACTION_MISMATCH, Code.SNAPSHOT_MISMATCH})


def check_agreement(files: list[ReplicaFile], checks: dict[str, FileCheck], add: Callable[[Finding], None]) -> None:
    """Add `compaction-mismatch` / `snapshot-mismatch` for every file that disagrees with its twin.
    Only sound files with their page checksums kept take part (a broken one is named already)."""
    sound = [f for f in files if _comparable(checks[f.key])]
    disagreeing: set[str] = set()
    for f in sound:
        if not 1 <= f.level < SNAPSHOT_LEVEL:
            continue
        inputs = compaction_inputs(f, sound)
        if not inputs:
            continue
        whole = inputs[0].min_txid == f.min_txid
        diff = _difference(checks[f.key], [checks[g.key] for g in inputs], whole=whole)
        if diff:
            disagreeing.add(f.key)
            what = (
                "the level-{} files it merged," if whole else "the newest level-{} files it merged (the rest are gone),"
            )
            add(_finding(Code.COMPACTION_MISMATCH, checks[f.key], inputs, diff, what))
    others = [f for f in sound if f.key not in disagreeing]
    for f in sound:
        if f.level != SNAPSHOT_LEVEL:
            continue
        rest = [g for g in others if g.key != f.key]
        plan = plan_ending_at(rest, f.max_txid)  # the whole database at its TXID, without it
        whole = plan is not None
        if plan is None:  # else the newest copies of the pages the files ending at its TXID hold
            plan = chain_ending_at(rest, f.max_txid, 1, range(SNAPSHOT_LEVEL))
        if not plan:
            continue
        diff = _difference(checks[f.key], [checks[g.key] for g in plan], whole=whole)
        if diff:
            what = "a restore of its TXID from" if whole else "the newest files up to its TXID,"
            add(_finding(Code.SNAPSHOT_MISMATCH, checks[f.key], plan, diff, what))


def compaction_inputs(f: ReplicaFile, files: list[ReplicaFile]) -> list[ReplicaFile]:
    """The files of one lower level that tile `f`'s TXID range, oldest first: the nearest level
    that holds them all; else, retention having taken the oldest, the longest run that ends where
    `f` ends (its pages are the newest, so `f` must hold them as they are); else none."""
    best: list[ReplicaFile] = []
    for level in range(f.level - 1, -1, -1):
        chain = chain_ending_at(files, f.max_txid, f.min_txid, (level,))
        if chain and chain[0].min_txid == f.min_txid:
            return chain
        if chain and (not best or chain[0].min_txid < best[0].min_txid):
            best = chain
    return best


def chain_ending_at(files: list[ReplicaFile], top: int, floor: int, levels: Iterable[int]) -> list[ReplicaFile]:
    """Contiguous files of `levels` from TXID `top` back towards `floor` (never below it), oldest
    first: at each step, of the files ending where the run has reached, the one starting earliest."""
    wanted = set(levels)
    by_end: dict[int, ReplicaFile] = {}
    for g in files:
        if g.level in wanted and floor <= g.min_txid and g.max_txid <= top:
            held = by_end.get(g.max_txid)
            if held is None or g.min_txid < held.min_txid:
                by_end[g.max_txid] = g
    chain: list[ReplicaFile] = []
    reached = top
    while reached in by_end:
        g = by_end[reached]
        chain.append(g)
        reached = g.min_txid - 1
    chain.reverse()
    return chain


def _comparable(fc: FileCheck) -> bool:
    return not fc.broken and fc.header is not None and fc.page_sums is not None


def merged(inputs: list[FileCheck]) -> dict[int, int]:
    """Page number -> page checksum after merging `inputs` (oldest first): the newest copy of
    each page, none beyond the last input's commit."""
    pages: dict[int, int] = {}
    for fc in inputs:
        assert fc.page_sums is not None  # `_comparable`
        pages.update(zip(fc.pgnos, fc.page_sums, strict=True))
    commit = inputs[-1].known_header.commit
    return {pgno: s for pgno, s in pages.items() if pgno <= commit}


def _difference(fc: FileCheck, inputs: list[FileCheck], *, whole: bool) -> str:
    """How `fc` differs from the merge of `inputs` ("" when it does not). With `whole` the inputs
    are all of its twin and the page sets must match too; else only the pages they hold count."""
    want = merged(inputs)
    assert fc.page_sums is not None  # `_comparable`
    have = dict(zip(fc.pgnos, fc.page_sums, strict=True))
    commit, want_commit = fc.known_header.commit, inputs[-1].known_header.commit
    if commit != want_commit:
        return f"its database has {commit} pages, theirs {want_commit}"
    for pgno in sorted(have.keys() | want.keys() if whole else want.keys()):
        if pgno not in want:
            return f"it holds page {pgno}, they do not"
        if pgno not in have:
            return f"it lacks page {pgno}, which they hold"
        if have[pgno] != want[pgno]:
            return f"page {pgno} differs"
    return ""


def _finding(code: Code, fc: FileCheck, twins: list[ReplicaFile], diff: str, what: str) -> Finding:
    names = twins[0].name if len(twins) == 1 else f"{twins[0].name} .. {twins[-1].name} ({len(twins)} files)"
    return Finding(
        code,
        fc.path,
        f"disagrees with {what.format(twins[0].level)} {names}: {diff}. One of them is wrong, and a restore "
        "takes whichever its plan picks; verify cannot tell which (repair sets this file aside, keeping the others)",
        {"twins": [t.key for t in twins]},
    )
