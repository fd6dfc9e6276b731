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
    app.command(epilog=exit_codes_help())(_command)


def main() -> None:
    """Run the CLI. `--debug` works anywhere on the line, not only before the command."""
    import sys

    args = sys.argv[1:]
    if "--debug" in args[1:]:
        args.remove("--debug")
        args.insert(0, "--debug")
    app(args=args, prog_name="ltxkit")


__all__ = ["app", "main"]
