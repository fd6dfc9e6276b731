"""What every `ltxkit` command shares: the typer app, consoles, one-line failures, progress bars,
argument parsers.

No `from __future__ import annotations` in this package: typer reads every command's annotations
on each run, and string annotations would be compiled again each time (~20 ms of every command).
"""

import functools
import re
import sys
from collections.abc import Callable
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from ltxkit import __version__
from ltxkit.errors import (
    EXIT_DEFECTS,
    EXIT_INTERRUPTED,
    EXIT_TERMINATED,
    EXIT_USAGE,
    LtxkitError,
    Terminated,
    exit_codes_help,
)

if TYPE_CHECKING:  # imported where used: every module loaded here is start-up time of every command
    from pathlib import Path

    from rich.console import Console
    from rich.progress import Progress

app = typer.Typer(
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
    epilog=exit_codes_help(),
    help="Read, check, restore, repair and produce LTX replicas (LTX v3, as Litestream 0.5.x writes it).\n\n"
    "Typical use: [bold]ltxkit verify REPLICA[/bold] in CI or cron; "
    "[bold]ltxkit restore REPLICA -o DB[/bold] when you need the data back; "
    "[bold]ltxkit repair REPLICA --rebuild-snapshot --from-db DB[/bold] when verify fails.",
)


class _LazyConsole:
    """A rich Console made on first use: importing rich costs ~30 ms that `restore --quiet` never needs."""

    def __init__(self, **options: Any) -> None:
        self._options = options
        self._console: Console | None = None

    def real(self) -> "Console":
        if self._console is None:
            from rich.console import Console

            self._console = Console(**self._options)
        return self._console

    def plain(self, text: str) -> None:
        """One line as it is (no markup, no highlighting, no wrapping): machine-readable output
        such as a checksum or a JSON document, which need not load rich at all."""
        if self._console is not None:  # rich already writes here: keep the order of lines
            self._console.print(text, markup=False, highlight=False, soft_wrap=True)
            return
        stream = sys.stderr if self._options.get("stderr") else sys.stdout
        stream.write(text + "\n")
        stream.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real(), name)


out = _LazyConsole(highlight=False, soft_wrap=True, emoji=False)  # a path may hold ":name:"
err = _LazyConsole(stderr=True, highlight=False, soft_wrap=True, emoji=False)
_state = {"debug": False}

F = TypeVar("F", bound=Callable[..., Any])


class Fail(LtxkitError):
    """A one-line failure for the user, with its exit code."""

    def __init__(self, message: str, code: int = EXIT_DEFECTS) -> None:
        super().__init__(message, exit_code=code)


END_OF_INPUT = "\x04"  # what `ask` returns for Ctrl-D


def ask(question: str) -> str | None:
    """A person's answer on the terminal: `END_OF_INPUT` for Ctrl-D, None for Ctrl-C (interrupted)."""
    try:
        return input(question)
    except EOFError:
        print(file=sys.stderr)
        return END_OF_INPUT
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return None


def one_line(exc: BaseException) -> tuple[str, int]:
    """The line a failure ends a command with, and its exit code (`ltxkit.errors`)."""
    if isinstance(exc, LtxkitError):
        return str(exc), exc.exit_code
    if isinstance(exc, OSError):
        where = f"{exc.filename}: " if exc.filename else ""
        return f"{where}{exc.strerror or exc}", EXIT_USAGE
    if isinstance(exc, Terminated):
        return "terminated", EXIT_TERMINATED
    if isinstance(exc, (KeyboardInterrupt, typer.Abort)):
        return "interrupted", EXIT_INTERRUPTED
    return f"internal error: {type(exc).__name__}: {exc} (run with --debug for details)", EXIT_USAGE


def guarded(fn: F) -> F:
    """Turn every failure into one line on stderr and an exit code; no tracebacks (but --debug)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except typer.Exit:
            raise
        except (Exception, KeyboardInterrupt) as exc:
            msg, code = one_line(exc)
            debug_traceback(exc)
            err.print(f"ltxkit: {msg}", markup=False)
            raise typer.Exit(code) from None

    return wrapper  # type: ignore[return-value]  # functools.wraps keeps fn's signature; mypy sees only (*args)


def debug_traceback(exc: BaseException) -> None:
    """With --debug, `exc`'s traceback on stderr (before its one-line message): --debug explains,
    it never changes what is reported or the exit code."""
    if _state["debug"]:
        import traceback

        traceback.print_exception(exc)


def _version(value: bool) -> None:
    if value:
        out.plain(f"ltxkit {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks instead of one-line errors.")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    _state["debug"] = debug


class TextOrJson(StrEnum):
    text = "text"
    json = "json"


#: The most worker processes `--jobs` takes: each costs a fork and its memory, and a mistyped
#: `--jobs 10000` is refused rather than forking ten thousand processes.
MAX_JOBS = 64

#: One output convention for every command: `--format text|json` (verify adds junit), with
#: `--json` kept as the short spelling of `--format json`.
FORMAT_HELP = "Output format."
JSON_HELP = "Same as --format json."


def wants_json(fmt: str, as_json: bool) -> bool:
    """`--json` and `--format` are one choice: refuse the two saying different things."""
    if as_json and fmt not in ("text", "json"):
        raise Fail(f"--json and --format {fmt} say different things; give one", EXIT_USAGE)
    return as_json or fmt == "json"


def say_when_waiting() -> None:
    """Waiting on a database another connection has locked prints one line on stderr, saying for
    how long at most, instead of sitting silent for up to 30 s."""
    from ltxkit import sqlite

    sqlite.wait_note = lambda line: err.print(f"ltxkit: {line}", markup=False, highlight=False)


def progress_bar(enabled: bool, *, pages: bool = False) -> "Progress | None":
    """A progress bar on stderr, only when stderr is a terminal (never in logs or pipes)."""
    if not enabled or not sys.stderr.isatty():
        return None
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

    extra = [TextColumn("{task.fields[pages]:,} pages")] if pages else []
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        *extra,
        TimeRemainingColumn(),
        console=err.real(),
        transient=True,
    )


_URL_AS_PATH = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:/(?!/)")  # `s3://b/k` as a Path makes it `s3:/b/k`


def local_output(path: "Path") -> "Path":
    """`-o` names a local file: a URL given there was written to a directory `s3:` relative to
    the current one (or refused with that name's parent missing), never where the user meant."""
    if _URL_AS_PATH.match(str(path)):
        url = str(path).replace(":/", "://", 1)
        raise Fail(f"{url}: -o takes a local file, not a URL", EXIT_USAGE)
    return path


def parse_txid(text: str | None) -> int | None:
    if text is None:
        return None
    t = text.lower().removeprefix("0x")
    if not t or len(t) > 16 or any(c not in "0123456789abcdef" for c in t):
        raise Fail(f"--txid {text!r}: expected a hex TXID such as 0000000000000042", EXIT_USAGE)
    return int(t, 16)


def parse_timestamp_ns(text: str | None) -> int | None:
    """`--timestamp` as nanoseconds since the epoch, every fraction digit kept (`rfc3339_ns`)."""
    from ltxkit.replica.layout import NoZone, rfc3339_ns

    if text is None:
        return None
    try:
        return rfc3339_ns(text)
    except NoZone:  # as Litestream: RFC 3339 names its zone, and guessing one restores the wrong state
        raise Fail(f"--timestamp {text!r}: give a zone, Z or +hh:mm (RFC 3339), such as {text}Z", EXIT_USAGE) from None
    except ValueError:
        raise Fail(
            f"--timestamp {text!r}: expected an RFC 3339 time such as 2026-01-02T15:04:05Z", EXIT_USAGE
        ) from None


def send_to_stdout(path: "Path", what: str) -> None:
    """Every byte of `what`, a file ltxkit made (a restored database, a snapshot), onto standard
    output.

    `os.write` may take less than it is given (an unbuffered or non-blocking stdout, a signal), so
    the rest is written until none is left: a command never exits 0 having sent part of it. A
    reader that went away or a full disk is one line naming standard output; stdout is then
    pointed at /dev/null so the interpreter's last flush does not print a second error.
    """
    import os
    import select

    sys.stdout.flush()
    fd = sys.stdout.fileno()
    try:
        with path.open("rb") as fh:
            while chunk := fh.read(1 << 20):
                view = memoryview(chunk)
                while view:
                    try:
                        view = view[os.write(fd, view) :]
                    except BlockingIOError:  # a non-blocking stdout that is full: wait until it drains
                        select.select([], [fd], [])
    except OSError as exc:
        if exc.filename is not None:  # the temporary restored file, not standard output
            raise
        os.dup2(os.open(os.devnull, os.O_WRONLY), fd)
        why = "the reader closed the pipe" if isinstance(exc, BrokenPipeError) else exc.strerror
        raise Fail(f"standard output: {why}; {what} was not written whole", EXIT_USAGE) from exc
