"""PageSink: whatever order pages arrive in, the file ends up holding the newest copy of each."""

from __future__ import annotations

import io
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from ltxkit import pagesink
from ltxkit.pagesink import PageSink

PAGE = 512


def _page(pgno: int, version: int) -> bytes:
    return bytes([pgno % 251, version % 251]) * (PAGE // 2)


# batches of page numbers: one batch is one file's pages, ascending (as in an LTX file)
batches = st.lists(
    st.one_of(
        st.sets(st.integers(1, 300), max_size=6).map(sorted),  # an L0 file: a few scattered pages
        st.tuples(st.integers(1, 200), st.integers(1, 120)).map(lambda t: list(range(t[0], t[0] + t[1]))),  # a run
    ),
    min_size=1,
    max_size=25,
)


def _expected(files: list[list[int]]) -> dict[int, bytes]:
    newest: dict[int, bytes] = {}
    for version, pgnos in enumerate(files):
        for pgno in pgnos:
            newest[pgno] = _page(pgno, version)
    return newest


def _check(data: bytes, newest: dict[int, bytes]) -> None:
    for pgno, page in newest.items():
        assert data[(pgno - 1) * PAGE : pgno * PAGE] == page, f"page {pgno}"


@settings(max_examples=150, deadline=None)
@given(batches, st.integers(1, 40))
def test_newest_copy_wins_through_a_descriptor(tmp_path_factory, files, pending_pages) -> None:
    path: Path = tmp_path_factory.mktemp("sink") / "db"
    old = pagesink._PENDING_BYTES
    pagesink._PENDING_BYTES = pending_pages * PAGE  # small: the held-back map spills often
    try:
        with open(path, "w+b") as out:
            sink = PageSink(out, PAGE)
            for version, pgnos in enumerate(files):
                for pgno in pgnos:
                    sink.write(pgno, _page(pgno, version))
            sink.flush()
    finally:
        pagesink._PENDING_BYTES = old
    _check(path.read_bytes(), _expected(files))


@settings(max_examples=100, deadline=None)
@given(batches)
def test_newest_copy_wins_through_a_file_object(files) -> None:
    out = io.BytesIO()  # no descriptor: seek + write
    sink = PageSink(out, PAGE)
    for version, pgnos in enumerate(files):
        for pgno in pgnos:
            sink.write(pgno, _page(pgno, version))
    sink.flush()
    _check(out.getvalue(), _expected(files))


def test_scattered_pages_are_written_once_each(tmp_path: Path, monkeypatch) -> None:
    """Thousands of small files rewriting the same few pages: each page reaches the file once."""
    calls: list[int] = []
    real = pagesink.os.pwritev
    monkeypatch.setattr(pagesink.os, "pwritev", lambda fd, bufs, off: calls.append(len(bufs)) or real(fd, bufs, off))
    with open(tmp_path / "db", "w+b") as out:
        sink = PageSink(out, PAGE)
        for version in range(1000):
            for pgno in (1, 7, 8, 40):
                sink.write(pgno, _page(pgno, version))
        sink.flush()
        data = (tmp_path / "db").read_bytes()
    assert sum(calls) == 4
    _check(data, {p: _page(p, 999) for p in (1, 7, 8, 40)})
