"""One error type for every defect the format layer can see.

Each defect has a stable code (the words `ltxkit verify` reports and CI jobs match on), the byte
offset where it was seen, and free-form context (pgno, txids...). Codes are defined once, here.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from ltxkit.errors import LtxkitError


class Code(StrEnum):
    """Stable defect codes. Never rename one: users gate CI on them."""

    # file-level
    BAD_MAGIC = "bad-magic"
    BAD_HEADER = "bad-header"
    BAD_TRAILER = "bad-trailer"
    TRUNCATED = "truncated"
    TRAILING_BYTES = "trailing-bytes"
    BAD_PAGE_HEADER = "bad-page-header"
    PAGE_DECOMPRESS_FAILED = "page-decompress-failed"
    PAGE_ORDER = "page-order"
    PAGE_BEYOND_COMMIT = "page-beyond-commit"
    LOCK_PAGE_PRESENT = "lock-page-present"
    SNAPSHOT_NONSEQUENTIAL_PAGES = "snapshot-nonsequential-pages"
    SNAPSHOT_MISSING_PAGES = "snapshot-missing-pages"
    INDEX_MISMATCH = "index-mismatch"
    FILE_CHECKSUM_MISMATCH = "file-checksum-mismatch"
    POST_APPLY_CHECKSUM_MISMATCH = "post-apply-checksum-mismatch"
    FILENAME_MISMATCH = "filename-mismatch"
    UNREADABLE = "unreadable"
    UNSUPPORTED_VERSION = "unsupported-version"
    # replica-level
    NO_SNAPSHOT = "no-snapshot"
    TXID_GAP = "txid-gap"
    TXID_GAP_BRIDGED = "txid-gap-bridged"
    TXID_OVERLAP = "txid-overlap"
    CHECKSUM_CHAIN_BREAK = "checksum-chain-break"
    GROWTH_PAGES_MISSING = "growth-pages-missing"
    PAGE_SIZE_MISMATCH = "page-size-mismatch"
    UNRESTORABLE = "unrestorable"
    STRAY_FILE = "stray-file"
    # A file that vanished or was rewritten while verify read it, twice (retention or a replicator
    # at work beside verify): a warning, not damage; it is left out of the replica's rules.
    CHANGED_DURING_CHECK = "changed-during-check"
    # The latest restore plan ends with a checksum-tracked file (no no-checksum flag): Litestream
    # 0.5.x refuses it ("post-apply checksum not allowed", its issue #1427); ltxkit restores it.
    TRACKED_PLAN_END = "tracked-plan-end"
    # A directory, a dangling symlink or anything but a readable regular file with an LTX file's
    # name in a level directory: Litestream lists it as a file and its restore fails on it.
    NOT_A_FILE = "not-a-file"
    # A level directory (`ltx/<level>/`) that cannot be listed: its files may be missing from
    # every check, so it is never skipped silently.
    UNREADABLE_LEVEL = "unreadable-level"
    # A `.ltxkit-staging-*` directory left in the replica by an interrupted repair or replicator
    # (warning: nothing reads it; `ltxkit repair` removes the ones whose process is gone).
    STALE_STAGING = "stale-staging"
    # Litestream 0.3 backups (`generations/`) beside `ltx/`: Litestream 0.5 restores from them when
    # their newest backup is newer than the newest LTX file; ltxkit reads only `ltx/` (warning).
    LEGACY_GENERATIONS = "legacy-generations"
    INTEGRITY_CHECK_FAILED = "integrity-check-failed"
    # two copies of one TXID range that hold other pages: a compaction and the lower-level files it
    # merged, or a snapshot and a restore of its TXID from the other files (`verify.agreement`)
    COMPACTION_MISMATCH = "compaction-mismatch"
    SNAPSHOT_MISMATCH = "snapshot-mismatch"
    # the checksum ledger ltxkit replicate keeps beside ltx/
    LEDGER_MISMATCH = "ledger-mismatch"
    LEDGER_GAP = "ledger-gap"
    LEDGER_DAMAGED = "ledger-damaged"
    # records of files newer than any the replica holds: files it published are gone
    LEDGER_AHEAD = "ledger-ahead"


#: Findings that are worth knowing but do not make a replica fail verify (unless --fail-on warning).
WARNING_CODES = frozenset(
    {
        Code.STRAY_FILE,
        Code.TXID_GAP_BRIDGED,
        Code.LEDGER_GAP,
        Code.STALE_STAGING,
        Code.CHANGED_DURING_CHECK,
        Code.LEGACY_GENERATIONS,
    }
)

#: Defects after which the rest of the file cannot be trusted or even located; decoding stops.
FATAL_CODES = frozenset(
    {
        Code.BAD_MAGIC,
        Code.BAD_HEADER,
        Code.TRUNCATED,
        Code.BAD_PAGE_HEADER,
        Code.PAGE_DECOMPRESS_FAILED,
        Code.INDEX_MISMATCH,
        Code.FILE_CHECKSUM_MISMATCH,
        Code.TRAILING_BYTES,
        Code.BAD_TRAILER,
        Code.UNREADABLE,
        Code.UNSUPPORTED_VERSION,
    }
)


class LTXError(LtxkitError):
    """A defect in LTX data: `code` is stable, `offset` is the byte offset it was seen at (or None)."""

    code: Code

    def __init__(self, code: Code, message: str, *, offset: int | None = None, **context: Any) -> None:
        super().__init__(message, code=Code(code))
        self.offset = offset
        self.context = context

    @property
    def where(self) -> str:
        """ " at byte N", or nothing when the offset is unknown."""
        return f" at byte {self.offset}" if self.offset is not None else ""

    def __str__(self) -> str:
        return f"{self.code}: {self.message}{self.where}"

    def __reduce__(self):  # keep picklable (hypothesis, multiprocessing) despite keyword-only args
        return (_rebuild, (self.code, self.message, self.offset, self.context))


def _rebuild(code: Code, message: str, offset: int | None, context: dict[str, Any]) -> LTXError:
    return LTXError(code, message, offset=offset, **context)
