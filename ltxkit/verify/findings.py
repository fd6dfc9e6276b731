"""What verify finds and reports: severities, findings, per-file and per-replica results.

The model every check writes into and every report (`verify.report`) reads; no checking here.
"""

from __future__ import annotations

import os
from array import array
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

from ltxkit.format.errors import WARNING_CODES, Code
from ltxkit.format.schema import Header, Trailer
from ltxkit.inspect import iso_ms
from ltxkit.replica.layout import SNAPSHOT_LEVEL, Listing, ReplicaFile, first_ms_after
from ltxkit.verify.content import ContentVerdict


class Severity(StrEnum):
    ERROR = "error"
    WARNING = "warning"


TXID_KEYS = frozenset({"min_txid", "max_txid", "txid", "have", "next_min_txid", "last_good_txid", "first_bad_txid"})


@dataclass(slots=True)
class Finding:
    code: Code
    path: str
    message: str
    context: dict[str, Any] = field(default_factory=dict)

    @property
    def severity(self) -> Severity:
        return Severity.WARNING if self.code in WARNING_CODES else Severity.ERROR

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "code": str(self.code),
            "severity": str(self.severity),
            "path": self.path,
            "message": self.message,
        }
        for k, v in self.context.items():
            if k in TXID_KEYS and isinstance(v, int):
                v = f"{v:016x}"
            out[k] = v
        return out


@dataclass(slots=True)
class FileCheck:
    """What one file holds and what is wrong with it."""

    path: str
    key: str | None = None
    level: int | None = None
    size: int = 0
    header: Header | None = None
    trailer: Trailer | None = None
    pgnos: list[int] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    broken: bool = False  # a structural defect: its pages cannot be trusted
    #: each page's LTX page checksum, in `pgnos` order, when the check was asked to keep them (a
    #: replica with a ledger: its check needs them, and would otherwise decode every file again)
    page_sums: array[int] | None = None

    @property
    def known_header(self) -> Header:
        """The header, where the caller has already kept only files whose header was read."""
        if self.header is None:
            raise ValueError(f"{self.path}: header was not read")
        return self.header

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "level": self.level,
            "size": self.size,
            "min_txid": f"{self.header.min_txid:016x}" if self.header else None,
            "max_txid": f"{self.header.max_txid:016x}" if self.header else None,
            "commit": self.header.commit if self.header else None,
            "page_count": len(self.pgnos),
            "ok": not self.findings,
        }


@dataclass(frozen=True, slots=True)
class WindowEnd:
    """One end of the restorable window: a restore point, the first millisecond at which a
    `restore --timestamp` reaches it (just after the creation time of the file that ends its
    plan: a restore reads the files created strictly before its time) and that file's key."""

    txid: int
    ms: int
    key: str

    @classmethod
    def after(cls, txid: int, f: ReplicaFile) -> WindowEnd:
        """`txid`, whose plan ends with `f`, at the first millisecond a restore takes `f` in."""
        return cls(txid, first_ms_after(f.created_ns), f.key)


@dataclass(slots=True)
class ReplicaSummary:
    path: str
    files: list[FileCheck]
    listing: Listing
    findings: list[Finding] = field(default_factory=list)
    latest_txid: int | None = None  # the latest restore point (whether or not it restores)
    # the restorable window: the oldest and the newest restore points that restore
    window_start: WindowEnd | None = None
    window_end: WindowEnd | None = None
    proven: bool = False  # every file matches its ledger record: every restore point is proven
    proven_points: int = 0  # restore points (TXIDs) the ledger proves
    ledger_records: set[str] = field(default_factory=set)  # the ledger's keys, listed before the files
    page_size: int | None = None
    commit: int | None = None
    plan: list[str] = field(default_factory=list)
    content: ContentVerdict | None = None
    content_skipped: str | None = None  # why the content was not checked
    seconds: float = 0.0  # how long checking it took

    def window_json(self) -> dict[str, str | None]:
        """The point-in-time window: earliest and latest restorable TXID and time."""

        def txid(v: int | None) -> str | None:
            return f"{v:016x}" if v is not None else None

        start, end = self.window_start, self.window_end
        return {
            "earliest_txid": txid(start.txid if start else None),
            "earliest_time": iso_ms(start.ms) if start else None,
            "latest_txid": txid(end.txid if end else None),
            "latest_time": iso_ms(end.ms) if end else None,
        }

    def window_line(self) -> str:
        w = self.window_json()
        if w["earliest_txid"] is None or w["latest_txid"] is None:
            return "restorable window: none"
        return (
            f"restorable window: TXID {w['earliest_txid']} ({w['earliest_time']}) "
            f"to TXID {w['latest_txid']} ({w['latest_time']})"
        )

    @property
    def errors(self) -> list[Finding]:
        """Every error found, the replica's own and its files'."""
        out = [f for f in self.findings if f.severity == Severity.ERROR]
        for fc in self.files:
            out.extend(f for f in fc.findings if f.severity == Severity.ERROR)
        return out

    def to_json(self) -> dict[str, Any]:
        levels: dict[str, Any] = {}
        for fc in self.files:
            lv = levels.setdefault(str(fc.level), {"files": 0, "bytes": 0, "min_txid": None, "max_txid": None})
            lv["files"] += 1
            lv["bytes"] += fc.size
        for level, lv in levels.items():
            fs = self.listing.level(int(level))
            lv["min_txid"] = f"{min(f.min_txid for f in fs):016x}" if fs else None
            lv["max_txid"] = f"{max(f.max_txid for f in fs):016x}" if fs else None
        return {
            "path": self.path,
            "ok": not self.errors,
            "files": len(self.files),
            "bytes": sum(fc.size for fc in self.files),
            "levels": levels,
            "snapshots": len(self.listing.level(SNAPSHOT_LEVEL)),
            "min_txid": f"{min((f.min_txid for f in self.listing.files), default=0):016x}",
            "max_txid": f"{self.listing.max_txid:016x}",
            "latest_txid": f"{self.latest_txid:016x}" if self.latest_txid is not None else None,
            "window": self.window_json(),
            "proven": self.proven,
            "proven_restore_points": self.proven_points,
            "page_size": self.page_size,
            "commit": self.commit,
            "restore_plan": self.plan,
            "content": self.content.to_json()
            if self.content is not None
            else {"checked": False, "why": self.content_skipped},
        }


#: The version of verify's JSON report (`Report.to_json`, documented in docs/json.md): bumped
#: when a field changes meaning or goes away; new fields may appear without a bump.
SCHEMA_VERSION = 1


class Mode(StrEnum):
    """How deep a verify looked, as its reports name it (one per command-line choice)."""

    QUICK = "quick"  # --quick: headers, page indexes, trailers and the chain; no page read
    STRUCTURE = "structure"  # --structure-only: every file decoded and checked; no content check
    FULL = "full"  # the default: structure, then the latest restore point passes PRAGMA quick_check
    DEEP = "deep"  # --deep: structure, then PRAGMA integrity_check (indexes against tables too)

    @property
    def describe(self) -> str:
        return {
            Mode.QUICK: "quick (headers, page indexes and trailers; no page read, no content check)",
            Mode.STRUCTURE: "structure (every file decoded and checked; no content check)",
            Mode.FULL: "full (every file decoded; the latest restore point checked with PRAGMA quick_check)",
            Mode.DEEP: "deep (every file decoded; the latest restore point checked with PRAGMA integrity_check)",
        }[self]


@dataclass(slots=True)
class Report:
    files: list[FileCheck] = field(default_factory=list)  # loose files given on the command line
    replicas: list[ReplicaSummary] = field(default_factory=list)
    unusable: list[str] = field(default_factory=list)  # paths that could not be checked at all, and why
    # the errors behind `unusable`, in its order: not reported, only shown as tracebacks by --debug
    unusable_errors: list[BaseException] = field(default_factory=list, repr=False)
    started: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    seconds: float = 0.0
    mode: Mode = Mode.FULL

    def summary(self, fail_on: Severity = Severity.ERROR) -> str:
        """One line for a person: the verdict and the counts."""
        errors = sum(1 for f in self.findings if f.severity == Severity.ERROR)
        warnings = len(self.findings) - errors
        verdict = "FAILED" if self.failed(fail_on) else "INCOMPLETE" if self.unusable else "passed"
        could_not = f", {count(len(self.unusable), 'path')} could not be checked" if self.unusable else ""
        return f"{verdict}: {count(errors, 'error')}, {count(warnings, 'warning')}{could_not}"

    @property
    def findings(self) -> list[Finding]:
        out: list[Finding] = []
        for fc in self.files:
            out.extend(fc.findings)
        for r in self.replicas:
            for fc in r.files:
                out.extend(fc.findings)
            out.extend(r.findings)
        return out

    def failed(self, fail_on: Severity = Severity.ERROR) -> bool:
        levels = {Severity.ERROR} if fail_on == Severity.ERROR else {Severity.ERROR, Severity.WARNING}
        return any(f.severity in levels for f in self.findings)

    def to_json(self, fail_on: Severity = Severity.ERROR) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "mode": str(self.mode),
            "ok": not self.failed(fail_on) and not self.unusable,
            "could_not_check": self.unusable,
            "findings": [f.to_json() for f in self.findings],
            "files": [fc.to_json() for fc in self.files],
            "replicas": [r.to_json() for r in self.replicas],
        }


def count(n: int, noun: str, plural: str | None = None) -> str:
    """ "1 error", "2 errors", "12,345 files": a count as a person reads it."""
    return f"{n:,} {noun if n == 1 else plural or noun + 's'}"


ProgressHook = Callable[[str, int], None]  # (path, bytes done for that file)


def join_label(label: str, key: str) -> str:
    """How a report names a replica's file: the replica as the user named it, then the key.

    For a URL the key joins the path and its options stay after it
    (`s3://bucket/app/0000/<file>.ltx?endpoint=...`), so the name is one `ltxkit inspect` and
    `litestream` take as it is; the key is percent-encoded, as the URL's path is read decoded."""
    if "://" in label:
        parts = urlsplit(label)
        path = parts.path.rstrip("/") + "/" + quote(key, errors="surrogateescape")
        return urlunsplit((parts.scheme, parts.netloc, path, parts.query, parts.fragment))
    return os.path.join(label, *key.split("/"))
