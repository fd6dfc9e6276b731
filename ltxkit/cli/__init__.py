"""The `ltxkit` command line: a thin shell over the library, one module per command.

Each command parses its options and makes one library call (`inspect_file`, `verify_paths`,
`restore_to_path`, `write_snapshot_file`, `plan_repair`/`apply_repair`); what they share is in
`common`. Exit codes everywhere: the one table in `ltxkit.errors` (`EXIT_TABLE`), which every
`--help` shows as its epilog. Errors are one line, naming the file and the problem; `--debug` shows
the traceback instead.
"""

from ltxkit.cli import inspect, repair, replicate, restore, snapshot, verify
from ltxkit.cli.common import app
from ltxkit.errors import exit_codes_help


def reflowed(doc: str | None) -> str | None:
    """A command's docstring as `--help` shows it: typer's rich output keeps every line break of
    the source, so lines wrapped at 100 columns in the code came out ragged at 80 in a terminal.
    Each paragraph becomes one line for the terminal to wrap; a line that starts a list item
    (`- `) or is indented keeps its own line."""
    if doc is None:
        return None
    import inspect as _inspect

    paragraphs = []
    for paragraph in _inspect.cleandoc(doc).split("\n\n"):
        lines: list[str] = []
        for line in paragraph.splitlines():
            if lines and not line.startswith(("- ", " ")):
                lines[-1] += " " + line.strip()
            else:
                lines.append(line)
        paragraphs.append("\n".join(lines))
    return "\n\n".join(paragraphs)


# `--help` lists the commands in this order
for _command in (
    inspect.inspect,
    verify.verify,
    restore.restore,
    replicate.replicate,
    snapshot.snapshot,
    snapshot.checksum,
    repair.repair,
):
    app.command(epilog=exit_codes_help(), help=reflowed(_command.__doc__))(_command)


def stop_on_sigterm() -> None:
    """SIGTERM unwinds a command as Ctrl-C does, so what it was writing is removed before it exits
    (143); without this the default action ends the process where it stands, temp files and all.
    `replicate` puts its own handler in place: for it SIGTERM is the normal, clean stop."""
    import signal

    from ltxkit.errors import Terminated

    def terminate(signum: int, frame: object) -> None:
        raise Terminated

    if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:  # an inherited "ignore" is respected
        signal.signal(signal.SIGTERM, terminate)


def main() -> None:
    """Run the CLI. `--debug` works anywhere on the line, not only before the command.

    A usage error (a missing argument, an unknown option, a value out of range) is one line on
    stderr and exit 2, like every other error, instead of the parser's usage box."""
    import gc
    import sys
    from typing import cast

    import typer

    # what the imports made lives as long as the process: out of the collector's sight, the full
    # collections a restore's millions of small objects set off no longer walk it every time
    gc.freeze()
    stop_on_sigterm()
    args = sys.argv[1:]
    if "--debug" in args[1:]:
        args.remove("--debug")
        args.insert(0, "--debug")
    # the parser's errors (UsageError and the like), reached through a public name: typer carries
    # its own copy of click
    parser_error: type[Exception] = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")
    try:
        code = app(args=args, prog_name="ltxkit", standalone_mode=False)
    except parser_error as caught:
        exc = cast("typer.BadParameter", caught)  # format_message and exit_code; ctx where it has one
        ctx = getattr(exc, "ctx", None)
        where = ctx.command_path if ctx is not None else "ltxkit"
        message = " ".join(exc.format_message().split())
        if message:  # empty when the help itself was the answer (`ltxkit` alone): it is printed
            print(f"ltxkit: {message} (see '{where} -h')", file=sys.stderr)
        sys.exit(exc.exit_code)
    except typer.Abort:
        print("ltxkit: aborted", file=sys.stderr)
        sys.exit(1)
    code = code if isinstance(code, int) else 0
    leave_without_waiting_for_requests(code)
    sys.exit(code)


def leave_without_waiting_for_requests(code: int) -> None:
    """Exit at once when a request to an object store is still in flight: the command is over
    (interrupted, or it gave up on a server that stopped answering) and the interpreter's exit would
    join the thread waiting on that request, for the rest of its timeout. Everything the command
    wrote was already removed or finished as it unwound; what a thread left running still holds
    (a content check's temporary directory) goes with the exit handlers run here, which do not
    join threads (the threading module's own exit hook does that, and is skipped)."""
    import atexit
    import os
    import sys

    s3 = sys.modules.get("ltxkit.replica.s3")
    if s3 is None or not s3.requests_in_flight():
        return
    sys.stdout.flush()
    sys.stderr.flush()
    atexit._run_exitfuncs()  # temporary files and directories still referenced (weakref.finalize)
    os._exit(code)


__all__ = ["app", "main"]
