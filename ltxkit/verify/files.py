"""Per-file checks: decode one LTX file strictly (or, `quick`, only its ends) into a `FileCheck`.

A large file can be decoded by several processes at once (`jobs` > 1): the span machinery restore
uses (`ltxkit.format.spans`) cuts it at frame boundaries and proves the whole from the spans. That
path only ever says "the file is sound": if a span fails, a cut cannot be found, a worker dies or
anything else goes wrong, the file is checked again in one process, so every finding, its code and
its offset are exactly what a one-process run reports.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ltxkit.format.checksum import page_checksum
from ltxkit.format.decoder import (
    LTXReader,
    SpanResult,
    page_number_defects,
    read_ends,
    read_header,
    read_page_index,
)
from ltxkit.format.errors import FATAL_CODES, Code, LTXError
from ltxkit.format.schema import HEADER_SIZE, Header, parse_filename
from ltxkit.format.spans import find_cuts, join_spans
from ltxkit.verify.findings import FileCheck, Finding
from ltxkit.workers import Forked, can_fork, fork_call, reaped

#: A file smaller than this is decoded in one process: forking and joining cost more than they save.
SPLIT_MIN_BYTES = 32 << 20


def check_file(
    opener: Callable[[], Any],
    path: str,
    size: int,
    *,
    name: str | None,
    level: int | None,
    quick: bool,
    jobs: int = 1,
    page_sums: bool = False,
) -> FileCheck:
    """Check one file. `name` (its base name) enables the filename-mismatch check.

    With `jobs` > 1 a large file is decoded in that many spans at once (see the module docstring);
    `opener` is then also called in forked children, so it must open the same bytes there. With
    `page_sums` a file decoded whole keeps each page's checksum (`FileCheck.page_sums`).
    """
    if jobs > 1 and not quick and size >= SPLIT_MIN_BYTES and can_fork():
        fc = _check_in_spans(opener, path, size, name=name, level=level, jobs=jobs, page_sums=page_sums)
        if fc is not None:
            return fc
    fc = FileCheck(path=path, level=level, size=size)

    def add(err: LTXError) -> None:
        ctx = dict(err.context)
        if err.offset is not None:
            ctx["offset"] = err.offset
        fc.findings.append(Finding(err.code, path, err.message, ctx))

    try:
        with opener() as stream:
            if quick:
                fc.header = read_header(stream)
                entries, fc.trailer = read_page_index(stream, size)
                fc.pgnos = [e.pgno for e in entries]
                for err in page_number_defects(fc.header, entries):
                    add(err)
            else:
                reader = LTXReader(stream, on_defect=add)
                fc.header = reader.header
                keep = fc.pgnos.append  # filled as pages come: a file that fails keeps what was read
                if page_sums:
                    sums = array("Q")
                    keep_sum = sums.append
                    for pgno, page in reader.pages():
                        keep(pgno)
                        keep_sum(page_checksum(pgno, page))
                else:
                    for pgno, _page in reader.pages():
                        keep(pgno)
                assert reader.info is not None
                fc.trailer = reader.info.trailer
                if page_sums:
                    fc.page_sums = sums  # only for a file read to its end
    except LTXError as err:
        add(err)
        fc.broken = err.code in FATAL_CODES
    except OSError as exc:
        fc.findings.append(Finding(Code.UNREADABLE, path, f"cannot read: {exc.strerror or exc}"))
        fc.broken = True
    _check_name(fc, name)
    return fc


def _check_name(fc: FileCheck, name: str | None) -> None:
    if fc.header is not None and name is not None:
        parsed = parse_filename(name)
        if parsed is not None and parsed != (fc.header.min_txid, fc.header.max_txid):
            fc.findings.append(
                Finding(
                    Code.FILENAME_MISMATCH,
                    fc.path,
                    f"name says TXIDs {parsed[0]:016x}-{parsed[1]:016x}, header holds "
                    f"{fc.header.min_txid:016x}-{fc.header.max_txid:016x}",
                    {"min_txid": fc.header.min_txid, "max_txid": fc.header.max_txid},
                )
            )


def _decode_span(
    opener: Callable[[], Any], header: Header, start: int, end: int, page_sums: bool
) -> tuple[SpanResult, array[int] | None]:
    """Decode the frames in [start, end) of the file `opener` opens: what the span held, and with
    `page_sums` its pages' checksums (the pages themselves are discarded)."""
    sums = array("Q") if page_sums else None
    with opener() as stream:
        reader = LTXReader.span(stream, header, start, end)
        if sums is not None:
            keep_sum = sums.append
            for pgno, page in reader.pages():
                keep_sum(page_checksum(pgno, page))
        else:
            for _ in reader.pages():
                pass
    assert reader.span_result is not None
    return reader.span_result, sums


def _check_in_spans(
    opener: Callable[[], Any], path: str, size: int, *, name: str | None, level: int | None, jobs: int, page_sums: bool
) -> FileCheck | None:
    """The file decoded in up to `jobs` spans (this process takes the first, forked children the
    rest) and proven whole by `join_spans`; None when it is not proven sound, for whatever reason.

    None is never a verdict: the caller then decodes the file in one process, which names every
    defect. A sound file proven here has no findings of its own, so the `FileCheck` it gives is
    the one a one-process run gives: header, page numbers, trailer, and the filename check.
    """
    others: list[Forked] = []
    try:
        with opener() as stream:
            ends = read_ends(stream, size)
        cuts = find_cuts(ends, jobs)
        if not cuts:
            return None
        bounds = list(zip([HEADER_SIZE, *cuts], [*cuts, ends.frames_end], strict=True))
        with reaped(others):
            for start, end in bounds[1:]:
                others.append(fork_call(_decode_span, opener, ends.header, start, end, page_sums))
            results = [_decode_span(opener, ends.header, *bounds[0], page_sums)]
        results += [child.result() for child in others]
        pgnos = join_spans(ends, [span for span, _ in results])
    except Exception:  # a defect, a bad cut, a dead worker: the one-process run decides what it is
        return None
    fc = FileCheck(path=path, level=level, size=size, header=ends.header, trailer=ends.trailer)
    fc.pgnos = pgnos
    if page_sums:
        fc.page_sums = array("Q")
        for _, sums in results:
            assert sums is not None
            fc.page_sums += sums
    _check_name(fc, name)
    return fc


def check_loose_file(path: Path, *, quick: bool, jobs: int = 1) -> FileCheck:
    try:
        size = path.stat().st_size
    except OSError as exc:
        fc = FileCheck(path=str(path))
        fc.findings.append(Finding(Code.UNREADABLE, str(path), f"cannot read: {exc.strerror or exc}"))
        fc.broken = True
        return fc
    return check_file(lambda: path.open("rb"), str(path), size, name=path.name, level=None, quick=quick, jobs=jobs)
