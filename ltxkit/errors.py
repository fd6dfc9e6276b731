"""One error model: every failure ltxkit reports to a person is an `LtxkitError`.

Each carries the one-line message a user reads, the exit code the CLI ends with (one table,
below, for every command) and, where the data is at fault, the stable defect code `verify`
reports. Errors raised on top of another keep it as their cause (`raise ... from`), so a caller
can still reach the original `LTXError` with its offset. The CLI turns any of them into one line
on stderr and the exit code; nothing else needs to know which class it was.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the format package builds its LTXError on this module: no import cycle
    from ltxkit.format.errors import Code

#: exit codes, the same for every command
EXIT_OK = 0  # done; for verify: no defect at or above --fail-on
EXIT_DEFECTS = 1  # the data is at fault (a defect, a refused restore or repair)
EXIT_USAGE = 2  # could not run: bad arguments, missing paths, not a replica
EXIT_INTERRUPTED = 130  # Ctrl-C
EXIT_TERMINATED = 143  # SIGTERM (128 + 15, as a shell reports a process the signal ended)

#: The exit-code rule, spelled once: (code, meaning, for example). Every `--help` shows it
#: (`exit_codes_help`), and the README's table is this one (a test holds the two together).
EXIT_TABLE: tuple[tuple[int, str, str], ...] = (
    (
        EXIT_OK,
        "done",
        "verify: no defect at or above `--fail-on`; replicate: stopped by SIGTERM/SIGINT after its last sync, "
        "or a `--once` that synced",
    ),
    (
        EXIT_DEFECTS,
        "the data is at fault",
        "verify: defects; restore/repair refused (damaged plan, failed integrity check); repair: Ctrl-D at "
        "its prompt; replicate: a `--once` sync failed, a stop whose last sync failed or did not finish within "
        "20 s, or a page-size change or another replicator writing "
        "its replica stops it",
    ),
    (
        EXIT_USAGE,
        "could not run",
        "bad arguments (a `--txid` or `--timestamp` no restore ends at), missing paths, not a replica, an "
        "existing output without `--force`, a link or device "
        "as output, S3 credentials / bucket / endpoint, a file that is not a SQLite database, a database not "
        "in WAL mode or still locked after the wait (a `replicate --once` sync it fails: 1), a running "
        "replicator, a second replicator, a repair "
        "declined at its prompt",
    ),
    (EXIT_INTERRUPTED, "interrupted", "Ctrl-C (except `replicate`, for which Ctrl-C is the normal stop)"),
    (
        EXIT_TERMINATED,
        "terminated",
        "SIGTERM, after removing what the command had half-written (except `replicate`, for which SIGTERM is "
        "the normal stop)",
    ),
)


def exit_codes_help() -> str:
    """The exit-code table as `--help` shows it: one line per code."""
    rows = [f"{code:>3}  {meaning}: {example.replace('`', '')}" for code, meaning, example in EXIT_TABLE]
    return "Exit codes (the same for every command):\n\n" + "\n\n".join(rows)


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread. A KeyboardInterrupt so that it unwinds exactly as Ctrl-C
    does (temp files and temporary restores removed, workers stopped), but ends with exit 143."""


class LtxkitError(Exception):
    """A failure with a message for a person, an exit code, and a defect code where data is at fault."""

    exit_code: int = EXIT_DEFECTS

    def __init__(self, message: str, *, code: Code | None = None, exit_code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        if exit_code is not None:
            self.exit_code = exit_code

    def __str__(self) -> str:
        return f"{self.code}: {self.message}" if self.code is not None else self.message


class UsageError(LtxkitError):
    """The command cannot run as asked (bad arguments, a path that is not there or not a replica)."""

    exit_code = EXIT_USAGE
